"""The current process id, kept without a system call per use.

Code that must notice a fork (an SQLite connection must not cross one; Prometheus names its
per-process files by pid) used to call ``os.getpid()`` on every query or metric update:
several system calls per request. The id is read once and refreshed in the child by
``os.register_at_fork``, which runs for every ``os.fork()`` (gunicorn's and multiprocessing's).
"""

from __future__ import annotations

import os

_pid = os.getpid()


def _after_fork_in_child() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_after_fork_in_child)


def current_pid() -> int:
    """``os.getpid()``, from memory."""
    return _pid
