"""Taking a sold listing's posts down, over real HTTP against the sandbox platforms."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta
from pathlib import Path

import anyio
import pytest
from structlog.testing import capture_logs

from daemon.composition import open_runtime
from daemon.models import LocalStatus
from daemon.sandbox.faults import Fault
from daemon.sandbox.mls_server import SandboxMls
from daemon.sandbox.platforms_server import (
    SandboxPlatforms,
    build_platforms_app,
    graph_fault,
    platform_env,
)
from daemon.store import accounts, leases, listings, posts, runs
from daemon.store.database import Database
from daemon.store.records import DuePost
from daemon.sync import unpublish
from daemon.sync.unpublish_lease import LEASE
from daemon.timestamps import iso, parse_iso, utcnow
from tests.helpers import (
    Live,
    add_account,
    add_connection,
    add_post,
    everything_stored,
    make_settings,
    open_live,
    serving_in_a_thread,
    status_of,
    track,
    write_locked,
)

pytestmark = pytest.mark.both_databases


@pytest.fixture
def paced_platforms() -> Iterator[tuple[SandboxPlatforms, str]]:
    """The sandbox platforms in a thread of their own, for the tests that time the calls:
    the times they record are the calls' arrivals, not when the test's event loop, busy with
    the engine, got to them (a loaded fresh-clone run once saw two calls 18 ms apart)."""
    state = SandboxPlatforms()
    with serving_in_a_thread(build_platforms_app(state)) as url:
        yield state, url


def post_ids(key: str) -> dict[str, str]:
    """The platform ids of listing `key`'s posts (K1 -> 1093_441, 1789569561, urn:li:share:701)."""
    n = key.removeprefix("K")
    return {
        "facebook": f"1093_44{n}",
        "instagram": f"178956956{n}",
        "linkedin": f"urn:li:share:70{n}",
    }


async def _listing_with_posts(live: Live, key: str = "K1") -> None:
    """A listing, active in the MLS, with one post on each platform."""
    live.mls.put(key, "Active")
    await add_connection(live.rt, live.mls_url)
    await track(live.rt, "mls-1", [key])
    ids = post_ids(key)
    for platform, account, post_id, via in (
        ("facebook", "fb-page", ids["facebook"], None),
        ("instagram", "ig-biz", ids["instagram"], "facebook_login"),
        ("linkedin", "li-member", ids["linkedin"], None),
    ):
        token = f"{account}-token"
        if await accounts.get(live.rt.db, account) is None:
            await add_account(live.rt, account, platform, token, connected_via=via)
        live.platforms.publish(platform, post_id, token)
        await add_post(live.rt, f"{platform}-{key}", f"L-{key}", account, post_id)
    await live.rt.engine.sync_all()


async def _post_status(live: Live, post_id: str) -> str:
    row = await posts.get(live.rt.db, post_id)
    assert row is not None
    return row.status


async def test_the_briefs_manual_test_sold_listing_loses_every_post(live: Live) -> None:
    """Brief, "Manual Testing": active listing with posts on all three platforms; the MLS says
    Closed; one sync; the listing is sold, each post is gone from its platform and
    `unpublished` locally."""
    await _listing_with_posts(live)
    assert [await _post_status(live, f"{p}-K1") for p in ("facebook", "instagram", "linkedin")] == [
        "published"
    ] * 3
    live.mls.set_status("K1", "Closed")

    report = await live.rt.engine.sync_all()

    assert await status_of(live.rt, "K1") == "sold"
    for platform in ("facebook", "instagram", "linkedin"):
        assert await _post_status(live, f"{platform}-K1") == "unpublished"
    assert not any(live.platforms.exists(p) for p in live.platforms.posts)
    assert report.run.posts_unpublished == 3 and report.run.errors == 0
    assert set(live.platforms.successful_deletes.values()) == {1}


async def test_posts_of_a_listing_still_on_the_market_are_left_alone(live: Live) -> None:
    await _listing_with_posts(live)
    live.mls.set_status("K1", "Pending")
    await live.rt.engine.sync_all()
    assert live.platforms.calls_to("facebook") == []
    assert await _post_status(live, "facebook-K1") == "published"


async def test_off_market_takes_posts_down_only_when_configured(live: Live) -> None:
    await _listing_with_posts(live)
    live.mls.set_status("K1", "Withdrawn")
    await live.rt.engine.sync_all()
    assert await _post_status(live, "linkedin-K1") == "published"

    live.rt.engine.unpublisher.unpublish_on = (LocalStatus.SOLD, LocalStatus.OFF_MARKET)
    await live.rt.engine.sync_all()
    assert await _post_status(live, "linkedin-K1") == "unpublished"


# -- outcome classes ---------------------------------------------------------------------------


async def _sell(live: Live) -> None:
    live.mls.set_status("K1", "Closed")
    await live.rt.engine.sync_all()


async def test_facebook_success_false_needs_a_person(live: Live) -> None:
    await _listing_with_posts(live)
    live.platforms.posts[post_ids("K1")["facebook"]].kind = "story"
    await _sell(live)
    row = await posts.get(live.rt.db, "facebook-K1")
    assert row is not None and row.status == "manual_required"
    assert "success" in (row.note or "")


async def test_facebook_100_33_is_already_gone_only_after_a_token_check(live: Live) -> None:
    await _listing_with_posts(live)
    live.platforms.posts[
        post_ids("K1")["facebook"]
    ].deleted = True  # someone deleted it on Facebook
    await _sell(live)
    row = await posts.get(live.rt.db, "facebook-K1")
    assert row is not None and row.status == "unpublished"
    assert "already deleted" in (row.note or "")
    assert len(live.platforms.calls_to("facebook", "GET")) == 1


async def test_facebook_100_33_without_a_working_token_is_a_permission_problem(live: Live) -> None:
    await _listing_with_posts(live)
    live.platforms.inject("facebook", graph_fault(100, 33))
    live.platforms.inject("facebook", graph_fault(100, 33))  # the check fails too
    await _sell(live)
    row = await posts.get(live.rt.db, "facebook-K1")
    assert row is not None and row.status == "manual_required"
    assert "permission problem" in (row.note or "")
    assert live.platforms.exists(post_ids("K1")["facebook"])


