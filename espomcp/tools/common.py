"""Pieces every CRM tool shares: schemas, scope rules, error translation, record links."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from espomcp.auth.scopes import AREA_BY_ENTITY, Action, scope_for
from espomcp.espocrm.errors import Duplicate, EspoError, ServiceAccountError, Unavailable
from espomcp.mcp.registry import JsonObject, ToolError

if TYPE_CHECKING:
    from espomcp.mcp.registry import ToolContext
    from espomcp.services import Services
    from espomcp.settings import Settings

ID_SCHEMA: JsonObject = {
    "type": "string",
    "minLength": 1,
    "maxLength": 64,
    "description": "EspoCRM record id (e.g. 66a0c1d2e3f4a5b6c), as returned by other tools",
}
RECORD_SCHEMA: JsonObject = {
    "type": "object",
    "description": "An EspoCRM record: its attributes, its id and a link to open it in EspoCRM",
    "properties": {"id": {"type": "string"}, "link": {"type": "string"}},
    "required": ["id"],
}
PERMISSIONS_SCHEMA: JsonObject = {
    "type": "object",
    "description": "Whether the access rules for this change were recorded",
    "properties": {"synced": {"type": "boolean"}, "message": {"type": "string"}},
    "required": ["synced"],
}


def readable_types(settings: Settings) -> list[str]:
    return list(settings.entity_types)


def writable_types(settings: Settings) -> list[str]:
    from espomcp.settings import READ_ONLY_ENTITY_TYPES

    return [t for t in settings.entity_types if t not in READ_ONLY_ENTITY_TYPES]


def entity_type_schema(types: list[str], what: str = "records") -> JsonObject:
    return {"type": "string", "enum": types, "description": f"EspoCRM entity type of the {what}"}


def scopes_of(action: Action, key: str = "entity_type") -> Callable[[JsonObject], frozenset[str]]:
    """Scope rule: ``action`` on the entity type named by argument ``key``."""

    def rule(arguments: JsonObject) -> frozenset[str]:
        value = arguments.get(key)
        if not isinstance(value, str) or value not in AREA_BY_ENTITY:
            return frozenset()  # unknown types fail argument validation, not a scope check
        return frozenset({scope_for(value, action)})

    return rule


def any_scope(types: list[str], action: Action) -> frozenset[str]:
    return frozenset(scope_for(t, action) for t in types)


def record_link(settings: Settings, entity_type: str, record_id: str) -> str:
    return f"{settings.espocrm_url}/#{entity_type}/view/{record_id}"


def present(services: Services, entity_type: str, record: dict[str, Any]) -> dict[str, Any]:
    """A record as tools return it: attributes plus ``link`` (never service-account data)."""
    out = dict(record)
    if "id" in out:
        out["link"] = record_link(services.settings, entity_type, str(out["id"]))
    return out


@contextmanager
def crm_errors(ctx: ToolContext) -> Iterator[None]:
    """Translate EspoCRM client errors into tool errors a language model can act on."""
    try:
        yield
    except Duplicate:
        raise
    except ServiceAccountError as exc:
        ctx.audit.update(decision="error", layer="crm", reason="service account rejected")
        raise ToolError(
            "The server's connection to EspoCRM is misconfigured (its service "
            "account was refused). This is not your fault: please tell the "
            "administrator."
        ) from exc
    except Unavailable as exc:
        ctx.audit.update(decision="error", layer="crm", reason="unavailable")
        raise ToolError(
            f"EspoCRM is unavailable right now ({exc.message}); nothing was "
            "changed by this call. Try again shortly."
        ) from exc
    except EspoError as exc:
        ctx.audit.update(decision="error", layer="crm", reason=exc.message[:300])
        data = {k: v for k, v in vars(exc).items() if k in ("field", "type") and v}
        raise ToolError(exc.message, data or None) from exc


def require_user(ctx: ToolContext) -> Any:
    return ctx.services.identity.require(ctx.principal)
