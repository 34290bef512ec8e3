"""The SQLite-backed store: durability across reopen, visibility between engines and processes."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from espomcp.fga.dsl import parse_dsl
from espomcp.fga.engine import Engine
from espomcp.fga.errors import FgaError
from espomcp.fga.store import Index, MemoryStore, StoredTuple
from tests.test_fga_engine import GROUPS, HEADER

MODEL = parse_dsl(HEADER + GROUPS + """
type secret
  relations
    define reader: [user with ok]
condition ok(x: int) {
  x > 0
}
""")


def tk(user: str, relation: str, obj: str, **extra: Any) -> dict[str, Any]:
    return {"user": user, "relation": relation, "object": obj, **extra}


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "fga.sqlite3"


def test_tuples_survive_reopen(path: Path) -> None:
    engine = Engine.open_sqlite(path, MODEL)
    engine.write([tk("user:ann", "member", "group:eng"), tk("group:eng#member", "viewer", "doc:1"),
                  tk("user:ann", "reader", "secret:1", condition={"name": "ok", "context": {"x": 1}}),
                  tk("user:bob", "viewer", "doc:2")])
    engine.write(deletes=[tk("user:bob", "viewer", "doc:2")])
    engine.close()
    reopened = Engine.open_sqlite(path, MODEL)
    assert reopened.tuple_count() == 3
    assert reopened.check("user:ann", "viewer", "doc:1")
    assert reopened.check("user:ann", "reader", "secret:1")
    assert not reopened.check("user:bob", "viewer", "doc:2")
    assert [c["operation"] for c in reopened.read_changes()[0]] == ["TUPLE_OPERATION_WRITE"] * 4 + [
        "TUPLE_OPERATION_DELETE"]
    reopened.write([tk("user:cat", "viewer", "doc:3")])
    keys = [str(key) for key, _ in reopened.read()[0]]
    assert keys[-1] == "doc:3#viewer@user:cat"       # write order continues after reopen
    reopened.close()


def test_two_engines_on_one_file_see_each_other(path: Path) -> None:
    first = Engine.open_sqlite(path, MODEL)
    second = Engine.open_sqlite(path, MODEL)
    first.write([tk("user:ann", "viewer", "doc:1")])
    assert second.check("user:ann", "viewer", "doc:1")
    assert second.list_objects("user:ann", "viewer", "doc") == ["doc:1"]
    # the second engine's write rules see the first engine's tuple
    with pytest.raises(FgaError) as info:
        second.write([tk("user:ann", "viewer", "doc:1")])
    assert info.value.code == 2017
    second.write(deletes=[tk("user:ann", "viewer", "doc:1")])
    assert not first.check("user:ann", "viewer", "doc:1")
    assert first.tuple_count() == second.tuple_count() == 0
    first.close()
    second.close()


def test_another_process_writes_are_visible(path: Path) -> None:
    engine = Engine.open_sqlite(path, MODEL)
    assert not engine.check("user:zed", "viewer", "doc:7")
    script = ("import json, sys; from espomcp.fga.engine import Engine; "
              "e = Engine.open_sqlite(sys.argv[1], json.loads(sys.argv[2])); "
              "e.write([{'user': 'user:zed', 'relation': 'viewer', 'object': 'doc:7'}]); e.close()")
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", script, str(path), json.dumps(MODEL)], check=True, cwd=root,
                   timeout=60)
    assert engine.check("user:zed", "viewer", "doc:7")
    engine.close()


def test_failed_write_leaves_file_and_index_unchanged(path: Path) -> None:
    engine = Engine.open_sqlite(path, MODEL)
    engine.write([tk("user:ann", "viewer", "doc:1")])
    with pytest.raises(FgaError):
        engine.write([tk("user:bob", "viewer", "doc:1"), tk("user:ann", "viewer", "doc:1")])
    assert engine.tuple_count() == 1
    engine.close()
    reopened = Engine.open_sqlite(path, MODEL)
    assert [str(key) for key, _ in reopened.read()[0]] == ["doc:1#viewer@user:ann"]
    assert len(reopened.read_changes()[0]) == 1
    reopened.close()


def test_bad_model_fails_before_opening(path: Path) -> None:
    with pytest.raises(FgaError) as info:
        Engine.open_sqlite(path, {"schema_version": "1.0", "type_definitions": []})
    assert info.value.code == 2056
    assert not path.exists()


def test_concurrent_threads_share_one_engine(path: Path) -> None:
    engine = Engine.open_sqlite(path, MODEL)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(20):
                engine.write([tk(f"user:t{n}-{i}", "viewer", f"doc:{n}")])
                assert engine.check(f"user:t{n}-{i}", "viewer", f"doc:{n}")
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert engine.tuple_count() == 80
    engine.close()


def test_memory_store_shared_between_engines() -> None:
    store = MemoryStore()
    first = Engine(MODEL, store)
    second = Engine(MODEL, store)
    first.write([tk("user:ann", "viewer", "doc:1")])
    assert second.check("user:ann", "viewer", "doc:1")
    assert first.store is second.store


def test_index_keeps_lookups_consistent() -> None:
    index = Index([StoredTuple("doc:1", "viewer", "group:g#member", None, None, 1, ""),
                   StoredTuple("doc:1", "viewer", "user:ann", "ok", {"x": 1}, 2, "")])
    assert set(index.usersets[("doc:1", "viewer")]) == {"group:g#member"}
    assert set(index.by_user_cond[("user:ann", "viewer", "doc")]) == {"doc:1"}
    index.remove("doc:1", "viewer", "group:g#member")
    index.remove("doc:1", "viewer", "user:ann")
    assert (index.tuples, index.by_object, index.usersets, index.by_user, index.by_user_cond,
            index.object_relations, index.user_relations) == ({}, {}, {}, {}, {}, {}, {})


def test_store_reconnects_after_a_fork(path: Path) -> None:
    engine = Engine.open_sqlite(path, MODEL)
    engine.write([tk("user:ann", "viewer", "doc:1")])
    old = engine.store._conn
    engine.store._pid = -1  # what a forked child sees: the pid it was opened in is not its own
    assert engine.check("user:ann", "viewer", "doc:1")
    assert engine.store._conn is not old
    old.close()
    engine.write([tk("user:kid", "viewer", "doc:1")])
    engine.close()
    assert Engine.open_sqlite(path, MODEL).tuple_count() == 2
