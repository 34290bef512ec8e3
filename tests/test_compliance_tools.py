"""Tools against espocrm-api.md semantics found in review."""

from __future__ import annotations

import requests


def test_global_search_ends_when_espocrm_says_no_more(embedded_world):
    """espocrm-api §7: GlobalSearch ``total`` is -1 (more rows exist) or -2 (no more); a page
    that is exactly full but ends the results has no next page."""
    crm = embedded_world.crm
    found = requests.get(f"{crm.url}/api/v1/GlobalSearch", params={"q": "Acme", "maxSize": 200},
                         headers={"X-Api-Key": "demo-api-key"}, timeout=10).json()
    assert found["total"] == -2 and 1 < len(found["list"]) <= 50
    size = len(found["list"])
    page = embedded_world.ok("admin", "global_search", {"query": "Acme", "limit": size})
    assert len(page["records"]) == size and page["next_offset"] is None
    first = embedded_world.ok("admin", "global_search", {"query": "Acme", "limit": size - 1})
    assert first["next_offset"] == size - 1
