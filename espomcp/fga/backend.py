"""The FGA backend contract and the factory that picks one from the settings.

Three implementations share :class:`FgaBackend`: ``embedded`` (in-process engine over SQLite),
``openfga`` (OpenFGA or Auth0 FGA through ``openfga-sdk``) and ``off`` (scope-only). Every
backend failure surfaces as :class:`~espomcp.fga.errors.FgaUnavailable`; callers deny. Invalid
requests (unknown relation, tuple the model does not allow) raise
:class:`~espomcp.fga.errors.FgaError`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from espomcp.fga.errors import FgaError, FgaUnavailable
from espomcp.fga.tuples import TupleKey

if TYPE_CHECKING:
    from espomcp.settings import Settings

log = logging.getLogger("espomcp.fga")

#: what ``write`` accepts per tuple: a TupleKey, its REST dict, or ``(user, relation, object)``
TupleLike = TupleKey | dict[str, Any] | Sequence[str]

#: OpenFGA's limits: tuple keys per Write request, checks per BatchCheck request
WRITE_CHUNK = 100
BATCH_CHECK_CHUNK = 50

PACKAGED_MODEL = Path(__file__).resolve().parent.parent / "data" / "model.json"
REPO_MODEL = Path(__file__).resolve().parents[2] / "fga" / "model.json"


class FgaBackend(Protocol):
    """Relationship-based authorization decisions and tuple maintenance."""

    name: str
    #: False only for the scope-only ``off`` backend: callers may skip list filtering
    enforcing: bool

    def check(self, user: str, relation: str, object: str,
              context: dict[str, Any] | None = None) -> bool:
        """Whether ``user`` has ``relation`` on ``object``."""
        ...

    def batch_check(self, checks: list[tuple[str, str, str]]) -> list[bool]:
        """One answer per ``(user, relation, object)``, in order; an item error is a deny."""
        ...

    def list_objects(self, user: str, relation: str, type: str) -> list[str]:
        """Objects ``type:id`` of ``type`` on which ``user`` has ``relation``."""
        ...

    def list_users(self, object: str, relation: str,
                   user_filters: list[tuple[str, str | None]]) -> list[str]:
        """Subjects (``type:id``, ``type:*`` or ``type:id#rel``) having ``relation`` on ``object``."""
        ...

    def write(self, writes: Iterable[TupleLike] = (), deletes: Iterable[TupleLike] = ()) -> None:
        """Write and delete tuples; existing writes and missing deletes are ignored."""
        ...

    def read(self, user: str | None = None, relation: str | None = None,
             object: str | None = None, page_size: int = 100,
             continuation_token: str | None = None) -> tuple[list[TupleKey], str]:
        """One page of stored tuples matching the filter and the next token (``""`` = end)."""
        ...

    def expand(self, relation: str, object: str) -> dict[str, Any]:
        """One level of the userset tree: ``{"root": {...}}`` as OpenFGA's Expand returns it."""
        ...

    def model(self) -> dict[str, Any]:
        """The authorization model in OpenFGA JSON (``schema_version``, ``type_definitions``...)."""
        ...

    def health(self) -> tuple[bool, str]:
        """(ok, human-readable detail) for /readyz; never raises."""
        ...


def as_tuple_key(value: TupleLike) -> TupleKey:
    """Normalise a TupleKey, a REST-shaped dict or a ``(user, relation, object)`` sequence."""
    if isinstance(value, TupleKey):
        return value
    if isinstance(value, dict):
        return TupleKey.from_dict(value)
    if isinstance(value, (list, tuple)) and len(value) == 3 and all(isinstance(v, str) for v in value):
        return TupleKey(value[0], value[1], value[2], None)
    raise FgaError(2000, f"not a tuple key: {value!r}")


def unique_keys(values: Iterable[TupleLike]) -> list[TupleKey]:
    """Normalised tuple keys without duplicates (OpenFGA rejects duplicates in one request)."""
    seen: set[tuple[str, str, str]] = set()
    out: list[TupleKey] = []
    for value in values:
        key = as_tuple_key(value)
        ident = (key.user, key.relation, key.object)
        if ident not in seen:
            seen.add(ident)
            out.append(key)
    return out


def write_chunks(writes: list[TupleKey], deletes: list[TupleKey]
                 ) -> Iterator[tuple[list[TupleKey], list[TupleKey]]]:
    """Split into requests of at most WRITE_CHUNK keys: one atomic request when it fits,
    otherwise deletes first, then writes."""
    if len(writes) + len(deletes) <= WRITE_CHUNK:
        if writes or deletes:
            yield writes, deletes
        return
    for start in range(0, len(deletes), WRITE_CHUNK):
        yield [], deletes[start:start + WRITE_CHUNK]
    for start in range(0, len(writes), WRITE_CHUNK):
        yield writes[start:start + WRITE_CHUNK], []


def load_model(path: Path | None = None) -> dict[str, Any]:
    """The authorization model JSON: ``path`` if given, else the repository's
    ``fga/model.json``, else the copy packaged as ``espomcp/data/model.json``."""
    candidates = [path] if path else [REPO_MODEL, PACKAGED_MODEL]
    for candidate in candidates:
        if candidate is not None and candidate.is_file():
            try:
                model = json.loads(candidate.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise FgaError(2056, f"cannot read the authorization model {candidate}: {exc}") from exc
            if not isinstance(model, dict) or "type_definitions" not in model:
                raise FgaError(2056, f"{candidate} is not an OpenFGA JSON authorization model")
            return model
    raise FgaError(2056, f"authorization model not found: {path or PACKAGED_MODEL}")


def build_backend(settings: Settings) -> FgaBackend:
    """The backend ``settings.fga_backend`` names. Never falls back silently: a backend that
    cannot start (missing store, unreadable model) still returns, but denies every decision
    with FgaUnavailable and reports the cause through ``health()``."""
    kind = settings.fga_backend
    if kind == "off":
        from espomcp.fga.off import OffBackend

        log.warning("FGA DISABLED (ESPOMCP_FGA_BACKEND=off): record-level authorization is OFF, "
                    "every authenticated user with the right scopes can reach every record")
        return OffBackend(_model_or_empty(settings))
    if kind == "openfga":
        from espomcp.fga.openfga import OpenFgaBackend

        return OpenFgaBackend.from_settings(settings)
    if kind == "embedded":
        from espomcp.fga.embedded import EmbeddedBackend

        return EmbeddedBackend.from_settings(settings)
    raise ValueError(f"unknown FGA backend {kind!r}")


def _model_or_empty(settings: Settings) -> dict[str, Any]:
    try:
        return load_model(settings.fga_model_path)
    except FgaError:
        return {"schema_version": "1.1", "type_definitions": [], "conditions": {}}


class BrokenBackend:
    """A backend that could not be set up: every call raises FgaUnavailable(reason)."""

    enforcing = True

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        log.error("FGA backend %s unavailable: %s", name, reason)

    def _fail(self, *args: Any, **kwargs: Any) -> Any:
        raise FgaUnavailable(self.reason)

    check = batch_check = list_objects = list_users = write = read = expand = model = _fail

    def health(self) -> tuple[bool, str]:
        return False, self.reason
