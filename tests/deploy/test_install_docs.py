"""docs/install.md as a new user follows it: the documented `make image` and `helm template`
commands, run as written (Helm's own --set parser, the chart the command names), produce
manifests Kubernetes accepts for the image that was built; the other facts the page states are
checked against their sources."""

from __future__ import annotations

import re
import shlex
import subprocess
from typing import Any

import helm_python
import jsonschema
import kubernetes_validate
import pytest
import yaml

from .chart import CHART, ROOT, chart, crds
from .test_chart_validate import SKIPPED_KINDS, VERSIONS
from .test_release import workflow

INSTALL = ROOT / "docs" / "install.md"
MARKER = "tests/deploy/test_install_docs.py renders the helm template command"


def text() -> str:
    return INSTALL.read_text(encoding="utf-8")


def section(title: str) -> str:
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text(), re.M | re.S)
    assert m, f"docs/install.md has no section '## {title}'"
    return m.group(1)


def shell_blocks(body: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", body, re.S)


def commands(block: str) -> list[list[str]]:
    """Each command line of a shell block as words (continuations joined, pipes kept)."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [shlex.split(line) for line in joined.splitlines() if line.strip()]


def documented_build() -> list[list[str]]:
    after = text().split(MARKER, 1)
    assert len(after) == 2, "the marked command block is gone from docs/install.md"
    return commands(shell_blocks(after[1])[0])


def merge(into: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    for key, value in more.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            into[key] = value
    return into


def helm_template(words: list[str]) -> tuple[list[dict[str, Any]], str]:
    """Render as `helm template NAME CHART [flags]` would (the flags the docs use; any other
    fails the test), CRDs included with --include-crds. Returns the objects and the
    pipeline after `|`."""
    pipe = words.index("|") if "|" in words else len(words)
    args, rest = words[2:pipe], " ".join(words[pipe + 1:])
    name, path = args[0], ROOT / args[1]
    values: dict[str, Any] = {}
    namespace, include_crds = "default", False
    it = iter(args[2:])
    for arg in it:
        if arg in ("--namespace", "-n"):
            namespace = next(it)
        elif arg == "--set":
            merge(values, helm_python.parse_set_string(next(it)))
        elif arg in ("-f", "--values"):
            merge(values, yaml.safe_load((ROOT / next(it)).read_text()))
        elif arg == "--include-crds":
            include_crds = True
        else:
            pytest.fail(f"the test does not know `helm template {arg}`: teach it")
    loaded = helm_python.Chart.load(path)
    loaded.validate_schema(values)
    rendered = loaded.render(values, name=name, namespace=namespace, is_install=True)
    docs = [d for p, t in sorted(rendered.items()) if not p.endswith("NOTES.txt")
            for d in yaml.safe_load_all(t) if d]
    if include_crds:
        docs = [yaml.safe_load(c["data"]) for c in loaded.crds] + docs
    return docs, rest


def test_install_starts_with_the_published_chart_then_building_your_own() -> None:
    headings = re.findall(r"^## (.+)$", text(), re.M)
    assert headings[:2] == ["Use the published chart", "Build your own"]


def test_the_published_chart_is_where_the_release_workflow_pushes_it() -> None:
    charts = workflow()["env"]["CHARTS"].replace("${{ github.repository_owner }}", "hookfan")
    (install,) = [c for b in shell_blocks(section("Use the published chart"))
                  for c in commands(b) if c[:2] == ["helm", "install"]]
    assert install[3] == f"{charts}/hookfan"
    assert install[install.index("--version") + 1] == chart().metadata["version"]


def test_the_documented_build_renders_manifests_kubernetes_accepts() -> None:
    cmds = documented_build()
    (make,) = [c for c in cmds if c[:2] == ["make", "image"]]
    image = make[2].removeprefix("IMAGE=")
    # --no-print-directory: under `make test` this make is a sub-make (it would announce the
    # directory it enters and leaves).
    built = subprocess.run(["make", "--no-print-directory", "-n", *make[1:]],
                           capture_output=True, text=True, check=True, cwd=ROOT).stdout.strip()
    assert built == f"docker build -t {image} ."
    (template,) = [c for c in cmds if c[:2] == ["helm", "template"]]
    docs, rest = helm_template(template)
    assert rest == "kubectl apply --dry-run=client -f -"
    # Every hookfan container runs the image `make image` built.
    images = {c["image"] for d in docs if d["kind"] in ("Deployment", "StatefulSet")
              for c in d["spec"]["template"]["spec"]["containers"]
              if c["name"] not in ("redis", "exporter")}
    assert images == {image}
    kinds = {d["kind"] for d in docs}
    assert {"CustomResourceDefinition", "Deployment", "StatefulSet", "Secret"} <= kinds
    for version in VERSIONS:
        for doc in docs:
            if doc["kind"] in SKIPPED_KINDS:
                continue
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} invalid for {version}: "
                            f"{exc}")
    # ... and the install that follows uses the same image.
    (install,) = [c for c in cmds if c[:2] == ["helm", "install"]]
    assert sets(install) == sets(template)


def sets(words: list[str]) -> list[str]:
    return [words[i + 1] for i, w in enumerate(words) if w == "--set"]


def test_a_broken_image_reference_would_be_caught() -> None:
    """The render is not vacuous: a value the chart refuses fails it."""
    with pytest.raises(helm_python.HelmError):
        helm_template(["helm", "template", "hookfan", "./helm/hookfan",
                       "--set", "image.repository=x", "--set", "image.digest=latest"])


def test_the_example_requestclone_is_valid_for_the_crd() -> None:
    (block,) = re.findall(r"```yaml\n(.*?)```", section("First routes"), re.S)
    example = yaml.safe_load(block)
    (crd,) = [c for c in crds() if c["spec"]["names"]["kind"] == "RequestClone"]
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta1"]
    assert example["apiVersion"] == f"{crd['spec']['group']}/v1beta1"
    jsonschema.validate(example, version["schema"]["openAPIV3Schema"])


def test_throughput_figures_are_the_bench_runs() -> None:
    bullet = re.search(r"- \*\*Throughput\*\*(.*?)(?=\n- \*\*)", section("Sizing"), re.S)
    assert bullet
    performance = (ROOT / "docs" / "performance.md").read_text()
    numbers = re.findall(r"\d+(?:,\d{3})*(?:\.\d+)?", bullet.group(1))
    figures = [n for n in numbers if n not in ("2", "16", "100", "2026", "11", "30")]
    assert len(figures) >= 8
    for figure in figures:
        assert re.search(rf"(?<![\d,.]){re.escape(figure)}(?![\d,]|\.\d)", performance), figure
    date = re.search(r"\*\*Date:\*\* (\d{4}-\d{2}-\d{2})", performance)
    assert date and date.group(1) in bullet.group(1)
    assert not re.search(r"~?\s?4k req/s|4,?000 req/s", text())


def test_the_compose_minimum_version_covers_what_compose_yaml_uses() -> None:
    m = re.search(r"Docker Compose v(\d+)\.(\d+) or newer", section("On one machine"))
    assert m
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    uses_restart = any(isinstance(d, dict) and d.get("restart") is True
                       for svc in compose["services"].values()
                       for d in (svc.get("depends_on") or {}).values()
                       if isinstance(svc.get("depends_on"), dict))
    # depends_on.restart arrived in Docker Compose 2.17.
    assert not uses_restart or (int(m.group(1)), int(m.group(2))) >= (2, 17)


def test_the_chart_path_in_the_docs_is_the_chart() -> None:
    (template,) = [c for c in documented_build() if c[:2] == ["helm", "template"]]
    assert (ROOT / template[3]).resolve() == CHART
