"""EspoCRM's id and timestamp formats (reference §1)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime


def new_id() -> str:
    """A fresh EspoCRM-style id: 17 lowercase hex characters."""
    return secrets.token_hex(9)[:17]


def now_str() -> str:
    """Now as EspoCRM stores datetimes: ``YYYY-MM-DD HH:MM:SS`` in UTC."""
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
