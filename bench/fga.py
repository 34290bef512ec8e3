"""The embedded FGA engine on a CRM-shaped store: Check latency at 100k tuples, ListObjects
over 10k readable objects, and Check against the ``fga`` CLI on the same 2k-tuple store.

Tuples are generated from the real model (``fga/model.json``): users in teams and the
organization, accounts owned by users and shared with teams, contacts with an assignee, a team,
a parent account and the organization (what ``espomcp sync`` writes for EspoCRM records).
"""

from __future__ import annotations

import json
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench.stack import ROOT
from espomcp.fga.engine import Engine
from espomcp.fga.tuples import TupleKey

MODEL = json.loads((ROOT / "fga" / "model.json").read_text())
FGA_CLI = ROOT / ".venv" / "bin" / "fga"


def crm_tuples(total: int, seed: int = 1, users: int = 200, teams: int = 20) -> list[TupleKey]:
    """About ``total`` CRM-shaped tuples (see the module docstring)."""
    rng = random.Random(seed)
    out: list[TupleKey] = []
    for i in range(users):
        out.append(TupleKey(f"user:u{i}", "member", f"team:t{i % teams}"))
        out.append(TupleKey(f"user:u{i}", "member", "organization:main"))
    accounts = [f"account:a{i}" for i in range(max(10, total // 20))]
    for account in accounts:
        out += [TupleKey(f"user:u{rng.randrange(users)}", "owner", account),
                TupleKey(f"team:t{rng.randrange(teams)}", "team", account),
                TupleKey("organization:main", "organization", account)]
    n = 0
    while len(out) < total:
        contact = f"contact:c{n}"
        n += 1
        out += [TupleKey(f"user:u{rng.randrange(users)}", "assignee", contact),
                TupleKey(f"team:t{rng.randrange(teams)}", "team", contact),
                TupleKey(rng.choice(accounts), "parent", contact),
                TupleKey("organization:main", "organization", contact)]
    return out[:total]


def load(engine: Engine, tuples: list[TupleKey]) -> None:
    for start in range(0, len(tuples), 100):
        engine.write(tuples[start:start + 100], on_duplicate="ignore")


def queries(tuples: list[TupleKey], count: int, seed: int = 2) -> list[tuple[str, str, str]]:
    """can_read/can_write checks on contacts and accounts: half of a random user (mostly
    denied, after a full search), half of a user directly related to the object."""
    rng = random.Random(seed)
    objects = sorted({t.object for t in tuples if t.object.startswith(("contact:", "account:"))})
    users = sorted({t.user for t in tuples if t.user.startswith("user:")})
    related = [t for t in tuples if t.user.startswith("user:") and t.relation in ("owner",
                                                                                  "assignee")]
    out = []
    for n in range(count):
        relation = rng.choice(("can_read", "can_write"))
        if n % 2:
            direct = rng.choice(related)
            out.append((direct.user, relation, direct.object))
        else:
            out.append((rng.choice(users), relation, rng.choice(objects)))
    return out


def check_latencies_us(engine: Engine, items: list[tuple[str, str, str]]) -> list[float]:
    out = []
    for user, relation, obj in items:
        started = time.perf_counter_ns()
        engine.check(user, relation, obj)
        out.append((time.perf_counter_ns() - started) / 1000)
    return out


def check_at_100k(work: Path, repeat: int = 3) -> dict[str, float]:
    """Check p50/p99 on the SQLite-backed embedded engine holding 100k tuples."""
    engine = Engine.open_sqlite(work / "fga100k.sqlite3", MODEL)
    tuples = crm_tuples(100_000)
    load(engine, tuples)
    items = queries(tuples, 5000)
    check_latencies_us(engine, items[:500])  # warm caches
    p50s, p99s = [], []
    for _ in range(repeat):
        lat = sorted(check_latencies_us(engine, items))
        p50s.append(statistics.median(lat))
        p99s.append(lat[int(len(lat) * 0.99)])
    allowed = sum(engine.check(*q) for q in items[:1000])
    engine.close()
    return {"fga_check_p50_us": statistics.median(p50s), "fga_check_p99_us": statistics.median(p99s),
            "fga_check_allowed_share": allowed / 1000}


def list_objects_10k(repeat: int = 7) -> dict[str, float]:
    """ListObjects for a user who reads 10k contacts through one team (plus other data)."""
    engine = Engine(MODEL)
    tuples = crm_tuples(20_000)
    tuples.append(TupleKey("user:reader", "member", "team:big"))
    for n in range(10_000):
        tuples.append(TupleKey("team:big", "team", f"contact:big{n}"))
    load(engine, tuples)
    samples = []
    count = 0
    for _ in range(repeat):
        started = time.perf_counter()
        count = len(engine.list_objects("user:reader", "can_read", "contact", limit=100_000))
        samples.append((time.perf_counter() - started) * 1000)
    if count < 10_000:
        raise RuntimeError(f"ListObjects found {count} objects, expected at least 10,000")
    return {"fga_list_objects_ms": statistics.median(samples), "fga_list_objects_count": count}


def _cli_file(directory: Path, tuples: list[TupleKey], items: list[tuple[str, str, str]]) -> Path:
    shutil.copy(ROOT / "fga" / "model.fga", directory / "model.fga")
    checks = [{"user": u, "object": o, "assertions": {r: False}} for u, r, o in items]
    doc = {"name": "bench", "model_file": "model.fga",
           "tuples": [{"user": t.user, "relation": t.relation, "object": t.object} for t in tuples],
           "tests": [{"name": "checks", "check": checks}]}
    path = directory / f"bench_{len(items)}.fga.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _cli_seconds(path: Path) -> float:
    started = time.perf_counter()
    subprocess.run([str(FGA_CLI), "model", "test", "--tests", str(path)], cwd=path.parent,
                   capture_output=True, timeout=600, check=False)
    return time.perf_counter() - started


def cli_speedup(work: Path, checks: int = 60, repeat: int = 3) -> dict[str, float]:
    """Per-check time of ``fga model test`` (N checks minus 1 check, so start-up and tuple
    loading cancel out) divided by ours on the same 2k-tuple store and checks."""
    tuples = crm_tuples(2000, seed=3)
    items = queries(tuples, checks, seed=4)
    directory = Path(tempfile.mkdtemp(dir=work))
    many, one = _cli_file(directory, tuples, items), _cli_file(directory, tuples, items[:1])
    cli = []
    for _ in range(repeat):
        cli.append((_cli_seconds(many) - _cli_seconds(one)) / (checks - 1) * 1e6)
    engine = Engine(MODEL)
    load(engine, tuples)
    ours = statistics.median(check_latencies_us(engine, items * 20))
    cli_us = statistics.median(cli)
    return {"fga_cli_check_us": cli_us, "fga_engine_check_2k_us": ours,
            "fga_check_vs_cli_speedup": cli_us / ours}


def run(work: Path, log: Any = print) -> dict[str, float]:
    out: dict[str, float] = {}
    out.update(check_at_100k(work))
    log(f"  check at 100k tuples: p50 {out['fga_check_p50_us']:.1f} µs")
    out.update(list_objects_10k())
    log(f"  list_objects over {out['fga_list_objects_count']:.0f} objects: "
        f"{out['fga_list_objects_ms']:.2f} ms")
    out.update(cli_speedup(work))
    log(f"  fga CLI {out['fga_cli_check_us']:.0f} µs/check vs ours "
        f"{out['fga_engine_check_2k_us']:.1f} µs/check")
    return out
