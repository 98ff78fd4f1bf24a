"""The platform registry is the one place that says what a platform is: every entry is
complete, and the specs, the CLI, the settings and the sandbox offer exactly its platforms."""

from __future__ import annotations

import click
import httpx
import pytest

from daemon.cli.accounts_cmd import add as accounts_add
from daemon.config import PlatformSettings
from daemon.platforms.outcomes import no_pace
from daemon.platforms.registry import (
    PLATFORM_NAMES,
    REGISTRY,
    AdapterWiring,
    Platform,
    RegisteredPlatformSettings,
)
from daemon.sandbox.platforms_server import SandboxPlatforms, platform_env
from daemon.specs import AccountFields, SpecError, check_post_id


async def _no_save(account_id: str, token: str, lifetime: float | None) -> None:
    return None


def test_the_registry_holds_one_entry_per_platform_name() -> None:
    """The Platform enum, the registry's keys and the names offered as choices agree."""
    assert tuple(REGISTRY) == PLATFORM_NAMES == tuple(Platform)
    assert all(REGISTRY[name].platform == name for name in PLATFORM_NAMES)


@pytest.mark.parametrize("name", PLATFORM_NAMES)
async def test_every_platform_builds_its_own_adapter(name: str) -> None:
    """The reconciler builds each adapter from the registry: it must take down posts of that
    platform, with a delete and the check before a second delete."""
    async with httpx.AsyncClient() as http:
        wiring = AdapterWiring(http, RegisteredPlatformSettings(), no_pace, _no_save)
        adapter = REGISTRY[name].adapter(wiring)
    assert adapter.platform == name
    assert callable(adapter.delete) and callable(adapter.check)


@pytest.mark.parametrize("name", PLATFORM_NAMES)
def test_every_platforms_example_and_made_up_post_ids_fit_its_own_rule(name: str) -> None:
    """The example shown to a person, and the ids the sandbox makes up, are ids the platform's
    own rule accepts; text that is no id is refused, naming the form."""
    rule = REGISTRY[name].post_id
    for post_id in (rule.example, *(rule.numbered(n) for n in (0, 7, 123_456))):
        check_post_id(name, post_id)
    with pytest.raises(SpecError, match=f"not a {name} post id .*e.g. "):
        check_post_id(name, f"{rule.example}\n")


@pytest.mark.parametrize("name", PLATFORM_NAMES)
def test_every_platform_says_how_a_person_finds_a_post(name: str) -> None:
    """The "remove by hand" list links to the post: a https URL with the id in it, or nothing
    when the id alone makes no URL (then the recorded permalink is shown)."""
    example = REGISTRY[name].post_id.example
    link = REGISTRY[name].link(example)
    assert link is None or (link.startswith("https://") and link.endswith(example))


@pytest.mark.parametrize("name", PLATFORM_NAMES)
def test_every_platform_has_its_settings_in_the_platforms_section(name: str) -> None:
    """Where its APIs are and its rate are settings of `[platforms]`, with usable defaults."""
    entry = REGISTRY[name]
    settings = PlatformSettings()
    for setting in entry.url_settings:
        assert str(getattr(settings, setting)).startswith("https://")
    assert entry.rate_setting in PlatformSettings.model_fields
    assert settings.rate_for(name) > 0


def test_specs_and_cli_offer_exactly_the_registered_platforms() -> None:
    """An account's platform is checked against the registry, and `accounts add --platform`
    offers its names, in its order."""
    assert AccountFields.model_fields["platform"].annotation is Platform
    option = next(p for p in accounts_add.params if p.name == "platform")
    assert isinstance(option.type, click.Choice)
    assert tuple(option.type.choices) == PLATFORM_NAMES


def test_the_sandbox_stands_in_for_every_registered_platform() -> None:
    """Every URL setting of every platform points at the sandbox, which takes faults for each."""
    env = platform_env("http://127.0.0.1:9")
    for entry in REGISTRY.values():
        for setting in entry.url_settings:
            assert env[f"MLS_SYNC_PLATFORMS__{setting.upper()}"].startswith("http://127.0.0.1:9/")
    assert tuple(SandboxPlatforms().faults) == PLATFORM_NAMES
