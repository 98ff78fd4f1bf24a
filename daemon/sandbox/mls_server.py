"""The sandbox MLS: a RESO Web API subset over real HTTP, for the demo, tests and benchmark.

It answers like the servers in docs/mls-reso.md: OData `$filter` (and/or/not,
eq/ne/gt/ge/lt/le, in), `$select`, `$top`, `$skip`, `$orderby`, `Prefer: odata.maxpagesize`,
`@odata.nextLink` paging, OAuth2 client credentials or static bearer tokens, and the faults a
real feed throws (429, 5xx, slowness, garbage, too-long filters, expired tokens). Records are
kept raw, so a test can plant wrong types or unknown statuses exactly as a server would send
them.
"""

from __future__ import annotations

import json
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from daemon.sandbox.faults import Fault, FaultQueue, FaultRates, fault_response
from daemon.sandbox.odata_filter import FilterError, compile_filter
from daemon.timestamps import iso, parse_iso

DEFAULT_MAX_PAGE_SIZE = 1000
# A server that reads `$top` as the whole result's size (Bridge does) pages by the client's
# `Prefer: odata.maxpagesize`, 10 records when it is not sent, 200 at most
# (docs/mls-paging.md). The sandbox serves that behaviour under this path segment, so a
# connection picks it by its base URL.
TOP_IS_TOTAL_PATH = "top-is-total"
TOP_IS_TOTAL_DEFAULT_PAGE = 10
TOP_IS_TOTAL_MAX_PAGE = 200
ENTITY_EVENT = "EntityEvent"  # RESO's change log (docs/mls-reso.md "EntityEvent")
# The first sequence a consumer sees can be any number: not 1, so that no code assumes it.
FIRST_SEQUENCE = 1001


