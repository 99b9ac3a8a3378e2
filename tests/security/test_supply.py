"""Supply chain: every dependency has a lower bound, and `make test` installs with the
constraints file that pins what the tests ran against."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*(.*)$")


def requirements(extras: tuple[str, ...] = ("test", "dev", "bench")) -> list[str]:
    project = PYPROJECT["project"]
    found = list(project["dependencies"])
    for extra in extras:
        found += project.get("optional-dependencies", {}).get(extra, [])
    return found


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_dependency_has_a_lower_bound():
    # Type stubs only feed mypy and track their library's version: exempt.
    unbounded = [r for r in requirements() if ">=" not in r and "==" not in r
                 and not r.startswith("types-")]
    assert unbounded == []


def test_make_test_installs_with_the_constraints_file():
    makefile = (ROOT / "Makefile").read_text()
    install = [ln for ln in makefile.splitlines() if "pip install" in ln and "-e" in ln]
    assert install and all("-c constraints.txt" in ln for ln in install)
    test_target = re.search(r"^test:(.*)$", makefile, re.M)
    assert test_target is not None and "lint" in test_target.group(1)
    assert re.search(r"^lint: install", makefile, re.M)


def test_constraints_pin_every_dependency():
    pinned = {canonical(ln.split("==")[0]) for ln in (ROOT / "constraints.txt").read_text()
              .splitlines() if "==" in ln}
    # What `make test` installs; the bench extra is not part of the test run.
    names = {canonical(m.group(1)) for r in requirements(("test", "dev"))
             if (m := NAME.match(r))}
    assert names - pinned == set()
