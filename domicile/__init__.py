"""Domicile: a data catalog and residency router for regulated data platforms.

The `domicile` package holds the cross-cutting parts (server assembly, configuration,
security, CLI, generated API code); the domain lives in `domicile.catalog`,
`domicile.lineage` and `domicile.router` (top-level folders catalog/, lineage/, router/).
"""

__version__ = "0.1.0"
