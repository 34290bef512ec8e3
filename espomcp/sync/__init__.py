"""Permission sync: keep the FGA relationship tuples following EspoCRM, whoever changes it.

``mapping`` (EspoCRM facts → tuples), ``outbox`` (durable retry + ``TupleWriter``),
``backfill``, ``webhooks`` (receiver + registration), ``reconcile`` and ``status``.
"""
