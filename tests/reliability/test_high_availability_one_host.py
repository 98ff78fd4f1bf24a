"""Three daemons on one host share a PostgreSQL database; the one syncing in the slot's cycle
is killed, 5 rounds in the default run, 20 for the figures (tests/reliability/ha_cluster.py):
    MLS_SYNC_HA_ROUNDS=20 .venv/bin/pytest tests/reliability/test_high_availability_one_host.py -s
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

ROUNDS = int(os.environ.get("MLS_SYNC_HA_ROUNDS", "5"))  # 20 for docs/reliability.md


async def test_three_daemons_on_one_host_lose_nothing_when_one_is_killed_mid_cycle(
    tmp_path: Path, secret_key: str, mls: Mls, platforms: Platforms, postgres_server: PostgresServer
) -> None:
    await run_rounds(tmp_path, secret_key, mls, platforms, postgres_server, ROUNDS, apart=False)
