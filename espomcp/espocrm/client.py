"""``EspoClient``: the one way espomcp talks to EspoCRM (reference §3-§8).

One pooled ``requests.Session`` authenticated as the service account. Entity types, ids, links
and where items are validated before a URL is built, so hostile input never reaches EspoCRM's
URL space. List parameters travel as one ``searchParams`` JSON value (reference §4: typed, and
a non-bracket ``where`` would otherwise be dropped silently). Idempotent calls (GET, PUT,
DELETE) are retried with exponential backoff on connection errors and 502/503/504; POST never
is. All failures are ``EspoError`` subclasses (``errors.py``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import requests
from requests.adapters import HTTPAdapter

from espomcp.deadline import DeadlineExceeded, call_timeout
from espomcp.espocrm.errors import EspoError, InvalidInput, Unavailable, error_from_response
from espomcp.espocrm.hmac_auth import API_BASE_PATH, EspoAuth
from espomcp.espocrm.ids import (
    validate_attribute,
    validate_entity_type,
    validate_id,
    validate_ids,
    validate_name,
)
from espomcp.espocrm.where import validate_where

if TYPE_CHECKING:
    from espomcp.settings import Settings

log = logging.getLogger("espomcp.espocrm")

MAX_PAGE = 200
RETRY_STATUSES = frozenset({502, 503, 504})
IDEMPOTENT = frozenset({"GET", "PUT", "DELETE"})
CONVERT_TYPES = ("Account", "Contact", "Opportunity")


@dataclass(frozen=True)
class ListPage:
    """One page of a list answer: ``total`` as EspoCRM reports it (-1/-2 = unknown) and rows."""

    total: int
    list: list[dict[str, Any]] = field(default_factory=list)


class EspoClient:
    """Synchronous EspoCRM REST client for one service account; safe to share across threads."""

    def __init__(self, url: str, *, auth_mode: str = "apikey", api_key: str, secret_key: str = "",
                 entity_types: Iterable[str], timeout: float = 10.0, retries: int = 2,
                 backoff: float = 0.2, pool_size: int = 16) -> None:
        self.url = url.rstrip("/")
        self.api_url = self.url + API_BASE_PATH
        self.entity_types = tuple(entity_types)
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._session = requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.auth = EspoAuth(auth_mode, api_key, secret_key,  # type: ignore[arg-type]
                                      base_path=urlsplit(self.url).path)
        self._session.headers.update({"Accept": "application/json"})
        self._session.trust_env = False

    @classmethod
    def from_settings(cls, settings: Settings) -> EspoClient:
        """Build the client from ``ESPOMCP_ESPOCRM_*`` settings."""
        return cls(
            settings.espocrm_url,
            auth_mode=settings.espocrm_auth,
            api_key=settings.espocrm_api_key.get_secret_value(),
            secret_key=settings.espocrm_secret_key.get_secret_value(),
            entity_types=settings.entity_types,
            timeout=settings.espocrm_timeout_seconds,
            retries=settings.espocrm_retries,
        )

    def __repr__(self) -> str:
        return f"EspoClient(url={self.url!r}, auth={self._session.auth!r})"

    def close(self) -> None:
        self._session.close()

    # --- records ---------------------------------------------------------------------
    def _type(self, entity_type: object) -> str:
        return validate_entity_type(entity_type, self.entity_types)

    def get_record(self, entity_type: str, id: str, select: list[str] | None = None) -> dict:
        """The record ``id``; ``select`` limits the attributes (``id`` always kept). NotFound if
        missing. EspoCRM may ignore ``select`` on reads, so it is also applied here."""
        path = [self._type(entity_type), validate_id(id)]
        params = {"select": ",".join(_select(select))} if select else None
        record = self._request("GET", path, params=params)
        if not isinstance(record, dict):
            raise Unavailable("EspoCRM sent an unexpected record answer.")
        if select:
            keep = {"id", *select}
            record = {k: v for k, v in record.items() if k in keep}
        return record

    def list_records(self, entity_type: str, **filters: Any) -> ListPage:
        """One page of records; see ``search_params`` for the accepted filters."""
        return self._list([self._type(entity_type)], filters)

    def iter_records(self, entity_type: str, *, page_size: int = MAX_PAGE,
                     **filters: Any) -> Iterator[dict]:
        """Every matching record, fetched ``page_size`` (<= 200) at a time."""
        entity_type = self._type(entity_type)
        if not 1 <= page_size <= MAX_PAGE:
            raise InvalidInput(f"page_size must be between 1 and {MAX_PAGE}.")
        offset = int(filters.pop("offset", 0) or 0)
        filters.pop("max_size", None)
        previous: list[Any] = []
        while True:
            page = self._list([entity_type], {**filters, "offset": offset, "max_size": page_size})
            ids = [row.get("id") for row in page.list]
            if ids and ids == previous:  # a server ignoring offset must not loop forever
                raise Unavailable("EspoCRM returned the same page twice while paging.")
            previous = ids
            yield from page.list
            offset += len(page.list)
            if len(page.list) < page_size or (page.total >= 0 and offset >= page.total):
                return

    def create_record(self, entity_type: str, data: Mapping[str, Any], *,
                      skip_duplicate_check: bool = False) -> dict:
        """Create a record; Duplicate (409) lists similar records unless the check is skipped."""
        headers = {"X-Skip-Duplicate-Check": "true"} if skip_duplicate_check else None
        return self._request("POST", [self._type(entity_type)], json=_object(data),
                             headers=headers)

    def update_record(self, entity_type: str, id: str, data: Mapping[str, Any]) -> dict:
        """Update the given attributes; returns the full record."""
        return self._request("PUT", [self._type(entity_type), validate_id(id)], json=_object(data))

    def delete_record(self, entity_type: str, id: str) -> None:
        self._request("DELETE", [self._type(entity_type), validate_id(id)])

    # --- relations ---------------------------------------------------------------------
    def list_related(self, entity_type: str, id: str, link: str, **filters: Any) -> ListPage:
        """Records related through ``link`` (``/{E}/{id}/{link}``), with list filters."""
        return self._list([self._type(entity_type), validate_id(id), validate_name(link)], filters)

    def link(self, entity_type: str, id: str, link: str, ids: list[str]) -> None:
        path = [self._type(entity_type), validate_id(id), validate_name(link)]
        self._request("POST", path, json={"ids": validate_ids(ids)})

    def unlink(self, entity_type: str, id: str, link: str, ids: list[str]) -> None:
        path = [self._type(entity_type), validate_id(id), validate_name(link)]
        self._request("DELETE", path, json={"ids": validate_ids(ids)})

    # --- other operations ------------------------------------------------------------
    def global_search(self, q: str, offset: int = 0, max_size: int = 20) -> ListPage:
        if not isinstance(q, str) or not q.strip() or len(q) > 200:
            raise InvalidInput("Search text must be 1-200 characters.")
        params = {"q": q.strip(), "offset": _offset(offset), "maxSize": _max_size(max_size)}
        return _page(self._request("GET", ["GlobalSearch"], params=params))

    def stream(self, entity_type: str, id: str, offset: int = 0, max_size: int = 20) -> ListPage:
        """The record's stream (notes, newest first)."""
        path = [self._type(entity_type), validate_id(id), "stream"]
        params = {"offset": _offset(offset), "maxSize": _max_size(max_size)}
        return _page(self._request("GET", path, params=params))

    def post_note(self, parent_type: str, parent_id: str, post: str,
                  is_internal: bool = False) -> dict:
        if not isinstance(post, str) or not post.strip():
            raise InvalidInput("A note needs some text.")
        body = {"type": "Post", "parentType": self._type(parent_type),
                "parentId": validate_id(parent_id), "post": post, "isInternal": bool(is_internal)}
        return self._request("POST", ["Note"], json=body)

    def convert_lead(self, lead_id: str, records: Mapping[str, Mapping[str, Any]],
                     skip_duplicate_check: bool = False) -> dict:
        """Convert a lead into any of Account/Contact/Opportunity; returns the updated lead."""
        if not isinstance(records, Mapping) or not records:
            raise InvalidInput("Lead conversion needs at least one of: " + ", ".join(CONVERT_TYPES))
        bad = [k for k in records if k not in CONVERT_TYPES]
        if bad:
            raise InvalidInput(f"Lead conversion creates only {', '.join(CONVERT_TYPES)}, not {bad}.")
        body = {"id": validate_id(lead_id), "records": {k: _object(v) for k, v in records.items()},
                "skipDuplicateCheck": bool(skip_duplicate_check)}
        return self._request("POST", ["Lead", "action", "convert"], json=body)

    def mass_update(self, entity_type: str, ids: list[str], data: Mapping[str, Any]) -> dict:
        return self._mass(entity_type, "update", ids, _object(data))

    def mass_delete(self, entity_type: str, ids: list[str]) -> dict:
        return self._mass(entity_type, "delete", ids, None)

    def _mass(self, entity_type: str, action: str, ids: list[str], data: dict | None) -> dict:
        body: dict[str, Any] = {"entityType": self._type(entity_type), "action": action,
                                "params": {"ids": validate_ids(ids)}, "idle": False}
        if data is not None:
            body["data"] = data
        return self._request("POST", ["MassAction"], json=body)

    def metadata(self, key: str | None = None) -> Any:
        """Metadata, or the part at dotted ``key`` (e.g. ``entityDefs.Lead.fields``)."""
        params = None
        if key is not None:
            for part in key.split("."):
                validate_name(part, "metadata key")
            params = {"key": key}
        return self._request("GET", ["Metadata"], params=params)

    def app_user(self) -> dict:
        """``GET /App/user``: the service account's own user (a cheap credential check)."""
        return self._request("GET", ["App", "user"])

    def create_webhook(self, event: str, url: str, skip_own: bool = True) -> dict:
        """Register a webhook; the answer carries ``id`` and ``secretKey`` (32 hex)."""
        if not isinstance(event, str) or not 3 <= len(event) <= 200:
            raise InvalidInput("Invalid webhook event.")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise InvalidInput("Webhook URL must start with http:// or https://.")
        body = {"event": event, "url": url, "skipOwn": bool(skip_own)}
        return self._request("POST", ["Webhook"], json=body)

    def delete_webhook(self, id: str) -> None:
        self._request("DELETE", ["Webhook", validate_id(id)])

    def list_webhooks(self) -> list[dict]:
        return _page(self._request("GET", ["Webhook"], params={"maxSize": MAX_PAGE})).list

    def ping(self) -> tuple[bool, str]:
        """Readiness: (True, "ok") if EspoCRM accepts our credentials, else (False, why).
        Shown on the public /readyz, so it never names the service account."""
        try:
            self.app_user()
        except EspoError as exc:
            return False, exc.message
        return True, "ok"

    # --- plumbing --------------------------------------------------------------------
    def _list(self, path: list[str], filters: dict[str, Any]) -> ListPage:
        params = {"searchParams": json.dumps(search_params(**filters), separators=(",", ":"))}
        return _page(self._request("GET", path, params=params))

    def _request(self, method: str, path: list[str], *, params: Mapping[str, Any] | None = None,
                 json: Any = None, headers: Mapping[str, str] | None = None) -> Any:
        url = self.api_url + "/" + "/".join(quote(part, safe="") for part in path)
        attempts = 1 + (self.retries if method in IDEMPOTENT else 0)
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                timeout = call_timeout(self.timeout)  # the tool call's overall budget caps it
            except DeadlineExceeded as exc:
                raise Unavailable("EspoCRM is too slow: the request's time limit was reached; "
                                  "try again later.") from exc
            try:
                response = self._session.request(method, url, params=params, json=json,
                                                 headers=headers, timeout=timeout,
                                                 allow_redirects=False)
            except requests.Timeout as exc:
                error: EspoError = Unavailable(
                    f"EspoCRM did not answer within {timeout:g} s; try again later.")
                cause: Exception | None = exc
            except requests.RequestException as exc:
                error, cause = Unavailable("EspoCRM is unreachable (connection failed); "
                                           "try again later."), exc
            else:
                log.debug("espocrm %s %s -> %s", method, path[0], response.status_code)
                if response.status_code not in RETRY_STATUSES or last:
                    return _result(response)
                error, cause = error_from_response(response.status_code, response.headers,
                                                   response.content), None
            if last:
                raise error from cause
            log.info("espocrm %s %s failed (%s); retrying", method, path[0], type(error).__name__)
            time.sleep(self.backoff * (2 ** attempt))
        raise AssertionError("unreachable")


