"""Static checks of the Dockerfile and the chart's copy of the CRD.

No Docker engine runs here, so the image cannot be built: what can be checked without building
it is checked by reading the Dockerfile.
"""

from __future__ import annotations

import fnmatch
import re
import shlex

from .chart import CHART, ROOT, crds

DOCKERFILE = ROOT / "Dockerfile"


def instructions(text: str | None = None) -> list[str]:
    """The Dockerfile's instructions, line continuations joined, comments dropped."""
    text = re.sub(r"\\\n", " ", text if text is not None else
                  DOCKERFILE.read_text(encoding="utf-8"))
    return [ln for ln in (ln.strip() for ln in text.splitlines())
            if ln and not ln.startswith("#")]


def stages(text: str | None = None) -> list[tuple[str, list[str]]]:
    """``[(FROM line, [instructions...]), ...]``."""
    out: list[tuple[str, list[str]]] = []
    for line in instructions(text):
        if line.upper().startswith("FROM "):
            out.append((line, []))
        elif out:
            out[-1][1].append(line)
    return out


def base_images(text: str | None = None) -> list[str]:
    """The image each FROM names, ``${ARG}`` replaced by the ARG's default; a FROM naming an
    earlier stage is left out (it is pinned where that stage starts)."""
    args: dict[str, str] = {}
    names: set[str] = set()
    images = []
    for line in instructions(text):
        words = line.split()
        if words[0].upper() == "ARG" and "=" in words[1]:
            name, _, value = words[1].partition("=")
            args.setdefault(name, value.strip('"'))
        elif words[0].upper() == "FROM":
            ref = next(w for w in words[1:] if not w.startswith("--"))
            ref = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), ref)
            if ref not in names:
                images.append(ref)
            if len(words) >= 4 and words[-2].upper() == "AS":
                names.add(words[-1])
    return images


def pinned(ref: str) -> bool:
    return re.fullmatch(r"[^@\s]+@sha256:[0-9a-f]{64}", ref) is not None


def pip_installs(text: str | None = None) -> list[list[str]]:
    """The arguments of every ``pip install`` in a RUN, as words."""
    found = []
    for line in instructions(text):
        if line.upper().startswith("RUN "):
            for part in re.split(r"&&|;", line[4:]):
                words = shlex.split(part)
                if len(words) > 2 and words[0].endswith("pip") and words[1] == "install":
                    found.append(words[2:])
    return found


def docker_context_includes(path: str) -> bool:
    """Whether .dockerignore lets ``path`` into the build context: the last pattern that
    matches it (or one of its parent directories) decides, ``!`` re-includes."""
    included = True
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        if any(fnmatch.fnmatchcase(p, pattern) or fnmatch.fnmatchcase(p, pattern.replace(
                "**/", "*/")) for p in prefixes):
            included = negate
    return included


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
    assert entry == 'ENTRYPOINT ["/usr/bin/tini", "--", "hookfan"]'


def test_tini_is_pid_1_and_copied_in_from_the_build_stage() -> None:
    _, final = stages()[-1]
    assert "COPY --from=build /usr/bin/tini-static /usr/bin/tini" in final


def test_every_from_is_pinned_by_digest() -> None:
    images = base_images()
    assert len(images) >= 1 and all(pinned(i) for i in images), images
    assert all(i.startswith("python:3.11-slim@") for i in images)


def test_the_digest_check_sees_an_unpinned_from() -> None:
    assert base_images("ARG B=python:3.11-slim\nFROM ${B} AS b\nFROM b\n") == ["python:3.11-slim"]
    assert not pinned("python:3.11-slim")
    ref = "redis:7@sha256:" + "a" * 64
    assert base_images(f"FROM --platform=$X {ref}") == [ref]


def test_every_pip_install_is_held_to_constraints_txt() -> None:
    installs = pip_installs()
    assert installs
    for args in installs:
        assert "-c" in args and args[args.index("-c") + 1] == "constraints.txt", args
    copies = [i for i in instructions() if i.upper().startswith("COPY ") and "--from" not in i]
    assert any("constraints.txt" in c.split() for c in copies)
    assert pip_installs("RUN pip install . && true") == [["."]]  # the check sees a bare install


def test_dockerignore_lets_in_what_the_build_copies_and_nothing_local() -> None:
    for path in ("constraints.txt", "pyproject.toml", "README.md", "hookfan/cli.py"):
        assert docker_context_includes(path), path
    for path in (".venv/bin/python", "tests/deploy/chart.py", ".hookfan-dev/dump.aof",
                 "hookfan/__pycache__/cli.cpython-311.pyc"):
        assert not docker_context_includes(path), path


def test_no_healthcheck_kubernetes_probes_do_that() -> None:
    assert not [i for i in instructions() if i.upper().startswith("HEALTHCHECK")]


def test_final_stage_installs_no_compiler() -> None:
    _, final = stages()[-1]
    for instr in final:
        if instr.upper().startswith("RUN"):
            assert not re.search(r"\b(gcc|g\+\+|clang|build-essential|make|cc)\b", instr), instr
            assert not re.search(r"\bapt(-get)? install\b|\bpip install\b", instr), instr


def test_image_carries_flower_pinned() -> None:
    assert any("flower" in args for args in pip_installs())


def test_dockerignore_keeps_local_state_out() -> None:
    lines = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "*"  # allow-list: only what the build copies
    assert {"!pyproject.toml", "!hookfan/"} <= set(lines)


def test_chart_crd_is_byte_identical_to_the_package_crd() -> None:
    assert (CHART / "crds" / "requestclone.yaml").read_bytes() == \
        (ROOT / "hookfan" / "crd.yaml").read_bytes()
    assert (CHART / "crds" / "receiver.yaml").read_bytes() == \
        (ROOT / "hookfan" / "receiver_crd.yaml").read_bytes()
    assert sorted(c["metadata"]["name"] for c in crds()) == [
        "receivers.webhook.infra.doodle.com", "requestclones.proxy.infra.doodle.com"]
