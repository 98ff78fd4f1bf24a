"""Three daemons, each as on a VM of its own, share a PostgreSQL database; the one syncing in
the slot's cycle is killed, 1 round in the default run (2 for the figures), then once more
for good: the others end the run it left (tests/reliability/ha_cluster.py). More rounds:
    MLS_SYNC_HA_ROUNDS_APART=10 .venv/bin/pytest \\
        tests/reliability/test_high_availability_separate_vms.py -s
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import Mls, Platforms
from tests.postgres_server import PostgresServer
from tests.reliability.ha_cluster import run_rounds

# Slow: scheduled before the short modules, so that it is not the parallel run's tail.
pytestmark = [pytest.mark.postgresql_only, pytest.mark.slow]

ROUNDS = int(os.environ.get("MLS_SYNC_HA_ROUNDS_APART", "1"))


async def test_three_daemons_on_separate_vms_finish_a_killed_ones_work_once_its_lease_expires(
    tmp_path: Path, secret_key: str, mls: Mls, platforms: Platforms, postgres_server: PostgresServer
) -> None:
    await run_rounds(tmp_path, secret_key, mls, platforms, postgres_server, ROUNDS, apart=True)