async def test_facebook_190_marks_the_account_needs_reauth_and_skips_its_other_posts(
    live: Live,
) -> None:
    keys = ["K1", "K2", "K3", "K4"]
    for key in keys:
        await _listing_with_posts(live, key)
    live.platforms.tokens["fb-page-token"] = "revoked"
    for key in keys:
        live.mls.set_status(key, "Closed")

    report = await live.rt.engine.sync_all()

    account = await accounts.get(live.rt.db, "fb-page")
    assert account is not None and account.state == "needs_reauth"
    # Only the calls already in flight (2 per account) went out; the rest were not tried.
    tried = len(live.platforms.calls_to("facebook"))
    assert tried == live.rt.settings.platforms.max_concurrent_per_account
    account_errors = [e for e in report.errors if e.scope == "account"]
    assert len(account_errors) == 1 and "190" in account_errors[0].message
    assert await _post_status(live, "facebook-K1") == "published"
    assert await _post_status(live, "instagram-K1") == "unpublished"  # other platforms go on
    again = await live.rt.engine.sync_all()
    assert len(live.platforms.calls_to("facebook")) == tried
    assert any("needs_reauth" in e.message for e in again.errors)


async def test_throttling_and_transient_errors_keep_the_post_published_and_retry_later(
    live: Live,
) -> None:
    await _listing_with_posts(live)
    live.platforms.inject("facebook", graph_fault(32))
    live.platforms.inject("instagram", graph_fault(2, transient=True, status=500))
    live.platforms.inject("linkedin", Fault("status", status=429))

    await _sell(live)

    for platform in ("facebook", "instagram", "linkedin"):
        row = await posts.get(live.rt.db, f"{platform}-K1")
        assert row is not None and row.status == "published" and row.attempts == 1
        assert row.last_error and row.next_attempt_at
    await live.rt.engine.sync_all()  # not due yet: no new calls
    assert len(live.platforms.calls_to("facebook")) == 1

    later = utcnow() + timedelta(hours=1)
    live.rt.engine.unpublisher.clock = lambda: later
    await live.rt.engine.sync_all()
    for platform in ("facebook", "instagram", "linkedin"):
        assert await _post_status(live, f"{platform}-K1") == "unpublished"


async def test_permission_errors_need_a_person(live: Live) -> None:
    await _listing_with_posts(live)
    live.platforms.inject("facebook", graph_fault(200))
    await _sell(live)
    row = await posts.get(live.rt.db, "facebook-K1")
    assert row is not None and row.status == "manual_required"
    assert "permission" in (row.note or "")


async def test_a_timeout_is_retried_later(live: Live) -> None:
    await _listing_with_posts(live)
    live.platforms.inject("linkedin", Fault("slow", seconds=3))  # the test timeout is 2 s
    await _sell(live)
    row = await posts.get(live.rt.db, "linkedin-K1")
    assert row is not None and row.status == "published" and "unreachable" in (row.last_error or "")


async def test_instagram_needs_the_deleted_id_to_match(live: Live) -> None:
    await _listing_with_posts(live)
    live.platforms.inject(
        "instagram", Fault("status", status=200, body='{"success": true, "deleted_id": "999"}')
    )
    await _sell(live)
    row = await posts.get(live.rt.db, "instagram-K1")
    assert row is not None and row.status == "manual_required"


async def test_an_instagram_carousel_slide_needs_a_person(live: Live) -> None:
    await _listing_with_posts(live)
    live.platforms.posts[post_ids("K1")["instagram"]].kind = "carousel_slide"
    await _sell(live)
    row = await posts.get(live.rt.db, "instagram-K1")
    assert row is not None and row.status == "manual_required" and "carousel" in (row.note or "")


async def test_instagram_login_accounts_go_to_manual_without_any_call(live: Live) -> None:
    live.mls.put("K1", "Active")
    await add_connection(live.rt, live.mls_url)
    await track(live.rt, "mls-1", ["K1"])
    await add_account(live.rt, "ig-login", "instagram", "t", connected_via="instagram_login")
    await add_post(live.rt, "ig-1", "L-K1", "ig-login", "555")
    await _sell(live)
    row = await posts.get(live.rt.db, "ig-1")
    assert (
        row is not None
        and row.status == "manual_required"
        and "Instagram Login" in (row.note or "")
    )
    assert live.platforms.calls == []


async def test_linkedin_404_counts_as_already_gone(live: Live) -> None:
    await _listing_with_posts(live)
    live.platforms.posts[post_ids("K1")["linkedin"]].deleted = True
    live.mls.set_status("K1", "Closed")
    report = await live.rt.engine.sync_all()
    assert await _post_status(live, "linkedin-K1") == "unpublished"
    assert report.run.posts_already_gone == 1 and report.run.posts_unpublished == 2


async def test_an_expired_linkedin_token_is_refreshed_stored_and_used_from_then_on(
    live: Live,
) -> None:
    await _listing_with_posts(live, "K1")
    await _listing_with_posts(live, "K2")
    row = await accounts.get(live.rt.db, "li-member")
    assert row is not None
    await _expired_linkedin_token(live)
    live.mls.set_status("K1", "Closed")
    await live.rt.engine.sync_all()
    assert await _post_status(live, "linkedin-K1") == "unpublished"

    stored = await accounts.get(live.rt.db, "li-member")
    assert stored is not None
    new_token = live.rt.require_box().decrypt(stored.access_token_encrypted)
    assert new_token != "li-member-token" and live.platforms.tokens[new_token] == "ok"
    assert new_token.encode() not in await everything_stored(live.rt.db)

    live.mls.set_status("K2", "Closed")
    await live.rt.engine.sync_all()
    last = live.platforms.calls_to("linkedin")[-1]
    assert last.token == new_token
    assert last.headers["x-restli-protocol-version"] == "2.0.0"
    assert await _post_status(live, "linkedin-K2") == "unpublished"


