"""espomcp.forks: the remembered process id follows os.fork(), so fork-sensitive code (the
SQLite tuple store, Prometheus multiprocess files) notices a fork without a getpid per use."""

from __future__ import annotations

import os
from pathlib import Path

from espomcp.fga.dsl import parse_dsl
from espomcp.fga.engine import Engine
from espomcp.forks import current_pid

MODEL = """
model
  schema 1.1
type user
type doc
  relations
    define viewer: [user]
"""


def in_child(action) -> str:
    """Run ``action()`` in a forked child; return what it printed (its exit code must be 0)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            os.write(write, str(action()).encode())
            os._exit(0)
        except BaseException:
            os._exit(1)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    out = os.read(read, 1000).decode()
    os.close(read)
    assert os.waitstatus_to_exitcode(status) == 0
    return out


def test_current_pid_is_the_childs_after_a_fork():
    assert current_pid() == os.getpid()
    child, real = in_child(lambda: f"{current_pid()} {os.getpid()}").split()
    assert child == real and int(child) != os.getpid()


def test_a_forked_child_reads_the_store_through_its_own_connection(tmp_path: Path):
    engine = Engine.open_sqlite(tmp_path / "store.db", parse_dsl(MODEL))
    engine.write([{"user": "user:ann", "relation": "viewer", "object": "doc:1"}])
    parent_conn = engine.store._conn

    def child() -> str:
        allowed = engine.check("user:ann", "viewer", "doc:1")
        return f"{allowed} {engine.store._conn is not parent_conn}"

    assert in_child(child) == "True True"
    assert engine.store._conn is parent_conn  # the parent keeps its connection
