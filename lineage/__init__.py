"""Lineage: recording, OpenLineage ingestion and traversal queries."""