@dataclass
class SandboxMls:
    """The sandbox's state. Methods are plain Python so that tests, the demo and the admin
    endpoints all change the MLS the same way."""

    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    static_tokens: set[str] = field(default_factory=set)
    clients: dict[str, str] = field(default_factory=dict)  # client id -> secret
    token_lifetime: float = 3600.0
    max_page_size: int = DEFAULT_MAX_PAGE_SIZE
    max_filter_length: int | None = None  # longer filters get 413
    faults: FaultQueue = field(default_factory=FaultQueue)
    weather: FaultRates = field(default_factory=FaultRates)
    garbled: int = 0
    requests: Counter[str] = field(default_factory=Counter)  # credential -> data requests
    # (arrival, credential) of every request a rate limit counts: data and token requests.
    request_times: list[tuple[float, str]] = field(default_factory=list)
    token_requests: int = 0
    unauthorized: int = 0  # data requests refused with 401
    filters: list[str] = field(default_factory=list)  # the $filter of every data request
    longest_url: int = 0
    in_flight: int = 0
    max_in_flight: int = 0  # the most data requests ever served at the same time
    next_link_base: str | None = None  # to test that a foreign nextLink is refused
    _issued: dict[str, tuple[str, float]] = field(default_factory=dict)  # token -> (client, exp)
    last_stamp: datetime = field(default_factory=lambda: datetime(2000, 1, 1, tzinfo=UTC))
    # Paging re-asks the same query with a new $skip: keep its sorted result until data changes.
    version: int = 0
    _results: dict[tuple[str, str, str], tuple[int, list[dict[str, Any]]]] = field(
        default_factory=dict
    )
    # The EntityEvent log: one event per change of a listing, in sequence order.
    entity_events: list[dict[str, Any]] = field(default_factory=list)
    next_sequence: int = FIRST_SEQUENCE
    # Whether $metadata declares the EntityEvent resource: off, the server is one with no
    # change log, whose connections cannot use mode events.
    declares_entity_event: bool = True

    # -- data --------------------------------------------------------------------------------

    def stamp(self) -> datetime:
        """A fresh ModificationTimestamp, strictly after the previous one."""
        now = datetime.now(UTC)
        self.last_stamp = max(now, self.last_stamp + timedelta(microseconds=1))
        return self.last_stamp

    def put(
        self,
        key: str,
        standard_status: Any = "Active",
        mls_status: Any = None,
        modified: datetime | None = None,
        **raw: Any,
    ) -> dict[str, Any]:
        """Creates or changes a listing, bumping ModificationTimestamp (or setting it)."""
        record = self.records.setdefault(key, {"ListingKey": key, "MlgCanView": True})
        record["StandardStatus"] = standard_status
        record["MlsStatus"] = mls_status if mls_status is not None else standard_status
        record["ModificationTimestamp"] = modified or self.stamp()
        record.update(raw)
        self._changed(key)
        return record

    def set_status(self, key: str, standard_status: Any, mls_status: Any = None) -> None:
        if key not in self.records:
            raise KeyError(f"the sandbox MLS has no listing {key!r}")
        self.put(key, standard_status, mls_status)

    def change_unlogged(self, key: str, standard_status: str) -> int:
        """Changes a listing's status with no event in the change log (a producer that lost
        it, or one that only pushes it); returns the sequence an event of it would carry."""
        self.records[key]["StandardStatus"] = self.records[key]["MlsStatus"] = standard_status
        self.version += 1
        sequence = self.next_sequence
        self.next_sequence += 1
        return sequence

    def hide(self, key: str) -> None:
        """MLS Grid's way of removing a record: MlgCanView=false (and a new timestamp)."""
        self.records[key]["MlgCanView"] = False
        self.records[key]["ModificationTimestamp"] = self.stamp()
        self._changed(key)

    def delete(self, key: str) -> None:
        self.records.pop(key, None)
        self._changed(key)

    def _changed(self, key: str) -> None:
        """Every change of a listing is an EntityEvent naming it (no status: the record read
        is the truth), and makes cached query results stale."""
        self.entity_events.append(
            {
                "EntityEventSequence": self.next_sequence,
                "ResourceName": "Property",
                "ResourceRecordKey": key,
            }
        )
        self.next_sequence += 1
        self.version += 1

    def compact(self) -> int:
        """Drops every event of a key but its last, as a producer may: the sequence then has
        gaps, which a consumer must take as normal. Returns how many were dropped."""
        last = {e["ResourceRecordKey"]: e["EntityEventSequence"] for e in self.entity_events}
        kept = [
            e
            for e in self.entity_events
            if last[e["ResourceRecordKey"]] == e["EntityEventSequence"]
        ]
        dropped = len(self.entity_events) - len(kept)
        self.entity_events = kept
        self.version += 1
        return dropped

    def status_of(self, key: str) -> Any:
        return self.records[key].get("StandardStatus")

    # -- auth --------------------------------------------------------------------------------

    def add_client(self, client_id: str, secret: str) -> None:
        self.clients[client_id] = secret

    def expire_tokens(self) -> None:
        """Every issued OAuth token stops working, as after the server's token lifetime."""
        self._issued.clear()

    def issue(self, client_id: str, secret: str) -> str | None:
        self.token_requests += 1
        self.request_times.append((time.monotonic(), f"client:{client_id}"))
        if self.clients.get(client_id) != secret:
            return None
        token = secrets.token_hex(16)
        self._issued[token] = (client_id, time.monotonic() + self.token_lifetime)
        return token

    def credential_of(self, token: str) -> str | None:
        if token in self.static_tokens:
            return f"token:{token[:6]}"
        issued = self._issued.get(token)
        if issued and issued[1] > time.monotonic():
            return f"client:{issued[0]}"
        return None

    # -- queries -----------------------------------------------------------------------------

    def query(
        self,
        params: Mapping[str, str],
        prefer: str | None,
        top_is_total: bool = False,
        resource: str = "Property",
    ) -> tuple[list[dict[str, Any]], int]:
        """Returns (the page of records, the offset after it or -1 when it was the last).

        By default `$top` is a page size, as most RESO servers read it; with `top_is_total`
        it caps the whole result and only the Prefer header sets the page size."""
        rows = self._matching(params.get("$filter", ""), params.get("$orderby", ""), resource)
        skip = _int(params.get("$skip"), 0, "$skip")
        top = params.get("$top")
        preferred = _preferred_page_size(prefer)
        end = len(rows)
        if top_is_total:
            size = min(preferred or TOP_IS_TOTAL_DEFAULT_PAGE, TOP_IS_TOTAL_MAX_PAGE)
            if top is not None:
                end = min(end, _int(top, 0, "$top"))
        else:
            size = self.max_page_size
            if top is not None:
                size = min(size, _int(top, 0, "$top"))
            if preferred is not None:
                size = min(size, preferred)
        page = rows[skip : min(skip + size, end)]
        after = skip + size if skip + size < end else -1
        select = params.get("$select")
        fields = [f.strip() for f in select.split(",")] if select else None
        out = [_project(r, fields) for r in page]
        for record in out if resource != ENTITY_EVENT else []:
            if self.weather.garble():  # a record as a broken feed sends it: a wrong type
                record["StandardStatus"] = 404
                self.garbled += 1
        return out, after

    def _matching(self, text: str, order: str, resource: str) -> list[dict[str, Any]]:
        # The version read first: a test serving this MLS from a thread of its own changes
        # records from another, and a result made while they changed is cached under the
        # version it started from, so the next query makes it again.
        version = self.version
        cached = self._results.get((resource, text, order))
        if cached is not None and cached[0] == version:
            return cached[1]
        events = resource == ENTITY_EVENT
        rows: Iterable[dict[str, Any]] = self.entity_events if events else self.records.values()
        if text:
            compiled = compile_filter(text)
            if compiled.keys is not None and not events:
                rows = [self.records[k] for k in compiled.keys if k in self.records]
            rows = [r for r in rows if compiled.matches(r)]
        # A stable order for paging: the log's own, or by key.
        result = list(rows) if events else sorted(rows, key=_field_sort_key("ListingKey"))
        for part in reversed([p.strip() for p in order.split(",") if p.strip()]):
            name, _, direction = part.partition(" ")
            result.sort(key=_field_sort_key(name), reverse=direction.strip() == "desc")
        if len(self._results) > 256:
            self._results.clear()
        self._results[(resource, text, order)] = (version, result)
        return result


