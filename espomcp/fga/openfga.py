"""FGA backend for an OpenFGA server or Auth0 FGA, through the official sync ``openfga-sdk``.

Error mapping (the one place SDK exceptions enter espomcp): network errors, timeouts, 5xx,
throttling, 401/403 and an unknown store become :class:`FgaUnavailable` (callers deny);
400 validation answers become :class:`FgaError` with the server's code and message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

import urllib3
from openfga_sdk.client import ClientConfiguration
from openfga_sdk.client.models import (
    ClientBatchCheckItem,
    ClientBatchCheckRequest,
    ClientCheckRequest,
    ClientListObjectsRequest,
    ClientTuple,
    ClientWriteRequest,
)
from openfga_sdk.client.models.expand_request import ClientExpandRequest
from openfga_sdk.client.models.list_users_request import ClientListUsersRequest
from openfga_sdk.client.models.write_conflict_opts import (
    ClientWriteRequestOnDuplicateWrites,
    ClientWriteRequestOnMissingDeletes,
    ConflictOptions,
)
from openfga_sdk.configuration import RetryParams
from openfga_sdk.credentials import CredentialConfiguration, Credentials
from openfga_sdk.exceptions import ApiException, OpenApiException, ValidationException
from openfga_sdk.models import FgaObject, ReadRequestTupleKey, RelationshipCondition, UserTypeFilter
from openfga_sdk.sync import OpenFgaClient

from espomcp.deadline import MIN_CALL_SECONDS, remaining
from espomcp.fga import errors
from espomcp.fga.backend import (
    BATCH_CHECK_CHUNK,
    BrokenBackend,
    FgaBackend,
    TupleLike,
    unique_keys,
    write_chunks,
)
from espomcp.fga.errors import FgaError, FgaUnavailable
from espomcp.fga.tuples import TupleKey

if TYPE_CHECKING:
    from espomcp.settings import Settings

log = logging.getLogger("espomcp.fga")
T = TypeVar("T")
CODES_BY_NAME = {name: code for code, name in errors.NAMES.items()}
IGNORE_CONFLICTS = ConflictOptions(on_duplicate_writes=ClientWriteRequestOnDuplicateWrites.IGNORE,
                                   on_missing_deletes=ClientWriteRequestOnMissingDeletes.IGNORE)


class OpenFgaBackend:
    """FgaBackend talking to one OpenFGA store (pinned model id, or the store's latest)."""

    name = "openfga"
    enforcing = True

    def __init__(self, client: OpenFgaClient, *, store_id: str, model_id: str = "") -> None:
        self.client = client
        self.store_id = store_id
        self.model_id = model_id
        self._model: dict[str, Any] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> FgaBackend:
        """Configure the SDK client from ``ESPOMCP_FGA_*``; a broken backend (every decision
        denied, cause in ``health()``) when the configuration is incomplete or malformed."""
        if not settings.fga_api_url:
            return BrokenBackend("openfga", "OpenFGA misconfigured: ESPOMCP_FGA_API_URL is empty")
        if not settings.fga_store_id:
            return BrokenBackend("openfga", "OpenFGA misconfigured: ESPOMCP_FGA_STORE_ID is empty")
        secret = settings.fga_client_secret.get_secret_value()
        token = settings.fga_api_token.get_secret_value()
        credentials = None
        if settings.fga_client_id:
            if not (secret and settings.fga_api_issuer):
                return BrokenBackend("openfga", "OpenFGA misconfigured: client credentials need "
                                     "ESPOMCP_FGA_CLIENT_SECRET and ESPOMCP_FGA_API_ISSUER")
            credentials = Credentials(method="client_credentials", configuration=CredentialConfiguration(
                api_issuer=settings.fga_api_issuer, api_audience=settings.fga_api_audience or None,
                client_id=settings.fga_client_id, client_secret=secret))
        elif token:
            credentials = Credentials(method="api_token",
                                      configuration=CredentialConfiguration(api_token=token))
        # the SDK reads values <= 100 as seconds, larger ones as milliseconds
        timeout_ms = max(101, int(settings.fga_timeout_seconds * 1000))
        try:
            config = ClientConfiguration(
                api_url=settings.fga_api_url, store_id=settings.fga_store_id,
                authorization_model_id=settings.fga_model_id or None, credentials=credentials,
                retry_params=RetryParams(max_retry=2, min_wait_in_ms=50, max_wait_in_sec=1),
                timeout_millisec=timeout_ms)
            config.is_valid()
            client = OpenFgaClient(config)
        except (OpenApiException, ValueError, TypeError) as exc:
            return BrokenBackend("openfga", f"OpenFGA misconfigured: {exc}")
        return cls(client, store_id=settings.fga_store_id, model_id=settings.fga_model_id)

    # --- error mapping ----------------------------------------------------------------
    def _call(self, what: str, fn: Callable[[], T]) -> T:
        left = remaining()
        if left is not None and left < MIN_CALL_SECONDS:  # the tool call's budget is spent
            raise FgaUnavailable(f"OpenFGA {what} not attempted: the request's time limit "
                                 "was reached")
        try:
            return fn()
        except ValidationException as exc:
            raise FgaError(CODES_BY_NAME.get(exc.code or "", errors.VALIDATION_ERROR),
                           exc.error_message) from exc
        except ApiException as exc:
            reason = {401: "credentials rejected", 403: "credentials rejected",
                      404: "store or model not found"}.get(exc.status or 0, "server error")
            log.error("OpenFGA %s failed: HTTP %s %s", what, exc.status, exc.code or "")
            raise FgaUnavailable(f"OpenFGA {what} failed ({reason}, HTTP {exc.status})") from exc
        except OpenApiException as exc:
            log.error("OpenFGA %s rejected client-side: %s", what, exc)
            raise FgaUnavailable(f"OpenFGA {what} failed: {exc}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            log.error("OpenFGA %s unreachable: %s", what, type(exc).__name__)
            raise FgaUnavailable(f"OpenFGA unreachable during {what} ({type(exc).__name__})") from exc
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.error("OpenFGA %s returned an unexpected answer: %s", what, exc)
            raise FgaUnavailable(f"OpenFGA {what} returned an unexpected answer") from exc

    # --- decisions --------------------------------------------------------------------
    def check(self, user: str, relation: str, object: str,
              context: dict[str, Any] | None = None) -> bool:
        request = ClientCheckRequest(user=user, relation=relation, object=object, context=context)
        return bool(self._call("check", lambda: self.client.check(request).allowed))

    def batch_check(self, checks: list[tuple[str, str, str]]) -> list[bool]:
        if not checks:
            return []
        items = [ClientBatchCheckItem(user=u, relation=r, object=o, correlation_id=str(i))
                 for i, (u, r, o) in enumerate(checks)]
        response = self._call("batch check", lambda: self.client.batch_check(
            ClientBatchCheckRequest(checks=items), {"max_batch_size": BATCH_CHECK_CHUNK}))
        by_id = {item.correlation_id: item for item in response.result}
        answers = []
        for i, (u, r, o) in enumerate(checks):
            item = by_id.get(str(i))
            if item is None or item.error is not None:
                log.warning("batch check item denied on error: %s %s %s: %s", u, r, o,
                            getattr(item, "error", "missing"))
                answers.append(False)
            else:
                answers.append(bool(item.allowed))
        return answers

    def list_objects(self, user: str, relation: str, type: str) -> list[str]:
        request = ClientListObjectsRequest(user=user, relation=relation, type=type)
        return list(self._call("list objects", lambda: self.client.list_objects(request).objects))

    def list_users(self, object: str, relation: str,
                   user_filters: list[tuple[str, str | None]]) -> list[str]:
        obj_type, _, obj_id = object.partition(":")
        request = ClientListUsersRequest(
            object=FgaObject(type=obj_type, id=obj_id), relation=relation,
            user_filters=[UserTypeFilter(type=t, relation=r) for t, r in user_filters])
        users = self._call("list users", lambda: self.client.list_users(request).users)
        return [_user_string(user) for user in users]

    def expand(self, relation: str, object: str) -> dict[str, Any]:
        response = self._call("expand", lambda: self.client.expand(
            ClientExpandRequest(relation=relation, object=object)))
        return to_json(response.tree)

    # --- tuples -----------------------------------------------------------------------
    def write(self, writes: Iterable[TupleLike] = (), deletes: Iterable[TupleLike] = ()) -> None:
        for chunk_writes, chunk_deletes in write_chunks(unique_keys(writes), unique_keys(deletes)):
            body = ClientWriteRequest(writes=[_client_tuple(k) for k in chunk_writes] or None,
                                      deletes=[_client_tuple(k) for k in chunk_deletes] or None)
            self._call("write", lambda b=body: self.client.write(b, {"conflict": IGNORE_CONFLICTS}))

    def read(self, user: str | None = None, relation: str | None = None,
             object: str | None = None, page_size: int = 100,
             continuation_token: str | None = None) -> tuple[list[TupleKey], str]:
        options: dict[str, Any] = {"page_size": page_size}
        if continuation_token:
            options["continuation_token"] = continuation_token
        key = ReadRequestTupleKey(user=user, relation=relation, object=object)
        response = self._call("read", lambda: self.client.read(key, options))
        keys = [TupleKey.from_dict(to_json(item.key)) for item in response.tuples]
        return keys, response.continuation_token or ""

    # --- model and health -------------------------------------------------------------
    def model(self) -> dict[str, Any]:
        if self._model is None:
            self._model = self._read_model()
        return self._model

    def _read_model(self) -> dict[str, Any]:
        if self.model_id:
            response = self._call("read model", self.client.read_authorization_model)
        else:
            response = self._call("read model", self.client.read_latest_authorization_model)
        if response.authorization_model is None:
            raise FgaUnavailable(f"OpenFGA store {self.store_id} has no authorization model")
        model = to_json(response.authorization_model)
        out = {"schema_version": model.get("schema_version", "1.1"),
               "type_definitions": model.get("type_definitions", [])}
        if model.get("conditions"):
            out["conditions"] = model["conditions"]
        return out

    def health(self) -> tuple[bool, str]:
        try:
            self._model = self._read_model()
        except (FgaError, FgaUnavailable) as exc:
            return False, str(exc)
        model = self.model_id or "latest model"
        return True, f"OpenFGA store {self.store_id} ({model}) reachable"


def to_json(value: Any) -> Any:
    """An SDK model as its wire JSON (camelCase userset keys, snake_case elsewhere)."""
    if isinstance(value, list):
        return [to_json(item) for item in value]
    if isinstance(value, dict):
        return {key: to_json(item) for key, item in value.items()}
    if hasattr(value, "openapi_types") and hasattr(value, "attribute_map"):
        return {value.attribute_map[attr]: to_json(getattr(value, attr))
                for attr in value.openapi_types if getattr(value, attr) is not None}
    if hasattr(value, "value") and type(value).__module__.startswith("openfga_sdk"):
        return value.value
    return value


def _client_tuple(key: TupleKey) -> ClientTuple:
    condition = None
    if key.condition is not None:
        condition = RelationshipCondition(name=key.condition.name, context=key.condition.context)
    return ClientTuple(user=key.user, relation=key.relation, object=key.object, condition=condition)


def _user_string(user: Any) -> str:
    if user.object is not None:
        return f"{user.object.type}:{user.object.id}"
    if user.userset is not None:
        return f"{user.userset.type}:{user.userset.id}#{user.userset.relation}"
    return f"{user.wildcard.type}:*"

