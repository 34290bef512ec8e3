"""Benchmarks for espomcp (``make bench``): load, FGA engine, search filtering and sync.

Everything runs on loopback against the fakes; see ``bench/README.md`` for the figures.
"""
