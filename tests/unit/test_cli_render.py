"""How the CLI says where a cut list goes on."""

from __future__ import annotations

import pytest

from daemon.cli.render import next_page_command


@pytest.mark.parametrize(
    ("given", "after", "expected"),
    [
        (["listings", "list"], "L-0099", "mls-sync listings list --after L-0099"),
        (
            ["--api", "http://h:1", "listings", "list", "--status", "unknown", "--limit", "5"],
            "L-5",
            "mls-sync --api http://h:1 listings list --status unknown --limit 5 --after L-5",
        ),
        (
            ["history", "--after", "40", "--outcome", "ok"],
            "20",
            "mls-sync history --outcome ok --after 20",
        ),
        (["posts", "list", "--after=p-1"], "p-9", "mls-sync posts list --after p-9"),
        (
            ["--api", "http://ops:pw@h:1", "runs"],
            "9",
            "mls-sync --api http://h:1 runs --after 9",
        ),
        (
            ["listings", "list", "--key-contains", "a b"],
            "x",
            "mls-sync listings list --key-contains 'a b' --after x",
        ),
    ],
)
def test_the_next_page_keeps_every_filter_and_moves_the_cursor_on(
    given: list[str], after: str, expected: str
) -> None:
    assert next_page_command(given, after) == expected