async def test_a_revoked_linkedin_token_needs_reauth(live: Live) -> None:
    await _listing_with_posts(live)
    live.platforms.tokens["li-member-token"] = "revoked"
    await _sell(live)
    account = await accounts.get(live.rt.db, "li-member")
    assert account is not None and account.state == "needs_reauth"
    assert "REVOKED_ACCESS_TOKEN" in (account.last_error or "")


# -- resilience --------------------------------------------------------------------------------


async def test_one_platform_down_does_not_stop_the_others(live: Live) -> None:
    await _listing_with_posts(live)
    live.platforms.inject("facebook", Fault("status", status=503, times=100))
    live.mls.set_status("K1", "Closed")
    report = await live.rt.engine.sync_all()
    assert await _post_status(live, "facebook-K1") == "published"
    assert await _post_status(live, "instagram-K1") == "unpublished"
    assert await _post_status(live, "linkedin-K1") == "unpublished"
    assert report.run.posts_failed == 1 and report.run.outcome == "partial"


async def test_a_cycle_killed_between_the_status_change_and_the_deletes_loses_nothing(
    live: Live,
) -> None:
    """The status is committed, then the process dies while the deletes are in flight. The
    next cycle finds the posts due again (level-triggered) and takes them down, once each."""
    await _listing_with_posts(live)
    for platform in ("facebook", "instagram", "linkedin"):
        live.platforms.inject(platform, Fault("slow", seconds=30))
    live.mls.set_status("K1", "Closed")

    async with anyio.create_task_group() as tg:
        tg.start_soon(live.rt.engine.sync_all)
        with anyio.fail_after(10):
            # Polling on purpose: the state watched is the database and the platform server.
            while await status_of(live.rt, "K1") != "sold" or len(live.platforms.calls) < 3:
                await anyio.sleep(0.02)
        tg.cancel_scope.cancel()  # the "crash"

    assert await _post_status(live, "facebook-K1") == "published"
    for platform in ("facebook", "instagram", "linkedin"):
        live.platforms.faults[platform].clear()
    await live.rt.engine.sync_all()

    for platform in ("facebook", "instagram", "linkedin"):
        assert await _post_status(live, f"{platform}-K1") == "unpublished"
    assert set(live.platforms.successful_deletes.values()) == {1}


async def test_two_reconcilers_at_once_never_delete_a_post_twice(live: Live) -> None:
    for key in ("K1", "K2", "K3"):
        await _listing_with_posts(live, key)
        live.mls.set_status(key, "Closed")
    live.platforms.inject("facebook", Fault("slow", seconds=0.3))

    async with anyio.create_task_group() as tg:
        tg.start_soon(live.rt.engine.sync_all)
        tg.start_soon(live.rt.engine.sync_all)

    assert len(live.platforms.successful_deletes) == 9
    assert set(live.platforms.successful_deletes.values()) == {1}
    assert len(live.platforms.calls_to("linkedin")) == 3


async def test_unpublish_listing_takes_down_every_post_now(live: Live) -> None:
    """The brief's unpublishListingPosts(), for a listing still active."""
    await _listing_with_posts(live)

    report = await live.rt.engine.unpublish_listing("L-K1")

    assert sorted((r.platform, type(r.outcome).__name__) for r in report.posts) == [
        ("facebook", "Deleted"),
        ("instagram", "Deleted"),
        ("linkedin", "Deleted"),
    ]
    row = await listings.get(live.rt.db, "L-K1")
    assert row is not None and row.status == "active"


@pytest.mark.parametrize(
    ("code", "status"),
    [(4, 400), (17, 400), (32, 400), (613, 400), (80001, 400), (1, 500), (368, 400)],
)
async def test_every_graph_throttling_or_transient_code_is_retried_later(
    live: Live, code: int, status: int
) -> None:
    await _listing_with_posts(live)
    live.platforms.inject("facebook", graph_fault(code, status=status))
    await _sell(live)
    row = await posts.get(live.rt.db, "facebook-K1")
    assert row is not None and row.status == "published" and row.next_attempt_at is not None
    assert str(code) in (row.last_error or "")


async def test_platform_calls_never_exceed_the_platform_rate(
    tmp_path: Path,
    secret_key: str,
    mls: tuple[SandboxMls, str],
    paced_platforms: tuple[SandboxPlatforms, str],
) -> None:
    async with open_live(
        tmp_path,
        secret_key,
        mls,
        paced_platforms,
        MLS_SYNC_PLATFORMS__LINKEDIN_RATE_PER_SECOND="10",
        MLS_SYNC_PLATFORMS__MAX_CONCURRENT_PER_ACCOUNT="8",
    ) as live:
        rt = live.rt
        keys = [f"K{i}" for i in range(1, 16)]
        for key in keys:
            await _listing_with_posts(live, key)
            live.mls.set_status(key, "Closed")
        await rt.engine.sync_all()
    assert len(live.platforms.successful_deletes) == 45
    times = sorted(c.at for c in live.platforms.calls_to("linkedin"))
    assert len(times) == 15
    # One token dripping every 0.1 s: at most 11 calls start in any second, and 15 take 1.4 s.
    assert max(sum(1 for t in times[i:] if t - s < 1.0) for i, s in enumerate(times)) <= 11
    assert times[-1] - times[0] >= 1.3


async def test_a_post_that_fails_unexpectedly_needs_a_person_and_the_others_come_down(
    live: Live,
) -> None:
    """A post recorded with a bad id (a trailing newline, from before ids were fully matched)
    makes the request fail to build; that post needs a person, every other post comes down,
    in this pass and the next."""
    for key in ("K1", "K2"):
        await _listing_with_posts(live, key)
    await add_post(live.rt, "facebook-bad", "L-K1", "fb-page", "1093_4417\n")
    live.mls.set_status("K1", "Closed")
    live.mls.set_status("K2", "Closed")

    report = await live.rt.engine.sync_all()

    bad = await posts.get(live.rt.db, "facebook-bad")
    assert bad is not None and bad.status == "manual_required"
    assert "InvalidURL" in (bad.note or "")
    for key in ("K1", "K2"):
        for platform in ("facebook", "instagram", "linkedin"):
            assert await _post_status(live, f"{platform}-{key}") == "unpublished"
    assert report.run.posts_unpublished == 6 and report.run.posts_manual == 1
    assert any("facebook-bad" in e.message and "InvalidURL" in e.message for e in report.errors)


