"""The layers stay apart: the store runs SQL and imports nothing of the layers above it, and
only the entry point wires the sandbox in (no production module imports it)."""

from __future__ import annotations

import ast
from pathlib import Path

import daemon

DAEMON = Path(daemon.__file__).resolve().parent
ABOVE_THE_STORE = ("daemon.sync", "daemon.ops", "daemon.service", "daemon.cli")
SANDBOX = "daemon.sandbox"
ENTRY_POINT = DAEMON / "main.py"


def _package_of(path: Path) -> list[str]:
    """The package a module's relative imports start from: `daemon.store` for its modules."""
    parts = path.relative_to(DAEMON.parent).with_suffix("").parts
    return list(parts[:-1])


def _imported(path: Path) -> set[str]:
    return _imports_in(path.read_text(encoding="utf-8"), _package_of(path))


def _imports_in(source: str, package: list[str]) -> set[str]:
    """Every module `source` imports, anywhere in it (functions and TYPE_CHECKING blocks too),
    as absolute names; `from a import b` counts as both `a` and `a.b`."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def _inside(name: str, package: str) -> bool:
    return name == package or name.startswith(f"{package}.")


def _offenders(paths: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{path.relative_to(DAEMON.parent)} imports {name}"
        for path in paths
        for name in _imported(path)
        if any(_inside(name, package) for package in forbidden)
    )


def test_the_store_imports_nothing_from_the_sync_the_operations_the_service_or_the_cli() -> None:
    """daemon/store/ takes plain values and runs SQL: it never reaches up a layer."""
    store = sorted((DAEMON / "store").rglob("*.py"))
    assert store, "no store modules found"
    assert _offenders(store, ABOVE_THE_STORE) == []


def test_no_production_module_imports_the_sandbox() -> None:
    """Only the sandbox itself and the entry point (daemon/main.py) import daemon.sandbox."""
    production = [
        path
        for path in sorted(DAEMON.rglob("*.py"))
        if not path.is_relative_to(DAEMON / "sandbox") and path != ENTRY_POINT
    ]
    assert _offenders(production, (SANDBOX,)) == []
    # The check sees imports at all: the entry point's wiring of the sandbox is found.
    assert _offenders([ENTRY_POINT], (SANDBOX,))


def test_relative_and_from_imports_are_read_as_the_modules_they_name() -> None:
    """`from ..sync import engine` in daemon/store/ is an import of daemon.sync.engine, and
    `from daemon import sandbox` one of daemon.sandbox."""
    source = "from ..sync import engine\nfrom . import leases\nfrom daemon import sandbox\n"
    seen = _imports_in(source, ["daemon", "store"])
    assert {"daemon.sync.engine", "daemon.store.leases", "daemon.sandbox"} <= seen
