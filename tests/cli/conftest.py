"""The command line, parsed in-process (``hookfan.cli.resolve``) or run as ``main``."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def a_file(tmp_path: Path) -> str:
    """An existing file, for flags that must name one (a password, a TLS certificate)."""
    path = tmp_path / "secret.pem"
    path.write_text("x\n")
    return str(path)
