"""WSGI entry point for production: ``gunicorn wsgi:app`` (settings from ESPOMCP_* and .env)."""

import sys

from espomcp import create_app
from espomcp.settings import ConfigError

try:
    app = create_app()
except ConfigError as exc:
    sys.stderr.write(f"espomcp: {exc}\n")
    raise SystemExit(3) from None  # gunicorn: worker boot error, the arbiter stops