def _deletes_per_post(live: Live) -> Counter[str]:
    return Counter(c.path for c in live.platforms.calls if c.method == "DELETE")


async def _unpublish_lease_expiry(live: Live, later_than: str | None = None) -> str:
    """Waits for the unpublish lease to be held (and renewed past `later_than`): its expiry."""
    while True:
        held = await leases.holder_of(live.rt.db, LEASE)
        if held is not None and (later_than is None or held[1] > later_than):
            return held[1]
        await anyio.sleep(0.02)


async def test_a_pass_longer_than_its_lease_keeps_it_and_no_post_gets_two_deletes(
    tmp_path: Path,
    secret_key: str,
    mls: tuple[SandboxMls, str],
    platforms: tuple[SandboxPlatforms, str],
) -> None:
    """The lease is renewed while the pass runs: a second reconciler that starts after the
    lease's first term is refused, instead of sending a second DELETE for the same posts."""
    keys = ("K1", "K2", "K3")
    async with open_live(
        tmp_path, secret_key, mls, platforms, MLS_SYNC_PLATFORMS__TIMEOUT_SECONDS="20"
    ) as live:
        rt = live.rt
        rt.engine.unpublisher.lease_seconds = 1.0  # shorter than [sync]'s least
        for key in keys:
            await _listing_with_posts(live, key)
        for key in keys:
            live.mls.set_status(key, "Closed")
        live.platforms.inject("facebook", Fault("slow", seconds=5, times=2))  # 5 terms

        async with anyio.create_task_group() as tg:
            tg.start_soon(rt.engine.sync_all)
            with anyio.fail_after(10):
                first_term = await _unpublish_lease_expiry(live)
                await _unpublish_lease_expiry(live, later_than=first_term)  # renewed
                while not live.platforms.calls_to("facebook") or utcnow() <= parse_iso(first_term):
                    await anyio.sleep(0.02)
            second = await rt.engine.sync_all()
            deleted_by_then = len(live.platforms.successful_deletes)

        assert deleted_by_then < 9  # the first pass was still waiting on Facebook
        assert any("another process is taking posts down" in e.message for e in second.errors)
        deletes = _deletes_per_post(live)
        assert len(deletes) == 9 and set(deletes.values()) == {1}, deletes
        for key in keys:
            for platform in ("facebook", "instagram", "linkedin"):
                assert await _post_status(live, f"{platform}-{key}") == "unpublished"


SUCCESSOR = "host:1:successor"


async def _pass_whose_lease_is_taken_over_while_facebook_holds_its_delete(
    live: Live, slow: float
) -> float:
    """K1 sold with a post on each platform, Facebook holding its DELETE `slow` seconds, and
    a pass run until it ends: once that DELETE is out, a successor that found the lease
    expired (its clock says an hour later) takes it. When Facebook's answer is due
    (time.monotonic())."""
    await _listing_with_posts(live)
    live.mls.set_status("K1", "Closed")
    live.rt.engine.unpublisher.lease_seconds = 0.6  # shorter than [sync]'s least
    live.platforms.inject("facebook", Fault("slow", seconds=slow))
    later = iso(utcnow() + timedelta(hours=1))
    async with anyio.create_task_group() as tg:
        tg.start_soon(live.rt.engine.sync_all)
        with anyio.fail_after(10):
            while not live.platforms.calls_to("facebook"):
                await anyio.sleep(0.02)
        answered_by = time.monotonic() + slow
        assert await leases.acquire(live.rt.db, leases.LeaseRequest(LEASE, SUCCESSOR, later, later))
    return answered_by


async def test_a_reconciler_that_lost_its_lease_writes_nothing_and_stops(
    live: Live,
) -> None:
    """Another process takes the lease over while this one's deletes are out (as after a long
    pause): what this one learns afterwards is not written, and it says why."""
    await _pass_whose_lease_is_taken_over_while_facebook_holds_its_delete(live, 1.0)

    for platform in ("facebook", "instagram", "linkedin"):
        assert await _post_status(live, f"{platform}-K1") == "published"
    runs_ = await runs.recent(live.rt.db, 1)
    problems = await runs.errors_of(live.rt.db, runs_[0].id)
    assert any("lease expired or was taken over" in e.message for e in problems)
    assert runs_[0].posts_unpublished == 0


async def test_a_delete_out_when_the_lease_is_lost_is_not_sent_again_by_the_next_pass(
    live: Live,
) -> None:
    """The lease is lost while a DELETE is out: the pass sends nothing more, but it waits for
    that DELETE's answer instead of dropping it. Dropped, the platform still carried it out,
    after the next pass had read the post as still there and deleted it a second time."""
    slow = 2.0
    answered_by = await _pass_whose_lease_is_taken_over_while_facebook_holds_its_delete(live, slow)
    await leases.release(live.rt.db, LEASE, SUCCESSOR)  # the successor is done
    cut = (await runs.recent(live.rt.db, 1))[0]
    problems = [e.message for e in await runs.errors_of(live.rt.db, cut.id)]
    # Facebook's answer came after the loss; the others' waited in their batch: none written.
    assert any("3 outcome(s) not written" in m for m in problems), problems

    await live.rt.engine.sync_all()  # the next pass
    await anyio.sleep(max(0.0, answered_by - time.monotonic()) + 0.2)  # the slow one is done
    assert await _post_status(live, "facebook-K1") == "unpublished"
    assert live.platforms.successful_deletes[post_ids("K1")["facebook"]] == 1
    assert not live.platforms.repeated_deletes


async def _marked_sending(live: Live) -> int:
    async with live.rt.db.reading() as conn:
        rows = await conn.fetch_all(
            "SELECT count(*) FROM social_posts WHERE delete_sent_at IS NOT NULL"
        )
    return int(next(iter(rows))[0])


