"""Static checks of the Dockerfile and the chart's copy of the CRD.

No Docker engine runs here, so the image cannot be built: what can be checked without building
it is checked by reading the Dockerfile.
"""

from __future__ import annotations

import re

from .chart import CHART, ROOT, crds

DOCKERFILE = ROOT / "Dockerfile"


def stages() -> list[tuple[str, list[str]]]:
    """``[(FROM line, [instructions...]), ...]`` with line continuations joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    out: list[tuple[str, list[str]]] = []
    for line in (ln.strip() for ln in text.splitlines()):
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            out.append((line, []))
        elif out:
            out[-1][1].append(line)
    return out


def test_dockerfile_is_multi_stage_on_python_311_slim() -> None:
    text = DOCKERFILE.read_text()
    assert "python:3.11-slim" in text
    froms = [f for f, _ in stages()]
    assert len(froms) >= 2
    assert any("--from=" in i for i in stages()[-1][1] if i.upper().startswith("COPY"))


def test_final_stage_runs_hookfan_as_a_numeric_non_root_user() -> None:
    _, final = stages()[-1]
    users = [i.split(None, 1)[1] for i in final if i.upper().startswith("USER ")]
    assert users, "the final stage sets no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    (entry,) = [i for i in final if i.upper().startswith("ENTRYPOINT")]
    assert entry == 'ENTRYPOINT ["hookfan"]'


def test_final_stage_installs_no_compiler() -> None:
    _, final = stages()[-1]
    for instr in final:
        if instr.upper().startswith("RUN"):
            assert not re.search(r"\b(gcc|g\+\+|clang|build-essential|make|cc)\b", instr), instr
            assert not re.search(r"\bapt(-get)? install\b|\bpip install\b", instr), instr


def test_image_carries_flower() -> None:
    installs = " ".join(i for _, instrs in stages() for i in instrs if "pip install" in i)
    assert "flower" in installs or ".[dev]" in installs


def test_dockerignore_keeps_local_state_out() -> None:
    lines = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "*"  # allow-list: only what the build copies
    assert {"!pyproject.toml", "!hookfan/"} <= set(lines)


def test_chart_crd_is_byte_identical_to_the_package_crd() -> None:
    assert (CHART / "crds" / "requestclone.yaml").read_bytes() == \
        (ROOT / "hookfan" / "crd.yaml").read_bytes()
    (crd,) = crds()
    assert crd["metadata"]["name"] == "requestclones.proxy.infra.doodle.com"
