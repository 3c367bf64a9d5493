"""Durability of acknowledged SQLite writes when the writing process is SIGKILLed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from domicile.catalog.stores.sqlite import SQLiteGraphStore

WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from domicile.catalog.model import Dataset
    from domicile.catalog.stores.sqlite import SQLiteGraphStore

    async def main(uri):
        store = await SQLiteGraphStore.open(uri)
        i = 0
        while True:
            dataset_id = f"s3://durable/{i}"
            await store.upsert_dataset(Dataset.create(dataset_id, owner="writer"))
            # Printed only once upsert_dataset returned, i.e. the write was acknowledged.
            print(dataset_id, flush=True)
            i += 1

    asyncio.run(main(sys.argv[1]))
    """
)


async def test_every_acknowledged_write_survives_sigkill(tmp_path):
    uri = f"sqlite:///{tmp_path}/durable.db"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, uri], stdout=subprocess.PIPE, text=True)
    acknowledged = []
    try:
        for line in writer.stdout:
            acknowledged.append(line.strip())
            if len(acknowledged) == 200:
                break
        os.kill(writer.pid, signal.SIGKILL)
        # Acknowledgements already in the pipe when the kill landed count too.
        acknowledged += [line.strip() for line in writer.stdout]
    finally:
        writer.kill()
        writer.wait(timeout=30)
    assert writer.returncode == -signal.SIGKILL
    assert len(acknowledged) >= 200

    store = await SQLiteGraphStore.open(uri)
    try:
        missing = [i for i in acknowledged if await store.get_dataset(i) is None]
        assert missing == []
        assert await store.revision() >= len(acknowledged)
    finally:
        await store.close()