async def test_a_delete_held_past_the_end_of_its_lease_is_never_sent(
    tmp_path: Path,
    secret_key: str,
    mls: tuple[SandboxMls, str],
    platforms: tuple[SandboxPlatforms, str],
) -> None:
    """Deletes queued for the one request slot while the lease runs out unrenewed (another
    process holds the database) are not sent when the slot frees: a successor may hold the
    lease by then and delete the same posts. The next pass takes them down, once each."""
    async with open_live(
        tmp_path, secret_key, mls, platforms, MLS_SYNC_PLATFORMS__MAX_CONCURRENT_REQUESTS="1"
    ) as live:
        rt = live.rt
        rt.engine.unpublisher.lease_seconds = 0.6  # shorter than [sync]'s least
        await _listing_with_posts(live)
        live.mls.set_status("K1", "Closed")
        for platform in ("facebook", "instagram", "linkedin"):  # the first DELETE out is slow
            live.platforms.inject(platform, Fault("slow", seconds=3))

        with capture_logs() as logs:
            async with anyio.create_task_group() as tg:
                tg.start_soon(rt.engine.sync_all)
                with anyio.fail_after(10):  # one DELETE out, two queued behind it
                    while not live.platforms.calls or await _marked_sending(live) < 3:
                        await anyio.sleep(0.02)
                async with write_locked(rt.settings):  # no renewal gets through from now on
                    with anyio.fail_after(10):
                        while len(live.platforms.calls) < 2 and not any(
                            e["event"] == "lease_lost" for e in logs
                        ):
                            await anyio.sleep(0.02)

        assert [c.path for c in live.platforms.calls] == [live.platforms.calls[0].path]
        for platform in ("facebook", "instagram", "linkedin"):
            live.platforms.faults[platform].clear()
        await rt.engine.sync_all()  # the next pass: a read first, as for any unanswered DELETE
        for platform in ("facebook", "instagram", "linkedin"):
            assert await _post_status(live, f"{platform}-K1") == "unpublished"
        assert set(live.platforms.successful_deletes.values()) == {1}
        assert not live.platforms.repeated_deletes


async def test_a_database_lock_during_a_lease_renewal_does_not_stop_the_deletes(
    tmp_path: Path,
    secret_key: str,
    mls: tuple[SandboxMls, str],
    platforms: tuple[SandboxPlatforms, str],
) -> None:
    """Another process holds the database while the lease is due for renewal: the renewal
    is tried again at the next tick (as the sync's leases are), and the pass goes on; the
    DELETE out meanwhile is answered and recorded, and the run has no error."""
    async with open_live(
        tmp_path,
        secret_key,
        mls,
        platforms,
        MLS_SYNC_DATABASE__BUSY_TIMEOUT_MS="100",
        MLS_SYNC_PLATFORMS__TIMEOUT_SECONDS="10",
    ) as live:
        rt = live.rt
        rt.engine.unpublisher.lease_seconds = 1.5  # shorter than [sync]'s least
        await _listing_with_posts(live)
        live.mls.set_status("K1", "Closed")
        live.platforms.inject("facebook", Fault("slow", seconds=2.5))
        reports = []

        async def sync() -> None:
            reports.append(await rt.engine.sync_all())

        with capture_logs() as logs:
            async with anyio.create_task_group() as tg:
                tg.start_soon(sync)
                with anyio.fail_after(10):  # the three DELETEs out, Facebook's still unanswered
                    while len(live.platforms.calls) < 3 or await _marked_sending(live) < 3:
                        await anyio.sleep(0.02)
                async with write_locked(rt.settings):
                    with anyio.fail_after(10):  # a renewal tried while it is held
                        while not reports and not any(
                            e["event"] == "lease_renewal_failed" for e in logs
                        ):
                            await anyio.sleep(0.02)

        for platform in ("facebook", "instagram", "linkedin"):
            assert await _post_status(live, f"{platform}-K1") == "unpublished"
        assert reports[0].run.errors == 0 and reports[0].run.posts_unpublished == 3


async def test_outcomes_whose_write_meets_a_database_lock_are_written_later_and_the_pass_goes_on(
    tmp_path: Path,
    secret_key: str,
    mls: tuple[SandboxMls, str],
    platforms: tuple[SandboxPlatforms, str],
) -> None:
    """Another process holds the database when a batch of outcomes is due to be written: the
    batch waits for the next write instead of being dropped, and the deletes still out are
    answered and recorded; every post is `unpublished`, counted once, with one DELETE."""
    async with open_live(
        tmp_path,
        secret_key,
        mls,
        platforms,
        MLS_SYNC_DATABASE__BUSY_TIMEOUT_MS="100",
        MLS_SYNC_PLATFORMS__TIMEOUT_SECONDS="10",
    ) as live:
        rt = live.rt
        for key in ("K1", "K2"):
            await _listing_with_posts(live, key)
        for key in ("K1", "K2"):
            live.mls.set_status(key, "Closed")
        live.platforms.inject("facebook", Fault("slow", seconds=1.0))  # its outcome: the write
        live.platforms.inject("linkedin", Fault("slow", seconds=2.5))  # still out meanwhile
        reports = []

        async def sync() -> None:
            reports.append(await rt.engine.sync_all())

        with capture_logs() as logs:
            async with anyio.create_task_group() as tg:
                tg.start_soon(sync)
                with anyio.fail_after(10):  # every DELETE out; the quick ones answered
                    while len(live.platforms.successful_deletes) < 4:
                        await anyio.sleep(0.02)
                async with write_locked(rt.settings):
                    with anyio.fail_after(10):  # Facebook answers: its batch meets the lock
                        while not reports and not any(
                            e["event"] == "outcomes_not_written_yet" for e in logs
                        ):
                            await anyio.sleep(0.02)

        for key in ("K1", "K2"):
            for platform in ("facebook", "instagram", "linkedin"):
                assert await _post_status(live, f"{platform}-{key}") == "unpublished"
        assert reports[0].run.posts_unpublished == 6 and reports[0].run.errors == 0
        deletes = _deletes_per_post(live)
        assert len(deletes) == 6 and set(deletes.values()) == {1}, deletes


async def _sent_before(live: Live, post_id: str) -> None:
    """The post's DELETE went out in an earlier pass and its answer was never recorded."""
    row = await posts.get(live.rt.db, post_id)
    assert row is not None
    copy = DuePost(row.id, row.listing_id, row.account_id, row.platform_post_id, None, 0)
    async with live.rt.db.transaction() as conn:
        assert await posts.mark_delete_sent(conn, [copy], iso(utcnow()), None) == {post_id}


