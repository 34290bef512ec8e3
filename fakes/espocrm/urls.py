"""Routes of the fake EspoCRM API (moto's ``urls.py``): ``(method, pattern, handler name)``.

Patterns are matched segment by segment against the decoded resource path; ``{E}`` is an
entity type, ``{id}`` a record id, ``{link}`` a link name. First match wins.
"""

from __future__ import annotations

ROUTES: list[tuple[str, str, str]] = [
    ("GET", "App/user", "app_user"),
    ("GET", "Metadata", "metadata"),
    ("GET", "GlobalSearch", "global_search"),
    ("POST", "MassAction", "mass_action"),
    ("POST", "Lead/action/convert", "convert_lead"),
    ("POST", "Note", "post_note"),
    ("GET", "Webhook", "list_webhooks"),
    ("POST", "Webhook", "create_webhook"),
    ("DELETE", "Webhook/{id}", "delete_webhook"),
    ("GET", "{E}/{id}/stream", "stream"),
    ("GET", "{E}", "list_records"),
    ("POST", "{E}", "create_record"),
    ("GET", "{E}/{id}", "get_record"),
    ("PUT", "{E}/{id}", "update_record"),
    ("PATCH", "{E}/{id}", "update_record"),
    ("DELETE", "{E}/{id}", "delete_record"),
    ("GET", "{E}/{id}/{link}", "list_related"),
    ("POST", "{E}/{id}/{link}", "relate"),
    ("DELETE", "{E}/{id}/{link}", "unrelate"),
]


def match(method: str, segments: list[str]) -> tuple[str, dict[str, str]] | None:
    """The handler name and placeholder values for a request, or None."""
    for route_method, pattern, handler in ROUTES:
        parts = pattern.split("/")
        if route_method != method or len(parts) != len(segments):
            continue
        values: dict[str, str] = {}
        for part, segment in zip(parts, segments, strict=True):
            if part.startswith("{"):
                values[part[1:-1]] = segment
            elif part != segment:
                break
        else:
            return handler, values
    return None
