"""Neo4j test server fixture: being written (see tools/neo4j)."""
