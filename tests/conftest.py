"""Fixtures shared by every test package.

- `tests/neo4j_plugin.py` provides the session-scoped `neo4j_uri` fixture (starts the
  launcher under tools/neo4j once per session, or uses DOMICILE_TEST_NEO4J_URI) and
  `open_clean_neo4j_store(uri)`.
- `store_factory` / `store` (in tests/contract/conftest.py) run a test once per backend.
"""

import os

pytest_plugins = ["tests.neo4j_plugin"]

# Servers started by tests serve no console unless a test asks for one (on a port of its
# own): the default 127.0.0.1:8081 would collide between tests and with `make run`. Flags and
# settings passed by a test win over this, as they do over any environment variable.
os.environ["DOMICILE_CONSOLE__LISTEN"] = ""
