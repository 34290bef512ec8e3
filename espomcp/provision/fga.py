"""``espomcp init fga``: an OpenFGA / Auth0 FGA store holding espomcp's model, verified.

1. Store: ``--store-id`` (or ``ESPOMCP_FGA_STORE_ID``) must exist; otherwise the store named
   ``--store-name`` is found (paging ``ListStores``) or created.
2. Model: ``fga/model.json`` (generated from ``fga/model.fga``) is written unless the store's
   latest model already equals it (compared as normalised JSON), so a second run writes nothing.
3. Verification: every test of ``fga/store.fga.yaml`` runs against the store through the SDK
   (Check, ListObjects, ListUsers) with the file's tuples sent as *contextual tuples*, pinned to
   the model id: nothing is written to the store, and stored data cannot satisfy an assertion
   about the test's own objects.

Credentials come from the settings: none, ``ESPOMCP_FGA_API_TOKEN`` (OpenFGA pre-shared key) or
client credentials (Auth0 FGA). With ``ESPOMCP_FGA_BACKEND=embedded`` and no API URL the same
tests run against the embedded engine and nothing remote is touched.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import urllib3
from openfga_sdk.client import ClientConfiguration
from openfga_sdk.client.models import ClientCheckRequest, ClientListObjectsRequest, ClientTuple
from openfga_sdk.client.models.list_users_request import ClientListUsersRequest
from openfga_sdk.credentials import CredentialConfiguration, Credentials
from openfga_sdk.exceptions import ApiException, OpenApiException, ValidationException
from openfga_sdk.models import (
    CreateStoreRequest,
    FgaObject,
    RelationshipCondition,
    UserTypeFilter,
    WriteAuthorizationModelRequest,
)
from openfga_sdk.sync import OpenFgaClient

from espomcp.fga.backend import REPO_MODEL, load_model
from espomcp.fga.errors import FgaError
from espomcp.fga.openfga import CODES_BY_NAME, to_json
from espomcp.fga.store_test import StoreTestError, report, run_store_file
from espomcp.fga.tuples import TupleKey
from espomcp.fga.validation import validate_model
from espomcp.provision.report import PlanItem, ProvisionError
from espomcp.settings import Settings

REPO_TESTS = REPO_MODEL.parent / "store.fga.yaml"
MAX_CONTEXTUAL_TUPLES = 100  # OpenFGA's limit per request


@dataclass
class FgaInitOptions:
    api_url: str | None = None
    store_id: str | None = None
    store_name: str = "espomcp"
    model_path: Path | None = None
    tests_path: Path | None = None
    verify: bool = True
    dry_run: bool = False


@dataclass
class FgaInitResult:
    title: str
    items: list[PlanItem] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    report: str = ""
    verified: bool | None = None  # None = not run


def normalise(model: dict[str, Any]) -> dict[str, Any]:
    """The parts of a model that matter for equality, without ids and empty values."""
    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            out = {k: strip(v) for k, v in value.items()}
            return {k: v for k, v in out.items() if v not in (None, "", {}, [])}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip({"schema_version": model.get("schema_version", "1.1"),
                  "type_definitions": model.get("type_definitions") or [],
                  "conditions": model.get("conditions") or {}})


def same_model(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return json.dumps(normalise(a), sort_keys=True) == json.dumps(normalise(b), sort_keys=True)


class FgaInit:
    """One ``init fga`` run (see the module docstring)."""

    def __init__(self, settings: Settings, options: FgaInitOptions) -> None:
        self.settings = settings
        self.options = options
        try:
            self.model = load_model(options.model_path or settings.fga_model_path)
        except FgaError as exc:
            raise ProvisionError(exc.message) from None
        self.tests = options.tests_path or REPO_TESTS

    def run(self) -> FgaInitResult:
        api_url = self.options.api_url or self.settings.fga_api_url
        if not api_url:
            if self.settings.fga_backend == "embedded":
                return self._embedded()
            raise ProvisionError("no OpenFGA API URL: pass --api-url or set ESPOMCP_FGA_API_URL")
        client = self._client(api_url)
        try:
            return self._remote(client, api_url)
        finally:
            client.close()

    # --- embedded -------------------------------------------------------------------------
    def _embedded(self) -> FgaInitResult:
        try:
            validate_model(self.model)
        except FgaError as exc:
            raise ProvisionError(f"the authorization model is invalid: {exc.message}") from None
        result = FgaInitResult(f"embedded FGA store {self.settings.store_path}")
        state = "exists" if self.settings.store_path.exists() else "created at first start"
        result.items.append(PlanItem("store", str(self.settings.store_path), "unchanged", [state]))
        result.items.append(PlanItem("model", str(self.options.model_path or
                                                  self.settings.fga_model_path or REPO_MODEL),
                                     "unchanged", ["loaded by the server at start"]))
        result.env = {"ESPOMCP_FGA_BACKEND": "embedded"}
        if self.options.verify:
            self._verify(result, engine_factory=None)
        return result

    # --- OpenFGA / Auth0 FGA ----------------------------------------------------------------
    def _client(self, api_url: str) -> OpenFgaClient:
        s = self.settings
        credentials = None
        if s.fga_client_id:
            credentials = Credentials(method="client_credentials", configuration=CredentialConfiguration(
                api_issuer=s.fga_api_issuer, api_audience=s.fga_api_audience or None,
                client_id=s.fga_client_id, client_secret=s.fga_client_secret.get_secret_value()))
        elif s.fga_api_token.get_secret_value():
            credentials = Credentials(method="api_token", configuration=CredentialConfiguration(
                api_token=s.fga_api_token.get_secret_value()))
        try:
            config = ClientConfiguration(api_url=api_url, credentials=credentials,
                                         timeout_millisec=max(101, int(s.fga_timeout_seconds * 1000)))
            config.is_valid()
            return OpenFgaClient(config)
        except (OpenApiException, ValueError, TypeError) as exc:
            raise ProvisionError(f"OpenFGA client configuration invalid: {exc}") from None

    def _call(self, what: str, fn: Any) -> Any:
        try:
            return fn()
        except (OpenApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise provision_error(what, exc) from None

    def _remote(self, client: OpenFgaClient, api_url: str) -> FgaInitResult:
        result = FgaInitResult(f"OpenFGA {api_url}")
        store_id = self._store(client, result)
        model_id = ""
        if store_id:
            client.set_store_id(store_id)
            model_id = self._model(client, result)
        result.env = {"ESPOMCP_FGA_BACKEND": "openfga", "ESPOMCP_FGA_API_URL": api_url,
                      "ESPOMCP_FGA_STORE_ID": store_id or "(created on a real run)",
                      "ESPOMCP_FGA_MODEL_ID": model_id or "(written on a real run)"}
        s = self.settings
        if s.fga_client_id:
            result.env.update({"ESPOMCP_FGA_CLIENT_ID": s.fga_client_id,
                               "ESPOMCP_FGA_CLIENT_SECRET": "(the secret used now)",
                               "ESPOMCP_FGA_API_ISSUER": s.fga_api_issuer,
                               "ESPOMCP_FGA_API_AUDIENCE": s.fga_api_audience})
        elif s.fga_api_token.get_secret_value():
            result.env["ESPOMCP_FGA_API_TOKEN"] = "(the token used now)"
        if self.options.verify and model_id:
            self._verify(result, engine_factory=lambda _model: RemoteVerifier(client, model_id))
        return result

    def _store(self, client: OpenFgaClient, result: FgaInitResult) -> str:
        wanted = self.options.store_id or self.settings.fga_store_id
        if wanted:
            client.set_store_id(wanted)
            store = self._call("GetStore", client.get_store)
            result.items.append(PlanItem("store", f"{store.name} ({store.id})", "unchanged"))
            return str(store.id)
        name, token = self.options.store_name, ""
        while True:
            options: dict[str, Any] = {"page_size": 100}
            if token:
                options["continuation_token"] = token
            page = self._call("ListStores", lambda o=options: client.list_stores(o))
            found = next((s for s in page.stores or [] if s.name == name), None)
            if found is not None:
                result.items.append(PlanItem("store", f"{name} ({found.id})", "unchanged"))
                return str(found.id)
            token = page.continuation_token or ""
            if not token:
                break
        if self.options.dry_run:
            result.items.append(PlanItem("store", name, "create"))
            return ""
        created = self._call("CreateStore", lambda: client.create_store(CreateStoreRequest(name=name)))
        result.items.append(PlanItem("store", f"{name} ({created.id})", "create"))
        return str(created.id)

    def _model(self, client: OpenFgaClient, result: FgaInitResult) -> str:
        latest = self._call("ReadLatestAuthorizationModel", client.read_latest_authorization_model)
        current = latest.authorization_model
        if current is not None and same_model(to_json(current), self.model):
            result.items.append(PlanItem("model", str(current.id), "unchanged",
                                         ["the store's latest model equals fga/model.json"]))
            return str(current.id)
        change = "no model yet" if current is None else f"latest model {current.id} differs"
        if self.options.dry_run:  # nothing to verify: our model is not in the store yet
            result.items.append(PlanItem("model", "fga/model.json", "create", [change]))
            return ""
        body = WriteAuthorizationModelRequest(
            schema_version=self.model.get("schema_version", "1.1"),
            type_definitions=self.model["type_definitions"],
            conditions=self.model.get("conditions") or None)
        written = self._call("WriteAuthorizationModel",
                             lambda: client.write_authorization_model(body))
        model_id = str(written.authorization_model_id)
        result.items.append(PlanItem("model", model_id, "create", [change]))
        return model_id

    # --- verification -----------------------------------------------------------------------
    def _verify(self, result: FgaInitResult, engine_factory: Any) -> None:
        if not Path(self.tests).is_file():
            result.report = f"verification skipped: {self.tests} not found (pass --tests FILE)"
            return
        kwargs: dict[str, Any] = {}
        if engine_factory:  # remote: every tuple travels as a contextual tuple, none is written
            kwargs = {"engine_factory": engine_factory, "contextual": "all"}
        try:
            results = run_store_file(self.tests, **kwargs)
        except StoreTestError as exc:
            raise ProvisionError(f"cannot run {self.tests}: {exc}") from None
        result.verified = all(r.passing for r in results)
        verdict = "passed" if result.verified else "FAILED"
        result.report = f"verification with {self.tests}: {verdict}\n{report(results)}"
        result.items.append(PlanItem("verification", str(self.tests),
                                     "passed" if result.verified else "failed",
                                     [f"{verdict}: {sum(r.passing for r in results)}/{len(results)} "
                                      "tests"]))


def provision_error(what: str, exc: Exception) -> ProvisionError:
    """An SDK or network failure of the request ``what``, in words with the likely fix."""
    if isinstance(exc, ApiException):
        hint = {401: "credentials rejected: check ESPOMCP_FGA_API_TOKEN or the client "
                     "credentials", 403: "credentials not allowed to do this (Auth0 FGA "
                     "store-scoped clients cannot list or create stores: pass --store-id)",
                404: "not found"}.get(exc.status or 0, f"HTTP {exc.status}")
        return ProvisionError(f"OpenFGA {what} failed: {hint}")
    if isinstance(exc, OpenApiException):
        return ProvisionError(f"OpenFGA {what} failed: {exc}")
    return ProvisionError(f"OpenFGA unreachable during {what} ({type(exc).__name__})")


class RemoteVerifier:
    """The ``Engine`` subset the store-test runner uses, answered by the remote store with the
    test's tuples as contextual tuples (nothing is written)."""

    def __init__(self, client: OpenFgaClient, model_id: str) -> None:
        self.client = client
        self.options = {"authorization_model_id": model_id}
        self.tuples: list[ClientTuple] = []

    def write(self, tuples: list[Any]) -> None:
        """Tuples the runner would store: kept and sent as contextual tuples too."""
        self.tuples.extend(_client_tuples(tuples))
        if len(self.tuples) > MAX_CONTEXTUAL_TUPLES:
            raise FgaError(2000, f"more than {MAX_CONTEXTUAL_TUPLES} tuples in one test: OpenFGA "
                           "accepts at most that many contextual tuples")

    def _with(self, contextual: Any) -> list[ClientTuple] | None:
        return [*self.tuples, *_client_tuples(contextual or ())] or None

    def _ask(self, what: str, fn: Any) -> Any:
        try:
            return fn()
        except ValidationException as exc:  # an invalid assertion fails that assertion only
            raise FgaError(CODES_BY_NAME.get(exc.code or "", 2000), exc.error_message or what) from None
        except (OpenApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise provision_error(what, exc) from None  # the store is not usable: abort

    def check(self, user: str, relation: str, object: str, *, context: Any = None,
              contextual_tuples: Any = ()) -> bool:
        request = ClientCheckRequest(user=user, relation=relation, object=object,
                                     contextual_tuples=self._with(contextual_tuples), context=context)
        return bool(self._ask("Check", lambda: self.client.check(request, self.options).allowed))

    def list_objects(self, user: str, relation: str, type: str, *, context: Any = None,
                     contextual_tuples: Any = ()) -> list[str]:
        request = ClientListObjectsRequest(user=user, relation=relation, type=type,
                                           contextual_tuples=self._with(contextual_tuples),
                                           context=context)
        return list(self._ask("ListObjects",
                              lambda: self.client.list_objects(request, self.options).objects))

    def list_users(self, object: str, relation: str, filters: list[Any], *,
                   context: Any = None, contextual_tuples: Any = ()) -> list[str]:
        obj_type, _, obj_id = object.partition(":")
        user_filters = [UserTypeFilter(type=f.get("type"), relation=f.get("relation"))
                        for f in filters if isinstance(f, dict)]
        request = ClientListUsersRequest(object=FgaObject(type=obj_type, id=obj_id),
                                         relation=relation, user_filters=user_filters,
                                         contextual_tuples=self._with(contextual_tuples),
                                         context=context)
        users = self._ask("ListUsers", lambda: self.client.list_users(request, self.options).users)
        out = []
        for user in users:
            if user.object is not None:
                out.append(f"{user.object.type}:{user.object.id}")
            elif user.userset is not None:
                out.append(f"{user.userset.type}:{user.userset.id}#{user.userset.relation}")
            else:
                out.append(f"{user.wildcard.type}:*")
        return out


def _client_tuples(items: Any) -> list[ClientTuple]:
    out = []
    for item in items:
        key = TupleKey.from_dict(item) if isinstance(item, dict) else item
        condition = None
        if key.condition is not None:
            condition = RelationshipCondition(name=key.condition.name, context=key.condition.context)
        out.append(ClientTuple(user=key.user, relation=key.relation, object=key.object,
                               condition=condition))
    return out
