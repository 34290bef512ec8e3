"""Service-account authentication headers (reference §2).

API key: ``X-Api-Key: <key>``. HMAC (``Core/Authentication/Logins/Hmac.php``)::

    string_to_sign = METHOD + " " + resourcePath     # no /api/v1, no query string, no body
    header         = base64(apiKey + ":" + lowercase_hex(HMAC_SHA256(secret, string_to_sign)))

``resourcePath`` is the request path exactly as sent (percent-encoded) minus the API base path,
so ``EspoAuth`` signs the prepared request's URL rather than anything reconstructed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Literal
from urllib.parse import urlsplit

import requests

API_BASE_PATH = "/api/v1"


def hmac_digest(secret: str, method: str, resource_path: str) -> str:
    """Lowercase hex HMAC-SHA256 of ``"METHOD /path"``."""
    message = f"{method.upper()} {resource_path}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def hmac_header(api_key: str, secret: str, method: str, resource_path: str) -> str:
    """The ``X-Hmac-Authorization`` value for one request."""
    token = f"{api_key}:{hmac_digest(secret, method, resource_path)}"
    return base64.b64encode(token.encode()).decode()


def resource_path(url: str, base_path: str) -> str:
    """The path EspoCRM signs: URL path as sent, query dropped, site base + /api/v1 removed."""
    path = urlsplit(url).path
    prefix = base_path.rstrip("/") + API_BASE_PATH
    if path.startswith(prefix + "/"):
        path = path[len(prefix):]
    return path


class EspoAuth(requests.auth.AuthBase):
    """Adds API-key or HMAC headers to each prepared request; never reveals its secrets."""

    def __init__(self, mode: Literal["apikey", "hmac"], api_key: str, secret: str = "",
                 base_path: str = "") -> None:
        if mode not in ("apikey", "hmac"):
            raise ValueError("auth mode must be 'apikey' or 'hmac'")
        self.mode = mode
        self._api_key = api_key
        self._secret = secret
        self._base_path = base_path

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if self.mode == "apikey":
            request.headers["X-Api-Key"] = self._api_key
        else:
            path = resource_path(request.url or "", self._base_path)
            request.headers["X-Hmac-Authorization"] = hmac_header(
                self._api_key, self._secret, request.method or "GET", path)
        return request

    def __repr__(self) -> str:
        return f"EspoAuth(mode={self.mode!r})"
