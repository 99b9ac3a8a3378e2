"""hookfan's Lua scripts, one file each; every file's header states its keys and arguments.

Each script declares every key it touches in ``KEYS`` and reads time from Redis (``TIME``), so
every due time, lease and age comes from one clock whatever the clients' clocks say. A line
``-- include: <lib>`` stands for the text of ``<lib>.lua`` (one of :data:`LIBRARIES`: local
functions more than one script needs; Redis takes each script as one text).
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import Any

NAMES = ("accept", "dispatch", "settle", "replay", "purge", "resolve", "dlpage", "dlcount",
         "pause", "resume")
LIBRARIES = ("quota",)
_INCLUDE = re.compile(r"^-- include: (\w+)$", re.M)


def redis_time(client: Any) -> float:
    """Redis's clock (``TIME``) in Unix seconds: the clock the scripts use, for the Python
    code that compares with what they stored. Raises redis errors."""
    secs, micros = client.time()
    return int(secs) + int(micros) / 1e6


def _text(name: str) -> str:
    return resources.files(__package__).joinpath(f"{name}.lua").read_text(encoding="utf-8")


@cache
def source(name: str) -> str:
    """The text of ``<name>.lua``, its includes filled in; KeyError for a name not in
    :data:`NAMES` (or an include not in :data:`LIBRARIES`)."""
    if name not in NAMES:
        raise KeyError(name)

    def include(m: re.Match[str]) -> str:
        if m.group(1) not in LIBRARIES:
            raise KeyError(m.group(1))
        return _text(m.group(1))
    return _INCLUDE.sub(include, _text(name))


def register(client: Any) -> dict[str, Any]:
    """Every script registered on ``client`` (redis-py ``Script`` objects, run by SHA)."""
    return {name: client.register_script(source(name)) for name in NAMES}