def _platform_calls(live: Live, platform: str) -> list[tuple[str, float]]:
    return [(c.method, c.at) for c in live.platforms.calls if c.platform == platform]


async def test_a_post_read_before_its_delete_waits_for_its_rate_without_the_request_slot(
    tmp_path: Path,
    secret_key: str,
    mls: tuple[SandboxMls, str],
    platforms: tuple[SandboxPlatforms, str],
) -> None:
    """A post whose earlier DELETE went unanswered is read first, then waits for its
    platform's rate before its DELETE; meanwhile the one request slot serves the others."""
    async with open_live(
        tmp_path,
        secret_key,
        mls,
        platforms,
        MLS_SYNC_PLATFORMS__MAX_CONCURRENT_REQUESTS="1",
        MLS_SYNC_PLATFORMS__FACEBOOK_RATE_PER_SECOND="0.5",
    ) as live:
        await _listing_with_posts(live)
        await _sent_before(live, "facebook-K1")

        await _sell(live)

        order = [(c.platform, c.method) for c in live.platforms.calls]
        assert order.index(("facebook", "GET")) < order.index(("facebook", "DELETE"))
        assert order[-1] == ("facebook", "DELETE"), order
        for platform in ("facebook", "instagram", "linkedin"):
            assert await _post_status(live, f"{platform}-K1") == "unpublished"


async def test_the_page_read_after_a_facebook_100_33_keeps_to_the_rate(
    tmp_path: Path,
    secret_key: str,
    mls: tuple[SandboxMls, str],
    paced_platforms: tuple[SandboxPlatforms, str],
) -> None:
    """Facebook answers a DELETE with 100/33 (gone, or no permission); the read of the page
    that tells which is a call like any other, within Facebook's rate (2 a second here)."""
    async with open_live(
        tmp_path,
        secret_key,
        mls,
        paced_platforms,
        MLS_SYNC_PLATFORMS__FACEBOOK_RATE_PER_SECOND="2",
    ) as live:
        await _listing_with_posts(live)
        live.platforms.posts[post_ids("K1")["facebook"]].deleted = True

        await _sell(live)

        calls = _platform_calls(live, "facebook")
        assert [method for method, _ in calls] == ["DELETE", "GET"]
        assert calls[1][1] - calls[0][1] >= 0.4, calls
        assert await _post_status(live, "facebook-K1") == "unpublished"


async def test_a_throttled_delete_is_sent_again_without_a_read_first(live: Live) -> None:
    """Throttled (Graph 32, LinkedIn 429): the platform says it did not delete, so the next
    try is one DELETE, not a read and a DELETE (which would double the calls while throttled).
    A throttled read says nothing of the DELETE before it: that one is still read first."""
    await _listing_with_posts(live)
    await _sent_before(live, "instagram-K1")
    live.platforms.inject("facebook", graph_fault(32))
    live.platforms.inject("instagram", graph_fault(32))  # the read
    live.platforms.inject("linkedin", Fault("status", status=429))

    await _sell(live)

    async with live.rt.db.reading() as conn:
        marked = await conn.fetch_all(
            "SELECT id FROM social_posts WHERE status = 'published' AND delete_sent_at IS NOT NULL"
        )
    assert [r[0] for r in marked] == ["instagram-K1"]
    later = utcnow() + timedelta(hours=1)
    live.rt.engine.unpublisher.clock = lambda: later
    await live.rt.engine.sync_all()
    assert [m for m, _ in _platform_calls(live, "facebook")] == ["DELETE", "DELETE"]
    assert [m for m, _ in _platform_calls(live, "linkedin")] == ["DELETE", "DELETE"]
    assert [m for m, _ in _platform_calls(live, "instagram")] == ["GET", "GET", "DELETE"]
    for platform in ("facebook", "instagram", "linkedin"):
        assert await _post_status(live, f"{platform}-K1") == "unpublished"


@pytest.mark.parametrize("minutes", ["1e300", "9" * 400], ids=["1e300", "400 digits"])
async def test_an_absurd_wait_asked_by_the_platform_is_capped_and_the_post_retried(
    live: Live, minutes: str
) -> None:
    """Graph's X-Business-Use-Case-Usage asking for 1e300 minutes (or garbled to Infinity),
    or a whole number too large for a float: the post stays published and is tried again
    within a day, like any throttled post."""
    await _listing_with_posts(live)
    usage = json.dumps({"1093": [{"estimated_time_to_regain_access": 0}]}).replace("0", minutes)
    live.platforms.inject("facebook", graph_fault(32, headers={"X-Business-Use-Case-Usage": usage}))

    await _sell(live)

    row = await posts.get(live.rt.db, "facebook-K1")
    assert row is not None and row.status == "published" and row.next_attempt_at is not None
    assert parse_iso(row.next_attempt_at) <= utcnow() + timedelta(days=1)


async def test_a_post_that_failed_a_thousand_times_is_still_retried(live: Live) -> None:
    """The backoff doubles per attempt up to its cap; a long outage's attempt count must not
    overflow it."""
    await _listing_with_posts(live)
    async with live.rt.db.transaction() as conn:
        await conn.execute("UPDATE social_posts SET attempts = 5000 WHERE id = 'facebook-K1'")
    live.platforms.inject("facebook", Fault("status", status=503))

    await _sell(live)

    row = await posts.get(live.rt.db, "facebook-K1")
    assert row is not None and row.status == "published" and row.attempts == 5001
    assert "503" in (row.last_error or "")