def search_params(*, where: list | None = None, text_filter: str | None = None,
                  primary_filter: str | None = None, bool_filters: list[str] | None = None,
                  select: list[str] | None = None, order_by: str | None = None,
                  order: str | None = None, offset: int = 0, max_size: int = 20) -> dict[str, Any]:
    """The ``searchParams`` JSON object for a list request, validated (InvalidInput)."""
    params: dict[str, Any] = {"offset": _offset(offset), "maxSize": _max_size(max_size)}
    if where:
        params["where"] = validate_where(where)
    if text_filter is not None:
        if not isinstance(text_filter, str) or len(text_filter) > 200:
            raise InvalidInput("text_filter must be text of at most 200 characters.")
        params["textFilter"] = text_filter
    if primary_filter is not None:
        params["primaryFilter"] = validate_name(primary_filter, "primary filter")
    if bool_filters:
        params["boolFilterList"] = [validate_name(b, "bool filter") for b in bool_filters]
    if select:
        params["select"] = _select(select)
    if order_by is not None:
        params["orderBy"] = validate_attribute(order_by)
    if order is not None:
        if not isinstance(order, str) or order.lower() not in ("asc", "desc"):
            raise InvalidInput("order must be 'asc' or 'desc'.")
        params["order"] = order.lower()
    return params


