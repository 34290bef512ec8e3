"""WSGI entry point for production: ``gunicorn wsgi:app`` (settings from ESPOMCP_* and .env)."""

from espomcp import create_app

app = create_app()
