"""GraphStore backends, chosen by URI scheme.

- `sqlite:///PATH` (default, embedded): `catalog.stores.sqlite.SQLiteGraphStore`
- `bolt://`, `bolt+s://`, `neo4j://`, `neo4j+s://` (Neo4j server or cluster):
  `catalog.stores.neo4j.Neo4jGraphStore`
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from domicile.catalog.store import GraphStore
from domicile.errors import failed_precondition, invalid_field

if TYPE_CHECKING:
    from domicile.config import Settings

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
        try:
            from domicile.catalog.stores.neo4j import Neo4jGraphStore
        except ImportError as exc:
            if exc.name != "neo4j":
                raise
            raise failed_precondition(
                f"store {uri}: the Neo4j store needs the Neo4j driver: pip install 'domicile[neo4j]'",
                reason="NEO4J_DRIVER_MISSING",
            ) from None
        return await Neo4jGraphStore.open(uri, **options)
    raise invalid_field("store", f"unsupported store URI scheme {scheme!r}; use sqlite:///PATH or bolt://HOST:PORT")


async def open_configured_store(settings: Settings) -> GraphStore:
    """Open `settings.store` with the backend options the settings give (Neo4j credentials,
    database, trusted CA; `init` for a 0-byte SQLite file); what `domicile serve`, `export`
    and `import` use."""
    options: dict[str, Any] = {}
    if urlsplit(settings.store).scheme in SQLITE_SCHEMES and settings.init:
        options["init"] = True
    if urlsplit(settings.store).scheme in NEO4J_SCHEMES:
        neo4j = settings.neo4j
        if neo4j.user:
            options.update(user=neo4j.user, password=neo4j.resolved_password())
        if neo4j.database:
            options["database"] = neo4j.database
        if neo4j.trusted_ca_file:
            options["trusted_ca"] = str(neo4j.trusted_ca_file)
    return await open_store(settings.store, **options)
