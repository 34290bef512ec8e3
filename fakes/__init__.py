"""Fakes of the services espomcp talks to (Auth0, EspoCRM, OpenFGA), for tests and the demo.

Each behaves like the real service (same URLs, headers, status codes, error bodies) and can
run in a thread on a free loopback port (``fakes.server.ServerThread``).
"""
