"""Route table of the fake OpenFGA server: (rule, endpoint name, methods, handler name)."""

from __future__ import annotations

STORE = "/stores/<store_id>"

ROUTES: list[tuple[str, list[str], str]] = [
    ("/stores", ["POST"], "create_store"),
    ("/stores", ["GET"], "list_stores"),
    (STORE, ["GET"], "get_store"),
    (STORE, ["DELETE"], "delete_store"),
    (f"{STORE}/authorization-models", ["POST"], "write_model"),
    (f"{STORE}/authorization-models", ["GET"], "read_models"),
    (f"{STORE}/authorization-models/<model_id>", ["GET"], "read_model"),
    (f"{STORE}/write", ["POST"], "write"),
    (f"{STORE}/read", ["POST"], "read"),
    (f"{STORE}/changes", ["GET"], "read_changes"),
    (f"{STORE}/check", ["POST"], "check"),
    (f"{STORE}/batch-check", ["POST"], "batch_check"),
    (f"{STORE}/list-objects", ["POST"], "list_objects"),
    (f"{STORE}/streamed-list-objects", ["POST"], "streamed_list_objects"),
    (f"{STORE}/list-users", ["POST"], "list_users"),
    (f"{STORE}/expand", ["POST"], "expand"),
    (f"{STORE}/assertions/<model_id>", ["GET"], "read_assertions"),
    (f"{STORE}/assertions/<model_id>", ["PUT"], "write_assertions"),
    ("/oauth/token", ["POST"], "token"),
    ("/_fake/fault", ["POST"], "fault"),
    ("/_fake/reset", ["POST"], "reset"),
]
