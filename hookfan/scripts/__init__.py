"""hookfan's Lua scripts, one file each; every file's header states its keys and arguments.

Each script declares every key it touches in ``KEYS`` and reads time from Redis (``TIME``), so
every due time, lease and age comes from one clock whatever the clients' clocks say.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

NAMES = ("accept", "dispatch", "settle", "replay", "purge", "resolve", "dlpage", "dlcount")


@cache
def source(name: str) -> str:
    """The text of ``<name>.lua``; KeyError for a name not in :data:`NAMES`."""
    if name not in NAMES:
        raise KeyError(name)
    return resources.files(__package__).joinpath(f"{name}.lua").read_text(encoding="utf-8")


def register(client: Any) -> dict[str, Any]:
    """Every script registered on ``client`` (redis-py ``Script`` objects, run by SHA)."""
    return {name: client.register_script(source(name)) for name in NAMES}
