"""All 148 official OpenFGA conformance files (``/work/shared/openfga-conformance``) through our
store-test runner and engine, one test per file; the totals appear in pytest's terminal summary
(``OpenFGA conformance with our engine … Checks 396/396 …``) and are asserted by the last test."""

from __future__ import annotations

from pathlib import Path

import pytest

from espomcp.fga.store_test import Outcome, report, run_store_file
from tests.fixtures.fga import CONFORMANCE_DIR, CONFORMANCE_TOTALS, conformance_summary

FILES = sorted(CONFORMANCE_DIR.glob("*.fga.yaml"))
# README.md of the conformance directory: what fga v0.8.2 (OpenFGA v1.22) passes.
EXPECTED = {"files": 148, "Tests": 153, "Checks": 396, "ListObjects": 281, "ListUsers": 323}


def _passed(outcomes: list[Outcome]) -> tuple[int, int]:
    return sum(1 for o in outcomes if o.passing), len(outcomes)


def _run(path: Path) -> str:
    results = run_store_file(path)
    CONFORMANCE_TOTALS[path.name] = (
        (sum(1 for r in results if r.passing), len(results)),
        _passed([o for r in results for o in r.checks]),
        _passed([o for r in results for o in r.list_objects]),
        _passed([o for r in results for o in r.list_users]),
    )
    return report(results) if not all(r.passing for r in results) else ""


def test_the_conformance_directory_is_complete() -> None:
    assert len(FILES) == EXPECTED["files"]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name.removesuffix(".fga.yaml"))
def test_conformance_file(path: Path) -> None:
    failures = _run(path)
    assert not failures, failures


def test_conformance_totals() -> None:
    """Every assertion of every file passes (files not yet run in this session are run here)."""
    for path in FILES:
        if path.name not in CONFORMANCE_TOTALS:
            _run(path)
    summary = conformance_summary()
    print(summary)
    for label in ("Tests", "Checks", "ListObjects", "ListUsers"):
        assert f"{label} {EXPECTED[label]}/{EXPECTED[label]}" in summary, summary


@pytest.mark.parametrize("contextual", ["block", "all"])
def test_conformance_with_tuples_sent_as_contextual_tuples(contextual: str) -> None:
    """The upstream suites' second pass: the same answers when tuples arrive as contextual tuples
    ("block": each block's own tuples; "all": every tuple of a block that fits the limit of 100)."""
    failures = []
    for path in FILES:
        results = run_store_file(path, contextual=contextual)
        if not all(r.passing for r in results):
            failures.append(f"{path.name}:\n{report(results)}")
    assert not failures, "\n".join(failures)
