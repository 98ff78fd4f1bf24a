"""What all connections share while the process lives: the HTTP client, the global request
bound, one pace per credential (daemon/pace.py), and cached OAuth tokens.

Created inside the running event loop (aiolimiter binds to the loop it first runs on), once per
process, so that limits and tokens carry over from one cycle to the next.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection

import anyio

from daemon.config import MlsSettings
from daemon.encryption import SecretBox, SecretKeyError
from daemon.enums import AuthKind, KeyFilter
from daemon.mls.auth import ClientCredentials, StaticToken, TokenSource
from daemon.mls.client import Endpoint, MlsClient, RetryPolicy
from daemon.mls.encoded_url import url_of
from daemon.mls.query import SELECT, SELECT_WITH_MLG
from daemon.pace import CredentialPace
from daemon.store.records import ConnectionRow
from daemon.sync.pools import ServerPools, needs_restart, within_pools


class MlsAccess:
    def __init__(self, http: ServerPools, settings: MlsSettings, box: SecretBox | None) -> None:
        self.http = http
        self.settings = settings
        self.box = box
        self.concurrency = anyio.CapacityLimiter(settings.max_concurrent_requests)
        # What the HTTP clients were made with: their pools have this many connections, and
        # their engine is this one, until a restart.
        self._built = settings
        self._rates: dict[str, tuple[float, CredentialPace]] = {}  # credential -> rate, pace
        self._credential_of: dict[str, str] = {}  # connection -> credential
        # credential -> {connection -> its rate}: the lowest is found among the connections
        # of that credential alone, not by scanning every connection for each one, which
        # grew with the square of the connections (docs/benchmarks.md "Scenario I").
        self._rates_of: dict[str, dict[str, float]] = {}
        self._tokens: dict[tuple[str, str], tuple[TokenSource, str]] = {}
        # connection -> `MlsClient.fails_alone`: what this process found, kept from one of
        # the connection's syncs to the next even when no write recorded it (an events page
        # that failed after its first batches is written whole or not at all).
        self._fails_alone: dict[str, set[str]] = {}

    def apply(self, settings: MlsSettings) -> None:
        """A reload: the retry policy, the URL length and the timeout from the next request;
        the request bound too, up to the pools' size (`pools.within_pools`). Another engine
        needs a restart, and the log says so."""
        self.settings = settings
        self.concurrency.total_tokens = within_pools(
            "mls", settings.max_concurrent_requests, self._built.max_concurrent_requests
        )
        self.http.retime(settings.timeout_seconds)
        if settings.http_engine != self._built.http_engine:
            needs_restart("mls", "http_engine")

    def policy(self) -> RetryPolicy:
        s = self.settings
        return RetryPolicy(
            max_attempts=s.max_attempts,
            backoff_initial=s.backoff_initial_seconds,
            backoff_max=s.backoff_max_seconds,
            max_retry_after=s.max_retry_after_seconds,
            breaker_after_429s=s.breaker_after_429s,
        )

    def client_for(
        self,
        row: ConnectionRow,
        on_request: Callable[[], None],
        fails_alone: Collection[str] = (),
    ) -> MlsClient:
        """`fails_alone`: the connection's keys a query of their own failed, as the store
        knows them (found by any daemon: `MlsClient.fails_alone`), added to those this
        process found."""
        endpoint = Endpoint(
            connection_id=row.id,
            base_url=row.base_url,
            resource=row.resource,
            key_filter=KeyFilter(row.key_filter),
            page_size=row.page_size,
            select=SELECT_WITH_MLG if row.select_mlg_can_view else SELECT,
        )
        tokens, credential = self._prepared(row)
        return MlsClient(
            http=self.http.for_url(row.base_url),
            endpoint=endpoint,
            tokens=tokens,
            pace=self._pace(row.id, credential, row.rate_per_second),
            concurrency=self.concurrency,
            policy=self.policy(),
            on_request=on_request,
            fails_alone=self._fails_alone_of(row.id, fails_alone),
        )

    def _fails_alone_of(self, connection_id: str, stored: Collection[str]) -> set[str]:
        found = self._fails_alone.setdefault(connection_id, set())
        found.update(stored)
        return found

    def _decrypt(self, token: str) -> str:
        if self.box is None:
            raise SecretKeyError("no secret key is configured, so credentials cannot be read")
        return self.box.decrypt(token)

    def _pace(self, connection_id: str, credential: str, rate_per_second: float) -> CredentialPace:
        """One pace per credential, not per connection: two connections sharing a token
        share its limit (the classic cause of endless 429s). Its rate is the lowest that the
        connections using the credential have now: a rate changed (raised or lowered) takes
        effect from the connection's next sync, without a restart."""
        self._forget(connection_id)
        self._credential_of[connection_id] = credential
        sharing = self._rates_of.setdefault(credential, {})
        sharing[connection_id] = rate_per_second
        rate = min(sharing.values())
        known = self._rates.get(credential)
        if known is None:
            known = (rate, CredentialPace(rate))
        elif known[0] != rate:
            known[1].retune(rate)
            known = (rate, known[1])
        self._rates[credential] = known
        return known[1]

    def forget_others(self, connection_ids: Collection[str]) -> None:
        """Connections no longer synced (removed, paused) stop holding their credential's
        rate down, and the keys this process found failing alone on them are forgotten."""
        for gone in self._credential_of.keys() - set(connection_ids):
            self._forget(gone)
        for gone in self._fails_alone.keys() - set(connection_ids):
            del self._fails_alone[gone]

    def _forget(self, connection_id: str) -> None:
        credential = self._credential_of.pop(connection_id, None)
        if credential is not None:
            sharing = self._rates_of[credential]
            del sharing[connection_id]
            if not sharing:
                del self._rates_of[credential]

    def _prepared(self, row: ConnectionRow) -> tuple[TokenSource, str]:
        """The connection's token source and credential id, from one decryption of its
        stored secret. Keyed by the stored (encrypted) secret too: new credentials get a
        new token and are judged afresh."""
        cache_key = (row.id, row.secret_encrypted)
        if cache_key not in self._tokens:
            secret = self._decrypt(row.secret_encrypted)
            source: TokenSource
            if row.auth_kind == AuthKind.OAUTH2 and row.token_url and row.client_id:
                source = ClientCredentials(row.token_url, row.client_id, secret, row.scope)
            else:
                source = StaticToken(secret)
            self._tokens[cache_key] = (source, _credential_id(row, secret))
        return self._tokens[cache_key]


def _credential_id(row: ConnectionRow, secret: str) -> str:
    """Same server (scheme, host, port: not the path, since one token often serves several
    feeds) and same client id or bearer token = same credential, and so one limit. Only a
    hash is kept in memory; it never leaves the process."""
    who = row.client_id if row.auth_kind == AuthKind.OAUTH2 else secret
    server = url_of(row.token_url or row.base_url)
    text = f"{server.scheme}://{server.host}:{server.port}|{who}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