async def test_posts_another_process_took_down_before_this_one_had_the_lease_get_no_second_delete(
    tmp_path: Path,
    secret_key: str,
    mls: tuple[SandboxMls, str],
    platforms: tuple[SandboxPlatforms, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another process takes the listing's posts down between this one's look at them and its
    taking the lease: this one sends no DELETE from its stale copy (README: no post gets a
    second DELETE without a read first)."""
    settings = make_settings(tmp_path, **platform_env(platforms[1]))
    env = {"MLS_SYNC_SECRET_KEY": secret_key}
    async with open_runtime(settings, env) as rt, open_runtime(settings, env) as other:
        live = Live(rt, mls[0], mls[1], platforms[0])
        await _listing_with_posts(live)
        read = posts.published_of_listing
        interfered: list[int] = []

        async def then_another_process_takes_them_down(
            db: Database, listing_id: str
        ) -> list[DuePost]:
            seen = await read(db, listing_id)
            if not interfered:
                interfered.append(1)
                await other.engine.unpublish_listing(listing_id)
            return seen

        monkeypatch.setattr(posts, "published_of_listing", then_another_process_takes_them_down)
        await rt.engine.unpublish_listing("L-K1")

        assert interfered
        assert not live.platforms.repeated_deletes, live.platforms.repeated_deletes
        assert set(_deletes_per_post(live).values()) == {1}, _deletes_per_post(live)
        for platform in ("facebook", "instagram", "linkedin"):
            assert await _post_status(live, f"{platform}-K1") == "unpublished"


async def _expired_linkedin_token(live: Live) -> None:
    """li-member's token has expired; its refresh token gets a new one from LinkedIn."""
    await add_account(
        live.rt,
        "li-member",
        "linkedin",
        "li-member-token",
        refresh_token="li-refresh",
        client_id="li-app",
        client_secret="li-secret",
    )
    live.platforms.linkedin_refresh["li-refresh"] = "li-app"
    live.platforms.tokens["li-member-token"] = "expired"


async def test_a_delete_again_after_a_token_refresh_is_not_sent_once_the_lease_ran_out(
    tmp_path: Path,
    secret_key: str,
    mls: tuple[SandboxMls, str],
    platforms: tuple[SandboxPlatforms, str],
) -> None:
    """LinkedIn's token expired: refreshed, then the DELETE waits for LinkedIn's rate before
    it goes again; the lease runs out meanwhile (another process holds the database, no
    renewal gets through). That DELETE is not sent; the next pass reads, then deletes once."""
    async with open_live(
        tmp_path,
        secret_key,
        mls,
        platforms,
        MLS_SYNC_DATABASE__BUSY_TIMEOUT_MS="100",
        MLS_SYNC_PLATFORMS__LINKEDIN_RATE_PER_SECOND="0.4",
    ) as live:  # 2.5 s to the DELETE again
        rt = live.rt
        rt.engine.unpublisher.lease_seconds = 0.6  # shorter than [sync]'s least
        await _listing_with_posts(live)
        await _expired_linkedin_token(live)
        live.mls.set_status("K1", "Closed")

        with capture_logs() as logs:
            async with anyio.create_task_group() as tg:
                tg.start_soon(rt.engine.sync_all)
                with anyio.fail_after(10):
                    while not any(e["event"] == "token_refreshed" for e in logs):
                        await anyio.sleep(0.02)
                async with write_locked(rt.settings):  # no renewal gets through from now on
                    with anyio.fail_after(10):
                        while len(live.platforms.calls_to("linkedin", "DELETE")) < 2 and not any(
                            e["event"] == "lease_lost" for e in logs
                        ):
                            await anyio.sleep(0.02)

        assert len(live.platforms.calls_to("linkedin", "DELETE")) == 1  # the one answered 401
        before = len(_platform_calls(live, "linkedin"))
        await rt.engine.sync_all()
        assert [m for m, _ in _platform_calls(live, "linkedin")[before:]] == ["GET", "DELETE"]
        assert await _post_status(live, "linkedin-K1") == "unpublished"
        assert not live.platforms.repeated_deletes


async def test_a_refreshed_linkedin_token_that_cannot_be_saved_is_still_used_for_the_delete(
    tmp_path: Path,
    secret_key: str,
    mls: tuple[SandboxMls, str],
    platforms: tuple[SandboxPlatforms, str],
) -> None:
    """Another process holds the database as LinkedIn hands out a new token: the token is not
    saved this time (logged), but the DELETE goes out with it and the post comes down,
    instead of going to a person."""
    async with open_live(
        tmp_path, secret_key, mls, platforms, MLS_SYNC_DATABASE__BUSY_TIMEOUT_MS="100"
    ) as live:
        rt = live.rt
        await _listing_with_posts(live)
        await _expired_linkedin_token(live)
        live.platforms.linkedin_refresh_seconds = 1.0  # the lock is taken meanwhile
        live.mls.set_status("K1", "Closed")

        with capture_logs() as logs:
            async with anyio.create_task_group() as tg:
                tg.start_soon(rt.engine.sync_all)
                with anyio.fail_after(10):
                    while not live.platforms.calls_to("linkedin", "POST"):
                        await anyio.sleep(0.02)
                async with write_locked(rt.settings):
                    with anyio.fail_after(10):  # the DELETE again, or the post given up
                        while len(live.platforms.calls_to("linkedin")) < 2 and not any(
                            e["event"] == "post_failed_unexpectedly" for e in logs
                        ):
                            await anyio.sleep(0.02)

        assert await _post_status(live, "linkedin-K1") == "unpublished"
        assert any(e["event"] == "refreshed_token_not_saved" for e in logs)
        assert len(live.platforms.successful_deletes) == 3


def _noted(logs: Sequence[Mapping[str, object]], post_id: str) -> bool:
    return any(e["event"] == "post_outcome" and e.get("post_id") == post_id for e in logs)


async def test_outcomes_being_written_when_the_run_is_cancelled_are_still_written(
    live: Live,
) -> None:
    """The run is cancelled (a shutdown past its grace) while a batch of outcomes waits for
    the database: the batch is written on the way out, so the deleted posts are `unpublished`
    and the next pass makes no call for them (not a read each, finding them gone)."""
    await _listing_with_posts(live)
    live.mls.set_status("K1", "Closed")
    live.platforms.inject("facebook", Fault("slow", seconds=1.0))  # its outcome: the write

    with capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            tg.start_soon(live.rt.engine.sync_all)
            with anyio.fail_after(10):
                while not (_noted(logs, "instagram-K1") and _noted(logs, "linkedin-K1")):
                    await anyio.sleep(0.02)
            async with live.rt.db.reading():  # the database busy with something else
                with anyio.fail_after(10):  # Facebook answers: the batch waits to be written
                    while not _noted(logs, "facebook-K1"):
                        await anyio.sleep(0.02)
                tg.cancel_scope.cancel()

    for platform in ("facebook", "instagram", "linkedin"):
        assert await _post_status(live, f"{platform}-K1") == "unpublished"
    calls = len(live.platforms.calls)
    await live.rt.engine.sync_all()
    assert len(live.platforms.calls) == calls


async def test_a_database_lock_as_the_pass_ends_does_not_leave_the_unpublish_lease_held(
    tmp_path: Path,
    secret_key: str,
    mls: tuple[SandboxMls, str],
    platforms: tuple[SandboxPlatforms, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another process holds the database as the pass ends: freeing the unpublish lease is
    tried again once the lock is gone, so the next pass is not refused for 10 minutes as if
    another process were taking posts down."""
    monkeypatch.setattr(unpublish, "LAST_WRITE_SECONDS", 0.5)  # 10 s in production
    async with open_live(
        tmp_path, secret_key, mls, platforms, MLS_SYNC_DATABASE__BUSY_TIMEOUT_MS="100"
    ) as live:
        rt = live.rt
        await _listing_with_posts(live)
        live.mls.set_status("K1", "Closed")
        live.platforms.inject("facebook", Fault("slow", seconds=1.0))

        with capture_logs() as logs:
            async with anyio.create_task_group() as tg:
                tg.start_soon(rt.engine.sync_all)
                with anyio.fail_after(10):  # the three DELETEs out, Facebook's unanswered
                    while len(live.platforms.calls) < 3 or await _marked_sending(live) < 3:
                        await anyio.sleep(0.02)
                async with write_locked(rt.settings):
                    with anyio.fail_after(10):  # the pass ends: its lease meets the lock
                        while not any(
                            e["event"] in ("unpublish_crashed", "write_not_done_yet") for e in logs
                        ):
                            await anyio.sleep(0.02)

        assert await leases.holder_of(rt.db, LEASE) is None
        second = await rt.engine.sync_all()
        assert not any("another process" in e.message for e in second.errors), second.errors
        for platform in ("facebook", "instagram", "linkedin"):
            assert await _post_status(live, f"{platform}-K1") == "unpublished"


@pytest.mark.parametrize(
    "garbled", ["a NUL \x00 in it", "a lone surrogate \ud800 in it"], ids=["nul", "surrogate"]
)
async def test_a_platform_error_text_that_cannot_be_stored_fails_only_its_own_post(
    live: Live, garbled: str
) -> None:
    """Facebook's error message holds a character no database takes as it is (PostgreSQL
    refuses NUL in text; a lone surrogate is no UTF-8 at all): that post alone waits, with its
    error stored fit to read, and every other post of the sold listings comes down."""
    keys = ("K1", "K2", "K3")
    for key in keys:
        await _listing_with_posts(live, key)
    error = {"error": {"code": 2, "message": garbled, "is_transient": True}}
    live.platforms.inject(
        "facebook", Fault("status", status=500, body=json.dumps(error), times=100)
    )
    for key in keys:
        live.mls.set_status(key, "Closed")

    report = await live.rt.engine.sync_all()

    others = [f"{p}-{k}" for k in keys for p in ("instagram", "linkedin")]
    assert [await _post_status(live, p) for p in others] == ["unpublished"] * len(others)
    assert report.run.posts_unpublished == len(others)
    row = await posts.get(live.rt.db, "facebook-K1")
    assert row is not None and row.status == "published" and row.next_attempt_at is not None
    assert "a NUL   in it" in (row.last_error or "") or "surrogate ? in it" in (
        row.last_error or ""
    )


async def test_a_listing_back_on_the_market_during_a_pass_keeps_its_posts(
    tmp_path: Path,
    secret_key: str,
    mls: tuple[SandboxMls, str],
    platforms: tuple[SandboxPlatforms, str],
) -> None:
    """K1 and K2 sold; while K1's Facebook DELETE is out (one call at a time per account),
    the MLS puts K2 back on the market and a sync applies it. The pass read K2 as sold at
    its start, but a DELETE that cannot be taken back goes out only for a listing still
    sold when it is sent."""
    async with open_live(
        tmp_path, secret_key, mls, platforms, MLS_SYNC_PLATFORMS__MAX_CONCURRENT_PER_ACCOUNT="1"
    ) as live:
        for key in ("K1", "K2"):
            await _listing_with_posts(live, key)
        live.mls.set_status("K1", "Closed")
        live.mls.set_status("K2", "Closed")
        live.platforms.inject("facebook", Fault("slow", seconds=1.5))
        async with anyio.create_task_group() as tg:
            tg.start_soon(live.rt.engine.sync_all)
            with anyio.fail_after(10):
                while not live.platforms.calls_to("facebook"):
                    await anyio.sleep(0.02)
            live.mls.set_status("K2", "Active")
            await live.rt.engine.sync_connection("mls-1")

        assert await status_of(live.rt, "K2") == "active"
        assert await _post_status(live, "facebook-K2") == "published"
        assert live.platforms.exists(post_ids("K2")["facebook"])
        assert not live.platforms.exists(post_ids("K1")["facebook"])


@pytest.mark.parametrize("lifetime", [10**400, -60, "soon"], ids=["400 digits", "negative", "text"])
async def test_a_refreshed_linkedin_token_with_a_senseless_lifetime_is_used_all_the_same(
    live: Live, lifetime: object
) -> None:
    """LinkedIn's token endpoint gives a new token whose `expires_in` is no number of
    seconds a token may live: the token is stored, with no expiry, and the post comes down
    (not left to a person over an overflow)."""
    await _listing_with_posts(live)
    await _expired_linkedin_token(live)
    live.platforms.linkedin_token_lifetime = lifetime

    await _sell(live)

    assert await _post_status(live, "linkedin-K1") == "unpublished"
    account = await accounts.get(live.rt.db, "li-member")
    assert account is not None and account.access_token_expires_at is None
