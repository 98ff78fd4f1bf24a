"""How many queries one sync spends finding the key that makes the server fail a batch
(docs/reliability.md "One key the server fails on").

A batch the server fails with an error of its own (`QueryFailed`) is asked again in halves,
and a half that fails is halved again, down to the key. One such key costs two queries a
level: about a dozen for a batch of 50. Two bounds keep a server that fails every query from
being asked a batch's worth more: a sync stops splitting once its last `GIVE_UP_AFTER`
queries in halves all failed with no answer from the server since, and it never spends more
than `MAX_QUERIES` on splitting."""

from __future__ import annotations

from dataclasses import dataclass

# About three bad keys' worth in batches of 50.
MAX_QUERIES = 40
# Halves failing three levels deep with nothing answered meanwhile: the server, not a key.
GIVE_UP_AFTER = 6


@dataclass
class IsolationBudget:
    """One sync's queries for splitting failed batches."""

    left: int = MAX_QUERIES
    failed_since_an_answer: int = 0

    def split(self) -> bool:
        """Whether a failed batch may be asked again in halves; if so, their two queries
        are spent."""
        if self.left < 2 or self.failed_since_an_answer >= GIVE_UP_AFTER:
            return False
        self.left -= 2
        return True

    def failed(self) -> None:
        """A half failed too."""
        self.failed_since_an_answer += 1

    def answered(self) -> None:
        """The server answered a query of this sync: it is not failing every one."""
        self.failed_since_an_answer = 0
