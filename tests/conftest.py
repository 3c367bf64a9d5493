"""Fixtures shared by every test package.

- `tests/neo4j_plugin.py` provides the session-scoped `neo4j_uri` fixture (starts the
  launcher under tools/neo4j once per session, or uses DOMICILE_TEST_NEO4J_URI) and
  `open_clean_neo4j_store(uri)`.
- `store_factory` / `store` (in tests/contract/conftest.py) run a test once per backend.
"""

pytest_plugins = ["tests.neo4j_plugin"]
