"""The import contracts (pyproject ``[tool.importlinter]``, docs/architecture.md) cover every
web entry point.

``lint-imports`` follows imports, so whatever a view, a URLconf or a service reaches is
checked. Django also loads modules by name (admin, app configs, template tags, middleware,
context processors, DRF classes): those must be sources of the web contracts themselves, or
a new one could reach torch unseen.
"""

from __future__ import annotations

import importlib.util
import tomllib
from collections.abc import Iterator

from django.conf import settings

from tests.conftest import REPO

FIRST_PARTY = ("annotation", "modeling", "rlhf", "config")
WEB_CONTRACTS = ("web-no-torch", "web-not-worker")


def _contracts() -> dict[str, dict]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {c["id"]: c for c in config["contracts"]}


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def _module_of(dotted: str) -> str | None:
    """The longest importable module that ``dotted`` (a module, class or function path) names."""
    found = None
    parts = dotted.split(".")
    for end in range(1, len(parts) + 1):
        name = ".".join(parts[:end])
        try:
            spec = importlib.util.find_spec(name)
        except ModuleNotFoundError:  # the name before is a module, not a package
            break
        if spec is None:
            break
        found = name
    return found


def django_loaded_modules() -> set[str]:
    """First-party modules Django and DRF import by name when serving requests."""
    modules = set()
    for setting in dir(settings):
        if not setting.isupper() or setting.startswith("CELERY"):  # tasks run in workers
            continue
        for text in _strings(getattr(settings, setting)):
            named = text.startswith(tuple(f"{p}." for p in FIRST_PARTY)) and " " not in text
            if named and (module := _module_of(text)) is not None:
                modules.add(module)
    for app in ("annotation", "modeling", "rlhf"):
        for name in ("admin", "apps", "urls", "templatetags"):
            if importlib.util.find_spec(f"{app}.{name}") is not None:
                modules.add(f"{app}.{name}")
    return modules


def _covered(module: str, sources: list[str]) -> bool:
    return any(module == s or module.startswith(f"{s}.") for s in sources)


def test_every_module_django_loads_by_name_is_a_source_of_the_web_contracts():
    contracts = _contracts()
    loaded = django_loaded_modules()
    assert {"config.urls", "modeling.admin", "rlhf.apps"} <= loaded  # the search finds them
    for contract_id in WEB_CONTRACTS:
        sources = contracts[contract_id]["source_modules"]
        missing = sorted(m for m in loaded if not _covered(m, sources))
        assert not missing, f"{contract_id}: add {missing} to its source_modules"


def test_web_contracts_ignore_only_enqueue_edges_into_tasks():
    """The only way from web code to worker code is a task's ``.delay()`` (docs/architecture.md)."""
    for contract_id in WEB_CONTRACTS:
        for edge in _contracts()[contract_id].get("ignore_imports", []):
            importer, imported = (side.strip() for side in edge.split("->"))
            assert imported.endswith(".tasks"), edge
            assert importer.split(".")[0] == imported.split(".")[0], edge
