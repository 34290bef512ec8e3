"""What provisioning and checks report: plan items, findings, and their text/JSON rendering."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Action = Literal["create", "update", "unchanged", "skipped", "passed", "failed"]


class ProvisionError(Exception):
    """Provisioning cannot go on; ``message`` says why and what to do (never a secret)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class PlanItem:
    """One thing ``init`` manages: ``kind`` (e.g. "resource server"), ``name``, the ``action``
    taken (or that would be taken with ``--dry-run``) and the ``changes`` in words."""

    kind: str
    name: str
    action: Action
    changes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Finding:
    """One ``doctor`` check: ``ok`` or not, what was seen, and how to fix it when not ok."""

    check: str
    ok: bool
    detail: str
    fix: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def render_plan(title: str, items: Iterable[PlanItem], *, dry_run: bool = False) -> str:
    """The plan as text: one line per item, its changes indented below."""
    suffix = " (dry run: nothing changed)" if dry_run else ""
    lines = [f"{title}{suffix}:"]
    for item in items:
        verb = f"would {item.action}" if dry_run and item.action in ("create", "update") else item.action
        lines.append(f"  {verb:<16} {item.kind}: {item.name}")
        lines.extend(f"      - {change}" for change in item.changes)
    return "\n".join(lines)


def render_env(env: Mapping[str, str]) -> str:
    """``KEY=value`` lines for the operator's environment (values never secrets)."""
    if not env:
        return ""
    return "Set these environment variables for espomcp:\n" + "\n".join(
        f"  {key}={value}" for key, value in env.items())


def render_findings(findings: Iterable[Finding]) -> str:
    """Doctor output: PASS/FAIL per check, the fix under each failure, then a summary."""
    findings = list(findings)
    lines = []
    for finding in findings:
        lines.append(f"[{'PASS' if finding.ok else 'FAIL'}] {finding.check}: {finding.detail}")
        if not finding.ok and finding.fix:
            lines.append(f"       fix: {finding.fix}")
    failed = sum(1 for f in findings if not f.ok)
    lines.append(f"{len(findings) - failed}/{len(findings)} checks passed"
                 + ("" if not failed else f"; {failed} need attention"))
    return "\n".join(lines)


def to_json(payload: Any) -> str:
    return json.dumps(payload, indent=2, sort_keys=False)
