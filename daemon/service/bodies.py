"""What the /v1 routes take: the request bodies and the ids in their paths, each with an
example for /openapi.json. Secrets in the examples are placeholders in capitals
(`MLS_BEARER_TOKEN`), never anything that looks like a real one; a secret sent is write-only.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path
from pydantic import BaseModel, ConfigDict, SecretStr

from daemon.scopes import Scope
from daemon.specs import (
    AccountFields,
    ConnectionFields,
    Identifier,
    ListingFields,
    PostFields,
    UserFields,
)

ConnectionId = Annotated[str, Path(examples=["crmls"])]
ListingId = Annotated[str, Path(examples=["L-1"])]
AccountId = Annotated[str, Path(examples=["fb-page"])]
PostId = Annotated[str, Path(examples=["fb-L-1"])]
UserId = Annotated[str, Path(examples=["agent-1"])]
TokenName = Annotated[str, Path(examples=["monitoring"])]
# A run's number fits SQLite's integers: a larger one could not even be looked up (a 500).
RunId = Annotated[int, Path(examples=[1], le=2**63 - 1)]


def _example(**fields: str) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": [dict(fields)]})


class ConnectionBody(ConnectionFields):
    model_config = _example(
        name="CRMLS",
        base_url="https://mls.example.com/reso/odata",
        auth_kind="bearer",
        secret="MLS_BEARER_TOKEN",  # noqa: S106 - a placeholder
    )

    secret: SecretStr | None = None  # bearer token or client secret; write-only


class ListingBody(ListingFields):
    model_config = _example(connection_id="crmls", listing_key="3yd-CRMLS-1234")


class AccountBody(AccountFields):
    model_config = _example(
        user_id="agent-1",
        platform="facebook",
        access_token="PAGE_ACCESS_TOKEN",  # noqa: S106 - a placeholder
    )

    access_token: SecretStr | None = None
    refresh_token: SecretStr | None = None
    client_secret: SecretStr | None = None


class PostBody(PostFields):
    model_config = _example(listing_id="L-1", account_id="fb-page", platform_post_id="1093_441")


class UserBody(UserFields):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "display_name": "Agent One",
                    "email": "agent1@example.com",
                    "time_zone": "America/Los_Angeles",
                    "notify_events": ["listing.sold", "post.needs_person"],
                    "notify_mode": "immediate",
                }
            ]
        }
    )


class TokenBody(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"name": "monitoring", "scope": "read"}]}
    )

    name: Identifier  # the rule tokens.valid_name applies: the same from the CLI
    scope: Scope
