"""State and behaviour of the fake OpenFGA server: stores, authorization models, tuples,
client-credentials tokens and fault knobs. Evaluation is the embedded ``Engine`` (in memory).

Each store keeps one tuple store shared by one Engine per authorization model id, so a request
may name any model of the store (OpenFGA semantics) while tuples stay per store.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ulid import ULID

from espomcp.fga.engine import Engine
from espomcp.fga.errors import FgaError
from fakes.openfga.exceptions import (
    AuthorizationModelNotFound,
    InvalidBearerToken,
    InvalidContinuationToken,
    LatestAuthorizationModelNotFound,
    StoreNotFound,
    ValidationError,
    from_engine,
)

MODES = ("ok", "down", "slow")


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def new_id() -> str:
    """A fresh ULID, the id format of OpenFGA stores and models."""
    return str(ULID())


@dataclass
class Store:
    """One OpenFGA store: its models (oldest first) and the engines evaluating them."""

    id: str
    name: str
    created_at: str
    updated_at: str
    models: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    engines: dict[str, Engine] = field(default_factory=dict)
    assertions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    tuple_store: Any = None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "created_at": self.created_at,
                "updated_at": self.updated_at}

    def model(self, model_id: str | None) -> tuple[str, dict[str, Any]]:
        """The named model, or the latest one when ``model_id`` is empty."""
        if not model_id:
            if not self.models:
                raise LatestAuthorizationModelNotFound(
                    f"no authorization models found for store {self.id}")
            return self.models[-1]
        for mid, model in self.models:
            if mid == model_id:
                return mid, model
        raise AuthorizationModelNotFound(f"authorization model {model_id} not found")

    def engine(self, model_id: str | None = None) -> Engine:
        """The engine evaluating ``model_id`` (latest when empty) over this store's tuples."""
        mid, _ = self.model(model_id)
        return self.engines[mid]


@dataclass
class FaultState:
    mode: str = "ok"
    delay: float = 2.0


class FakeOpenFga:
    """The whole fake service state. Thread-safe; ``reset()`` empties it between tests."""

    def __init__(self, *, require_auth: bool = False, client_id: str = "fga-client",
                 client_secret: str = "fga-secret", api_token: str = "",
                 audience: str = "", token_ttl: int = 3600) -> None:
        self.require_auth = require_auth
        self.client_id = client_id
        self.client_secret = client_secret
        self.api_token = api_token
        self.audience = audience
        self.token_ttl = token_ttl
        self.lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        """Forget every store, token and fault; back to a fresh server."""
        with self.lock:
            self.stores: dict[str, Store] = {}
            self.tokens: dict[str, float] = {}
            self.fault = FaultState()
            self.token_requests = 0

    # --- faults and auth ----------------------------------------------------------
    def set_fault(self, mode: str, delay: float | None = None) -> None:
        if mode not in MODES:
            raise ValidationError(f"mode must be one of {', '.join(MODES)}")
        with self.lock:
            self.fault.mode = mode
            if delay is not None:
                self.fault.delay = float(delay)

    def issue_token(self, client_id: str, client_secret: str, audience: str | None) -> dict[str, Any]:
        """Client-credentials grant: an opaque bearer token; wrong credentials raise InvalidBearerToken."""
        with self.lock:
            self.token_requests += 1
            if not (secrets.compare_digest(client_id, self.client_id)
                    and secrets.compare_digest(client_secret, self.client_secret)):
                raise InvalidBearerToken("invalid client credentials")
            if self.audience and audience != self.audience:
                raise InvalidBearerToken("audience not allowed for this client")
            token = secrets.token_urlsafe(32)
            self.tokens[token] = time.time() + self.token_ttl
        return {"access_token": token, "expires_in": self.token_ttl, "token_type": "Bearer"}

    def authenticate(self, authorization: str | None) -> None:
        """Raise InvalidBearerToken unless auth is off or the bearer token is known and live."""
        if not self.require_auth:
            return
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise InvalidBearerToken("missing bearer token")
        if self.api_token and secrets.compare_digest(token, self.api_token):
            return
        with self.lock:
            expires = self.tokens.get(token)
        if expires is None or expires < time.time():
            raise InvalidBearerToken("invalid bearer token")

    # --- stores ---------------------------------------------------------------------
    def create_store(self, name: str) -> Store:
        if not isinstance(name, str) or not name.strip():
            raise ValidationError("invalid CreateStoreRequest.Name: value length must be at least 3")
        stamp = now_rfc3339()
        store = Store(id=new_id(), name=name, created_at=stamp, updated_at=stamp)
        with self.lock:
            self.stores[store.id] = store
        return store

    def store(self, store_id: str) -> Store:
        with self.lock:
            store = self.stores.get(store_id)
        if store is None:
            raise StoreNotFound("store not found")
        return store

    def delete_store(self, store_id: str) -> None:
        self.store(store_id)
        with self.lock:
            self.stores.pop(store_id, None)

    def list_stores(self) -> list[Store]:
        with self.lock:
            return list(self.stores.values())

    # --- models ---------------------------------------------------------------------
    def write_model(self, store_id: str, body: dict[str, Any]) -> str:
        """Validate and add a model; returns its ULID."""
        store = self.store(store_id)
        model = {"schema_version": body.get("schema_version"),
                 "type_definitions": body.get("type_definitions"),
                 "conditions": body.get("conditions") or {}}
        if model["schema_version"] != "1.1":
            raise ValidationError(f"unsupported schema version {model['schema_version']!r}",
                                  code="invalid_authorization_model")
        if not isinstance(model["type_definitions"], list) or not model["type_definitions"]:
            raise ValidationError("type_definitions must contain at least one type",
                                  code="type_definitions_too_few_items")
        with self.lock:
            try:
                engine = self._engine_for(store, model)
            except FgaError as exc:
                raise from_engine(exc) from exc
            model_id = new_id()
            store.models.append((model_id, model))
            store.engines[model_id] = engine
            store.updated_at = now_rfc3339()
        return model_id

    def _engine_for(self, store: Store, model: dict[str, Any]) -> Engine:
        if store.tuple_store is None:
            engine = Engine(model)
            store.tuple_store = engine.store
            return engine
        return Engine(model, store.tuple_store)


def page(items: list[Any], page_size: Any, token: Any, *, default: int = 50,
         maximum: int = 100) -> tuple[list[Any], str]:
    """Offset pagination with opaque tokens (the offset as a string)."""
    size = default if page_size in (None, "", 0) else page_size
    try:
        size = int(size)
    except (TypeError, ValueError):
        raise ValidationError("page_size must be an integer", code="page_size_invalid") from None
    if not 1 <= size <= maximum:
        raise ValidationError(f"page_size must be between 1 and {maximum}", code="page_size_invalid")
    start = 0
    if token:
        if not isinstance(token, str) or not token.isdigit():
            raise InvalidContinuationToken("invalid continuation token")
        start = int(token)
    chunk = items[start:start + size]
    end = start + size
    return chunk, (str(end) if end < len(items) else "")
