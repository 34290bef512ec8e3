"""A fake EspoCRM 9 REST API for tests and the demo (shaped like moto: models, responses,
urls, exceptions, seed). Run standalone with ``python -m fakes.espocrm --port N``."""

from __future__ import annotations

from fakes.espocrm.app import FakeEspoCRM, create_app
from fakes.espocrm.models import EspoState
from fakes.espocrm.seed import DEMO_API_KEY, DEMO_SECRET, seed, user_id

__all__ = ["DEMO_API_KEY", "DEMO_SECRET", "EspoState", "FakeEspoCRM", "create_app", "seed",
           "user_id"]
