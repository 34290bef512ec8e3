"""Shared fixtures live in tests/fixtures/<area>.py, loaded here as plugins."""

pytest_plugins = [
    "tests.fixtures.world",
    "tests.fixtures.app",
    "tests.fixtures.servers",
    "tests.fixtures.auth",
    "tests.fixtures.node_tools",
    "tests.fixtures.fga_backends",
    "tests.fixtures.admin",
    "tests.fixtures.espocrm",
    "tests.fixtures.fga",
]
