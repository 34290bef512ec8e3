"""Write docs/configuration.md from the Settings class, so the reference cannot drift.

Usage: python scripts/gen_config_doc.py [--check]
"""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic_core import PydanticUndefined

from espomcp.settings import Settings

TARGET = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
SECRET_HINT = "(secret)"


def _default(field) -> str:  # type: ignore[no-untyped-def]
    if field.default_factory is not None:
        value = field.default_factory()
    elif field.default is PydanticUndefined:
        return "(required)"
    else:
        value = field.default
    if hasattr(value, "get_secret_value"):
        return SECRET_HINT if value.get_secret_value() else "(empty)"
    if isinstance(value, list):
        return "`" + ",".join(value) + "`" if value else "(empty)"
    if value is None or value == "":
        return "(empty)"
    return f"`{value}`"


def render() -> str:
    lines = [
        "# Configuration reference",
        "",
        "Generated from `espomcp/settings.py` by `scripts/gen_config_doc.py`; do not edit.",
        "",
        "Every setting is an environment variable with the `ESPOMCP_` prefix. A `.env` file in "
        "the working directory is read too (environment variables win). Lists are "
        "comma-separated. Values are validated at start-up; a bad value stops the server with "
        "a message naming the variable.",
        "",
        "| Variable | Default | Meaning |",
        "|---|---|---|",
    ]
    for name, field in Settings.model_fields.items():
        description = (field.description or "").replace("|", "\\|")
        lines.append(f"| `ESPOMCP_{name.upper()}` | {_default(field)} | {description} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not TARGET.exists() or TARGET.read_text() != text:
            print("docs/configuration.md is out of date: run scripts/gen_config_doc.py")
            return 1
        return 0
    TARGET.write_text(text)
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
