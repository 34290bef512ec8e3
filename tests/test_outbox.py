"""Durable outbox: FGA down → queued, survives reopening, drains in order when back."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from espomcp import create_app
from espomcp.fga.backend import build_backend
from espomcp.fga.tuples import TupleKey
from espomcp.sync import outbox_readiness
from espomcp.sync.outbox import Outbox, OutboxError, TupleWriter
from tests.sync_doubles import MemoryBackend

A = TupleKey("user:alice", "assignee", "contact:c1")
B = TupleKey("user:bob", "assignee", "contact:c1")
T = TupleKey("team:sales", "team", "contact:c1")


def test_backend_up_applies_directly(tmp_path: Path) -> None:
    backend, writer = MemoryBackend(), TupleWriter(Outbox(tmp_path / "o.sqlite3"))
    outcome = writer.apply(backend, [A, T], [])
    assert outcome.applied and outcome.queued == 0
    assert backend.tuples == {A, T}
    assert writer.apply(backend, [], []).applied


def test_down_queues_survives_reopen_and_drains_in_order(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    backend = MemoryBackend({A})
    backend.down = True
    writer = TupleWriter(Outbox(path))
    first = writer.apply(backend, [B], [A])  # reassign alice → bob
    assert not first.applied and first.queued == 2
    assert "queued" in first.message and "FgaUnavailable" in first.message
    second = writer.apply(backend, [A], [B])  # ... and back to alice: supersedes both
    assert second.queued == 2
    writer.apply(backend, [T], [])
    reopened = Outbox(path)  # a restart loses nothing
    assert reopened.depth() == 3
    assert [(p.op, p.key) for p in reopened.pending()] == [
        ("write", A), ("delete", B), ("write", T)]
    result = reopened.drain(backend)
    assert result.failed and result.remaining == 3 and reopened.pending()[0].attempts == 1
    backend.down = False
    result = reopened.drain(backend)
    assert not result.failed and result.applied == 3 and reopened.depth() == 0
    assert backend.tuples == {A, T}
    assert backend.calls == [([A, T], [B])]


def test_direct_success_supersedes_queued_change(tmp_path: Path) -> None:
    backend, outbox = MemoryBackend(), Outbox(tmp_path / "o.sqlite3")
    writer = TupleWriter(outbox)
    backend.down = True
    writer.apply(backend, [A], [])
    backend.down = False
    assert writer.apply(backend, [], [A]).applied  # the newer delete landed
    assert outbox.depth() == 0
    outbox.drain(backend)
    assert A not in backend.tuples


def test_large_batches_are_chunked_and_partial_failure_queues_the_rest(tmp_path: Path) -> None:
    keys = [TupleKey(f"user:u{i}", "assignee", "contact:c1") for i in range(250)]
    backend, outbox = MemoryBackend(), Outbox(tmp_path / "o.sqlite3")
    writer = TupleWriter(outbox)
    calls = 0
    real_write = backend.write

    def flaky(writes: list[TupleKey], deletes: list[TupleKey]) -> None:
        nonlocal calls
        calls += 1
        backend.down = calls >= 2
        real_write(writes, deletes)

    backend.write = flaky  # type: ignore[method-assign]
    outcome = writer.apply(backend, keys, [])
    assert outcome.queued == 150 and len(backend.tuples) == 100
    backend.write = real_write  # type: ignore[method-assign]
    backend.down = False
    assert outbox.drain(backend, limit=1000).applied == 150
    assert backend.tuples == set(keys)


def test_rejected_changes_are_reported_not_queued_and_dead_lettered(tmp_path: Path) -> None:
    backend, outbox = MemoryBackend(), Outbox(tmp_path / "o.sqlite3")
    bad = TupleKey("user:alice", "bogus", "contact:c1")
    outcome = TupleWriter(outbox).apply(backend, [A, bad], [])
    assert not outcome.applied and outcome.queued == 0 and "rejected 1" in outcome.message
    assert A in backend.tuples and outbox.depth() == 0
    outbox.enqueue([bad, T])
    result = outbox.drain(backend)
    assert result.dead == 1 and result.applied == 1 and outbox.dead_count() == 1
    assert outbox.depth() == 0 and T in backend.tuples


def test_clashing_write_and_delete_is_a_caller_bug(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        TupleWriter(Outbox(tmp_path / "o.sqlite3")).apply(MemoryBackend(), [A], [A])


def test_background_drainer_retries_with_backoff_until_it_lands(tmp_path: Path) -> None:
    backend = MemoryBackend()
    backend.down = True
    outbox = Outbox(tmp_path / "o.sqlite3", base_delay=0.05, max_delay=0.2)
    TupleWriter(outbox).apply(backend, [A], [])
    outbox.start_drainer(backend, idle_interval=0.05)
    thread = outbox._drainer
    assert thread is not None and thread.is_alive()
    try:
        deadline = time.monotonic() + 5
        while outbox.pending() and outbox.pending()[0].attempts < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert outbox.pending()[0].attempts >= 2  # retried, still pending
        stats = outbox.stats()
        assert stats["depth"] == 1 and "down" in stats["last_error"]
        backend.down = False
        while outbox.depth() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert outbox.depth() == 0 and A in backend.tuples
    finally:
        outbox.stop_drainer()
    assert not thread.is_alive()


def test_unwritable_outbox_raises_instead_of_dropping(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite3")
    outbox.path = tmp_path / "missing-dir" / "o.sqlite3"
    backend = MemoryBackend()
    backend.down = True
    with pytest.raises(OutboxError):
        TupleWriter(outbox).apply(backend, [A], [])


def test_openfga_outage_queues_and_drains_into_the_real_store(
        tmp_path: Path, fake_openfga: Any, fga_settings: Any) -> None:
    store_id, model_id = fake_openfga.new_store()
    backend = build_backend(fga_settings(fga_backend="openfga", fga_api_url=fake_openfga.url,
                                         fga_store_id=store_id, fga_model_id=model_id,
                                         fga_timeout_seconds=1.0))
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    writer = TupleWriter(outbox)
    organization = TupleKey("organization:main", "organization", "contact:c1")
    fake_openfga.fault("down")
    outcome = writer.apply(backend, [A, organization], [])
    assert not outcome.applied and outcome.queued == 2
    assert not outbox.drain(backend).applied and outbox.depth() == 2
    fake_openfga.fault("ok")
    assert outbox.drain(backend).applied == 2 and outbox.depth() == 0
    assert backend.check("user:alice", "can_write", "contact:c1")


def test_app_reports_outbox_depth_on_readyz(tmp_path: Path, fga_settings: Any) -> None:
    settings = fga_settings(data_dir=tmp_path / "data")
    app = create_app(settings, authenticator=_NoAuth())
    svc = app.extensions["espomcp"]
    try:
        check = svc.readiness["outbox"]
        assert check() == (True, "depth 0")
        svc.extras["outbox"].stop_drainer()  # keep the queued change queued
        svc.extras["outbox"].enqueue([A], error="FgaUnavailable: down")
        ok, detail = check()
        assert ok and detail.startswith("depth 1") and "down" in detail
        assert outbox_readiness(svc.extras["outbox"], limit=1)[0] is False
        body = app.test_client().get("/readyz").get_json()
        assert body["checks"]["outbox"]["detail"].startswith("depth ")
    finally:
        svc.extras["outbox"].stop_drainer()


class _NoAuth:
    def authenticate(self, authorization: str | None) -> Any:
        raise AssertionError("not used")


def test_while_retrying_new_changes_queue_behind_without_a_backend_call(tmp_path: Path) -> None:
    backend, outbox = MemoryBackend(), Outbox(tmp_path / "o.sqlite3", base_delay=30)
    writer = TupleWriter(outbox)
    backend.down = True
    writer.apply(backend, [A], [])
    assert outbox.drain(backend).failed and outbox.in_backoff()
    backend.down = False  # recovered, but the retry is not due yet
    outcome = writer.apply(backend, [T], [])
    assert outcome.queued == 1 and backend.calls == [] and outbox.depth() == 2
    assert outbox.drain(backend).applied == 2 and not outbox.in_backoff()
    assert writer.apply(backend, [], [T]).applied and backend.tuples == {A}


def test_a_second_process_waits_for_the_file_lock(tmp_path: Path) -> None:
    import subprocess
    import sys

    outbox = Outbox(tmp_path / "o.sqlite3")
    script = ("import sys, time; from pathlib import Path; from espomcp.sync.outbox import Outbox;"
              "o = Outbox(Path(sys.argv[1])); print('ready', flush=True);"
              "ctx = o.exclusive(); ctx.__enter__(); print(time.time(), flush=True)")
    with outbox.exclusive():
        child = subprocess.Popen([sys.executable, "-c", script, str(outbox.path)],
                                 stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1])
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        time.sleep(0.3)
        released = time.time()
    out, _ = child.communicate(timeout=30)
    assert float(out) >= released
