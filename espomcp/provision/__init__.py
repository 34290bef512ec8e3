"""Production set-up: ``espomcp init auth0|fga|espocrm`` provision, ``espomcp doctor`` checks.

Every provisioning step is idempotent and reports a plan (``PlanItem``: create / update /
unchanged per item); every check reports a ``Finding`` with a fix. Both live in ``report.py``.
"""
