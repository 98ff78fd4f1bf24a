"""How many queries one sync spends finding the key that makes the server fail a batch
(docs/reliability.md "One key the server fails on").

A batch the server fails with an error of its own (`QueryFailed`) is asked again in halves,
and a half that fails is halved again, down to the key. One such key costs two queries a
level: about a dozen for a batch of 50. Two bounds keep a server that fails every query from
being asked a batch's worth more: a sync asks no more halves once its last `GIVE_UP_AFTER`
all failed with no answer from the server since (the server, not a key), and it never
spends more than `MAX_QUERIES` queries on halves (each a request, or more when its answer
has several pages or is tried again after a 429, a 503 or no answer)."""

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
        if self.left < 2 or self.given_up():
            return False
        self.left -= 2
        return True

    def given_up(self) -> bool:
        """Whether the last `GIVE_UP_AFTER` halves all failed, with nothing answered since:
        no half is asked any more in this sync, not even one already spent."""
        return self.failed_since_an_answer >= GIVE_UP_AFTER

    def failed(self) -> None:
        """A half failed too."""
        self.failed_since_an_answer += 1

    def answered(self) -> None:
        """The server answered a query of this sync: it is not failing every one."""
        self.failed_since_an_answer = 0
