"""An installation without the Neo4j driver (`pip install domicile`, no `[neo4j]` extra)
serves on SQLite, and a Neo4j store URI says what to install. Runs the server in a Python
where `import neo4j` fails, as it does without the driver."""

from __future__ import annotations

import subprocess
import sys
import textwrap

PROGRAM = textwrap.dedent(
    """
    import asyncio, sys

    class NoNeo4j:
        def find_spec(self, name, path=None, target=None):
            if name == "neo4j" or name.startswith("neo4j."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    sys.meta_path.insert(0, NoNeo4j())

    from domicile.catalog.stores import open_store
    from domicile.config import load_settings
    from domicile.errors import DomicileError
    from domicile.server import create_server

    async def main(data_dir):
        settings = load_settings(
            insecure=True, listen="127.0.0.1:0", http_listen="", data_dir=data_dir,
            store=f"sqlite:///{data_dir}/catalog.db", demo=True,
        )
        running = await create_server(settings)
        print("datasets served")
        await running.stop(0)
        try:
            await open_store("bolt://127.0.0.1:7687")
        except DomicileError as error:
            print("neo4j:", error.reason, error)
        print("neo4j imported:", any(m == "neo4j" or m.startswith("neo4j.") for m in sys.modules))

    asyncio.run(main(sys.argv[1]))
    """
)


def test_sqlite_serves_and_neo4j_asks_for_the_extra(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM, str(tmp_path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "datasets served"
    assert lines[1].startswith("neo4j: NEO4J_DRIVER_MISSING store bolt://127.0.0.1:7687: ")
    assert "pip install 'domicile[neo4j]'" in lines[1]
    assert lines[2] == "neo4j imported: False"
