"""Property: whatever the MLS says, in whatever order, the local status follows it, and the
audit log has exactly one row per change (invariant 1)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.composition import open_runtime
from daemon.encryption import generate_key
from daemon.models import DEFAULT_STANDARD_STATUS_MAP, IGNORE, StatusMapping
from daemon.sandbox.mls_server import SandboxMls, build_mls_app
from daemon.serving import serving
from daemon.store import listings
from tests.helpers import STATIC_TOKEN, add_connection, make_settings, track

MAPPING = StatusMapping.build()
VALID = [k for k, v in DEFAULT_STANDARD_STATUS_MAP.items() if v != IGNORE]
ENUM_FORMS = [v.replace(" ", "") for v in VALID]
# What a feed may send: valid values in both spellings, Incomplete, junk, nothing, a removal.
STEP = st.one_of(
    st.sampled_from(VALID + ENUM_FORMS),
    st.sampled_from(["Incomplete", "Sold!!", "", None, 17, "REMOVED"]),
)
KEYS = ["P1", "P2"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(st.tuples(STEP, STEP), min_size=1, max_size=6))
def test_local_status_always_equals_the_mapped_mls_status(
    steps: list[tuple[object, object]],
) -> None:
    anyio.run(_scenario, steps)


async def _scenario(steps: list[tuple[object, object]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        sandbox = SandboxMls(static_tokens={STATIC_TOKEN})
        for key in KEYS:
            sandbox.put(key, "Active")
        expected: dict[str, str | None] = {k: None for k in KEYS}
        changes = dict.fromkeys(KEYS, 0)
        env = {"MLS_SYNC_SECRET_KEY": generate_key()}
        async with (
            serving(build_mls_app(sandbox)) as url,
            open_runtime(make_settings(Path(tmp)), env) as rt,
        ):
            await add_connection(rt, url)
            await track(rt, "mls-1", KEYS)
            for step in steps:
                for key, value in zip(KEYS, step, strict=True):
                    if value == "REMOVED":
                        sandbox.delete(key)
                        target: str | None = "off_market"
                    else:
                        sandbox.put(key, value)
                        mapped = MAPPING.map(value if isinstance(value, str) else None, None)
                        target = getattr(mapped, "status", None)
                        if isinstance(value, int):
                            target = None
                    if target is not None and target != expected[key]:
                        expected[key] = target
                        changes[key] += 1
                await rt.engine.sync_all()
                for key in KEYS:
                    row = await listings.get(rt.db, f"L-{key}")
                    assert row is not None and row.status == expected[key], (key, step)
            for key in KEYS:
                assert len(await listings.history(rt.db, f"L-{key}")) == changes[key]
