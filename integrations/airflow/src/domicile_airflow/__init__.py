"""Airflow provider of Domicile: `DomicileHook` (connection type `domicile`),
`ResidencyCheckOperator` and the pre-execution check `ResidencyPreflight`.

Airflow finds `get_provider_info` through the `apache_airflow_provider` entry point."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "domicile-airflow",
        "name": "Domicile",
        "description": "Residency checks against a Domicile server before a task runs.",
        "versions": [__version__],
        "connection-types": [
            {"connection-type": "domicile", "hook-class-name": "domicile_airflow.hooks.DomicileHook"},
        ],
    }
