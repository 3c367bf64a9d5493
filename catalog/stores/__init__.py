"""GraphStore backends, chosen by URI scheme.

- `sqlite:///PATH` (default, embedded): `catalog.stores.sqlite.SQLiteGraphStore`
- `bolt://`, `bolt+s://`, `neo4j://`, `neo4j+s://` (Neo4j server or cluster):
  `catalog.stores.neo4j.Neo4jGraphStore`
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from domicile.catalog.store import GraphStore
from domicile.errors import invalid_field

SQLITE_SCHEMES = {"sqlite"}
NEO4J_SCHEMES = {"bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc"}


async def open_store(uri: str, **options: Any) -> GraphStore:
    """Open (creating or migrating as needed) the store that `uri` names.

    `options` are backend-specific (for Neo4j: user, password, database, trusted CA...).
    An unsupported scheme is INVALID_ARGUMENT on the field "store".
    """
    scheme = urlsplit(uri).scheme
    if scheme in SQLITE_SCHEMES:
        from domicile.catalog.stores.sqlite import SQLiteGraphStore

        return await SQLiteGraphStore.open(uri, **options)
    if scheme in NEO4J_SCHEMES:
        from domicile.catalog.stores.neo4j import Neo4jGraphStore

        return await Neo4jGraphStore.open(uri, **options)
    raise invalid_field("store", f"unsupported store URI scheme {scheme!r}; use sqlite:///PATH or bolt://HOST:PORT")
