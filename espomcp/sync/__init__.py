"""Permission sync: keep the FGA relationship tuples following EspoCRM, whoever changes it.

``mapping`` (EspoCRM facts → tuples), ``outbox`` (durable retry + ``TupleWriter``),
``backfill``, ``refresh`` (one object), ``webhooks`` (receiver + registration), ``reconcile``
and ``status``. ``init_app`` wires the outbox, its drainer, the receiver and readiness.
"""

from __future__ import annotations

import atexit
from typing import Any

OUTBOX_READY_MAX = 1000  # /readyz turns red when this many tuple changes are waiting


def init_app(app: Any, svc: Any) -> None:
    """Mount ``POST /webhooks/espocrm`` and add ``svc.readiness["outbox"]``; unless the factory
    already did, set ``svc.outbox`` (a TupleWriter over ``svc.extras["outbox"]``) and start the
    drainer (stopped at exit)."""
    from espomcp.sync import webhooks
    from espomcp.sync.outbox import Outbox, TupleWriter

    outbox = svc.extras.get("outbox")
    if outbox is None:
        outbox = svc.extras["outbox"] = Outbox.from_settings(svc.settings)
        if svc.fga is not None:
            outbox.start_drainer(svc.fga)
    if svc.outbox is None:
        svc.outbox = TupleWriter(outbox)
    atexit.register(outbox.stop_drainer)
    svc.readiness["outbox"] = lambda: outbox_readiness(outbox)
    webhooks.init_app(app, svc)


def outbox_readiness(outbox: Any, limit: int = OUTBOX_READY_MAX) -> tuple[bool, str]:
    """(ok, detail): ok while fewer than ``limit`` changes wait to reach the FGA store."""
    stats = outbox.stats()
    detail = f"depth {stats['depth']}"
    if stats["depth"]:
        detail += f", oldest {stats['oldest_age_seconds']} s, last error: {stats['last_error']}"
    if stats["dead"]:
        detail += f", {stats['dead']} rejected"
    return stats["depth"] < limit, detail