def _select(select: list[str] | None) -> list[str]:
    if not isinstance(select, list | tuple):
        raise InvalidInput("select must be a list of attribute names.")
    return [validate_attribute(a) for a in select]


def _offset(offset: object) -> int:
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise InvalidInput("offset must be a whole number >= 0.")
    return offset


def _max_size(max_size: object) -> int:
    if isinstance(max_size, bool) or not isinstance(max_size, int) or not 1 <= max_size <= MAX_PAGE:
        raise InvalidInput(f"max_size must be between 1 and {MAX_PAGE}; page with offset "
                           "(or iter_records) for more.")
    return max_size


def _object(data: object) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise InvalidInput("Record data must be an object of attribute values.")
    return dict(data)


def _result(response: requests.Response) -> Any:
    if not 200 <= response.status_code < 300:
        raise error_from_response(response.status_code, response.headers, response.content)
    try:
        return response.json()
    except ValueError:
        raise Unavailable("EspoCRM sent an unreadable answer (not JSON).") from None


def _page(data: Any) -> ListPage:
    if not isinstance(data, dict) or not isinstance(data.get("list"), list):
        raise Unavailable("EspoCRM sent an unexpected list answer.")
    rows = [row for row in data["list"] if isinstance(row, dict)]
    total = data.get("total")
    return ListPage(total=total if isinstance(total, int) else len(rows), list=rows)