def _preferred_page_size(prefer: str | None) -> int | None:
    if not prefer or "odata.maxpagesize=" not in prefer:
        return None
    return _int(prefer.split("odata.maxpagesize=")[1].split(",")[0], 1, "Prefer")


def _int(text: str | None, default: int, what: str) -> int:
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise FilterError(f"{what} must be a whole number, got {text!r}") from None
    if value < 0:
        raise FilterError(f"{what} must not be negative")
    return value


def _field_sort_key(name: str) -> Callable[[dict[str, Any]], tuple[int, str]]:
    return lambda record: _sort_key(record.get(name))


def _sort_key(value: Any) -> tuple[int, str]:
    if isinstance(value, datetime):
        return (1, iso(value))
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return (2, f"{value:020d}")  # numbers in number order (a sequence passes 9999)
    return (0 if value is None else 2, str(value))


def _project(record: Mapping[str, Any], fields: list[str] | None) -> dict[str, Any]:
    out = {k: v for k, v in record.items() if fields is None or k in fields}
    if isinstance(out.get("ModificationTimestamp"), datetime):
        out["ModificationTimestamp"] = iso(out["ModificationTimestamp"])
    return out


def _odata_error(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": str(status), "message": message}}, status_code=status, headers=headers
    )


def build_mls_app(mls: SandboxMls, resource: str = "Property", prefix: str = "") -> Starlette:
    """`prefix` serves the feed under a path (/feed/7/Property), so one server can play many
    MLSs, as the benchmark needs."""

    async def token(request: Request) -> Response:
        form = {
            k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()
        }
        if form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        issued = mls.issue(str(form.get("client_id", "")), str(form.get("client_secret", "")))
        if issued is None:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        return JSONResponse(
            {"access_token": issued, "token_type": "Bearer", "expires_in": int(mls.token_lifetime)}
        )

    async def data(request: Request) -> Response:
        return await serve(request, top_is_total=False)

    async def data_top_is_total(request: Request) -> Response:
        return await serve(request, top_is_total=True)

    async def entity_events(request: Request) -> Response:
        return await serve(request, top_is_total=False, collection=ENTITY_EVENT)

    async def entity_events_top_is_total(request: Request) -> Response:
        return await serve(request, top_is_total=True, collection=ENTITY_EVENT)

    async def metadata(request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        if mls.credential_of(auth.removeprefix("Bearer ").strip()) is None:
            return _odata_error(401, "invalid or expired token", **{"WWW-Authenticate": "Bearer"})
        served = [resource] + ([ENTITY_EVENT] if mls.declares_entity_event else [])
        return Response(csdl_document(served), media_type="application/xml")

    async def serve(request: Request, top_is_total: bool, collection: str = resource) -> Response:
        auth = request.headers.get("authorization", "")
        credential = mls.credential_of(auth.removeprefix("Bearer ").strip())
        if credential is None:
            mls.unauthorized += 1
            return _odata_error(401, "invalid or expired token", **{"WWW-Authenticate": "Bearer"})
        mls.requests[credential] += 1
        mls.request_times.append((time.monotonic(), credential))
        mls.in_flight += 1
        mls.max_in_flight = max(mls.max_in_flight, mls.in_flight)
        try:
            return await answer(request, top_is_total, collection)
        finally:
            mls.in_flight -= 1

    async def answer(request: Request, top_is_total: bool, collection: str) -> Response:
        if fault := (
            mls.faults.take(request.query_params.get("$filter", "")) or mls.weather.roll()
        ):
            answer = await _fault_answer(fault)
            if answer is not None:
                return answer
        params = dict(request.query_params)
        mls.filters.append(params.get("$filter", ""))
        mls.longest_url = max(mls.longest_url, len(str(request.url)))
        if mls.max_filter_length and len(params.get("$filter", "")) > mls.max_filter_length:
            return _odata_error(413, "the filter is too long")
        try:
            page, after = mls.query(params, request.headers.get("prefer"), top_is_total, collection)
        except FilterError as exc:
            return _odata_error(400, str(exc))
        body: dict[str, Any] = {"@odata.context": f"$metadata#{collection}", "value": page}
        if after >= 0:
            link = request.url.include_query_params(**{"$skip": after})
            if mls.next_link_base:
                link = link.replace(netloc=mls.next_link_base)
            body["@odata.nextLink"] = str(link)
        return Response(json.dumps(body, default=str), media_type="application/json")

    async def admin_listing(request: Request) -> Response:
        key = request.path_params["key"]
        if request.method == "DELETE":
            mls.delete(key)
            return Response(status_code=204)
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": "body is not JSON"}, status_code=400)
        if not isinstance(body, dict):
            return JSONResponse({"error": "body must be an object"}, status_code=400)
        modified = body.pop("ModificationTimestamp", None)
        record = mls.put(
            key,
            body.pop("StandardStatus", "Active"),
            body.pop("MlsStatus", None),
            parse_iso(modified) if isinstance(modified, str) else None,
            **body,
        )
        return JSONResponse(_project(record, None))

    async def admin_faults(request: Request) -> Response:
        if request.method == "DELETE":
            mls.faults.clear()
            return Response(status_code=204)
        try:
            items = await request.json()
            for item in items if isinstance(items, list) else [items]:
                mls.faults.add(Fault(**item))
        except (ValueError, TypeError) as exc:
            return JSONResponse({"error": f"bad fault: {exc}"}, status_code=400)
        return JSONResponse({"queued": len(mls.faults)})

    async def admin_stats(request: Request) -> Response:
        return JSONResponse(
            {
                "listings": len(mls.records),
                "requests": dict(mls.requests),
                "token_requests": mls.token_requests,
                "faults_injected": mls.faults.injected,
            }
        )

    return Starlette(
        routes=[
            Route(f"{prefix}/oauth/token", token, methods=["POST"]),
            Route(f"{prefix}/{resource}", data, methods=["GET"]),
            Route(f"{prefix}/{TOP_IS_TOTAL_PATH}/{resource}", data_top_is_total, methods=["GET"]),
            Route(f"{prefix}/{ENTITY_EVENT}", entity_events, methods=["GET"]),
            Route(f"{prefix}/$metadata", metadata, methods=["GET"]),
            Route(
                f"{prefix}/{TOP_IS_TOTAL_PATH}/{ENTITY_EVENT}",
                entity_events_top_is_total,
                methods=["GET"],
            ),
            Route(
                f"{prefix}/admin/listings/{{key}}", admin_listing, methods=["PUT", "POST", "DELETE"]
            ),
            Route(f"{prefix}/admin/faults", admin_faults, methods=["POST", "DELETE"]),
            Route(f"{prefix}/admin/stats", admin_stats, methods=["GET"]),
        ]
    )


def csdl_document(resources: list[str]) -> str:
    """A minimal CSDL document declaring `resources` (their fields are left out: nothing
    here reads them)."""
    types = "".join(f'<EntityType Name="{r}"/>' for r in resources)
    sets = "".join(f'<EntitySet Name="{r}" EntityType="org.reso.metadata.{r}"/>' for r in resources)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<edmx:Edmx xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx" Version="4.0">'
        '<edmx:DataServices><Schema xmlns="http://docs.oasis-open.org/odata/ns/edm" '
        f'Namespace="org.reso.metadata">{types}'
        f'<EntityContainer Name="Default">{sets}</EntityContainer>'
        "</Schema></edmx:DataServices></edmx:Edmx>"
    )


async def _fault_answer(fault: Fault) -> Response | None:
    if fault.kind == "slow":
        await anyio.sleep(fault.seconds)
    return fault_response(fault)
