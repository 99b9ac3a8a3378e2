"""The release workflow: actionlint accepts it, and it publishes what the chart and `make image`
expect. It cannot run here (no GitHub runner, no registry); what it would do is read from it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from .chart import ROOT, chart, containers, render, workloads

WORKFLOW = ROOT / ".github" / "workflows" / "release.yml"
# The wheels' console scripts sit next to the interpreter; absent means the test extra is not
# installed, and the tests fail rather than skip.
ACTIONLINT = Path(sys.executable).parent / "actionlint"
SHELLCHECK = Path(sys.executable).parent / "shellcheck"


def actionlint(*files: Path) -> subprocess.CompletedProcess[str]:
    # shellcheck named explicitly (run: scripts are checked the same on every machine);
    # -pyflakes=: there is no Python in run: scripts.
    return subprocess.run([str(ACTIONLINT), "-no-color", f"-shellcheck={SHELLCHECK}",
                           "-pyflakes=", *map(str, files)], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)


def workflow() -> dict[Any, Any]:
    doc: dict[Any, Any] = yaml.safe_load(WORKFLOW.read_text())
    return doc


def steps(job: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = workflow()["jobs"][job]["steps"]
    return result


def step_using(job: str, action: str) -> dict[str, Any]:
    (found,) = [s for s in steps(job) if s.get("uses", "").startswith(action + "@")]
    return found


def scripts(job: str) -> str:
    return "\n".join(s.get("run", "") for s in steps(job))


def test_actionlint_accepts_every_workflow() -> None:
    files = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))
    assert WORKFLOW in files
    result = actionlint(*files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_rejects_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "release.yml"
    # A job that needs one that does not exist, and an output read from a step id never set.
    broken.write_text(WORKFLOW.read_text().replace("needs: image", "needs: imgae")
                      .replace("steps.build.outputs.digest", "steps.biuld.outputs.digest"))
    result = actionlint(broken)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "imgae" in result.stdout and "biuld" in result.stdout


def test_nothing_is_published_before_the_tests_pass() -> None:
    jobs = workflow()["jobs"]
    assert [s["run"] for s in jobs["test"]["steps"] if "run" in s][-1] == "make test"
    assert jobs["image"]["needs"] == "test" and jobs["chart"]["needs"] == "image"


def test_actionlint_runs_shellcheck_on_run_scripts(tmp_path: Path) -> None:
    broken = tmp_path / "release.yml"
    broken.write_text(WORKFLOW.read_text().replace('test -n "${digest}"', "test -n $digest"))
    result = actionlint(broken)
    assert result.returncode == 1 and "shellcheck" in result.stdout, result.stdout


@pytest.mark.parametrize("script", ["redis-aof-backup.sh", "redis-aof-restore.sh",
                                    "ensure-redis.sh"])
def test_the_documented_shell_scripts_pass_shellcheck(script: str) -> None:
    result = subprocess.run([str(SHELLCHECK), "-s", "sh", str(ROOT / "scripts" / script)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout


def test_it_runs_on_version_tags_only() -> None:
    # PyYAML reads the key `on` as True.
    assert workflow()[True] == {"push": {"tags": ["v[0-9]+.[0-9]+.[0-9]+*"]}}
    assert workflow()["permissions"] == {"contents": "read"}


def test_the_image_is_built_multi_arch_from_the_dockerfile_alone_and_pushed_to_ghcr() -> None:
    build = step_using("image", "docker/build-push-action")["with"]
    assert build["file"] == "Dockerfile" and build["context"] == "."
    assert set(build["platforms"].split(",")) == {"linux/amd64", "linux/arm64"}
    assert build["push"] is True
    # Build args could swap the pinned base: none are passed.
    assert "build-args" not in build and "build-contexts" not in build
    assert workflow()["env"]["IMAGE"] == "ghcr.io/${{ github.repository_owner }}/hookfan"
    assert "docker/setup-qemu-action" in str(steps("image"))


def test_both_artifacts_are_signed_keyless() -> None:
    for job in ("image", "chart"):
        assert workflow()["jobs"][job]["permissions"]["id-token"] == "write"
        assert step_using(job, "sigstore/cosign-installer")
        (sign,) = [ln for ln in scripts(job).splitlines() if ln.startswith("cosign sign")]
        assert "--yes" in sign and "--key" not in sign and "@${DIGEST}" in sign


def test_the_chart_is_pushed_to_ghcr_as_an_oci_artifact() -> None:
    assert workflow()["env"]["CHARTS"].startswith("oci://ghcr.io/")
    text = scripts("chart")
    assert re.search(r'helm package helm/hookfan --version "\$\{VERSION\}"', text)
    assert 'helm push "hookfan-${VERSION}.tgz" "${CHARTS}"' in text


def test_the_published_chart_pulls_the_published_image_by_digest() -> None:
    """Apply the workflow's own sed expression to values.yaml, as the chart job does, and render:
    every hookfan container then names the image the workflow pushed, by digest."""
    (sed,) = re.findall(r'sed -i "(s\|.*?)" helm/hookfan/values.yaml', scripts("chart"))
    # Undo the shell's double-quote escapes; sed's basic regex here is also Python's.
    _, pattern, replacement, _ = sed.replace('\\"', '"').split("|")
    digest = "sha256:" + "ab" * 32
    values = (ROOT / "helm" / "hookfan" / "values.yaml").read_text()
    published, count = re.subn(pattern, replacement.replace("${DIGEST}", digest), values,
                               flags=re.M)
    assert count == 1, "the workflow's sed no longer finds image.digest in values.yaml"
    image = yaml.safe_load(published)["image"]
    owner_repo = workflow()["env"]["IMAGE"].replace("${{ github.repository_owner }}", "hookfan")
    assert image["repository"] == owner_repo
    expected = f"{owner_repo}:{chart().metadata['appVersion']}@{digest}"
    names = {c["image"] for w in workloads(render({"image": image}))
             for c in containers(w) if c["name"] not in ("redis", "exporter")}
    assert names == {expected}


def test_make_image_builds_the_default_chart_image() -> None:
    # --no-print-directory: under `make test` this make is a sub-make, which would announce
    # the directory it enters and leaves.
    out = subprocess.run(["make", "--no-print-directory", "-n", "image"], capture_output=True,
                         text=True, check=True, cwd=ROOT).stdout
    tag = f"{chart().values['image']['repository']}:{chart().metadata['appVersion']}"
    assert out.strip() == f"docker build -t {tag} ."


def test_tag_pyproject_and_chart_versions_agree() -> None:
    """The workflow refuses a tag whose version is not in both files; they must agree now."""
    pyproject = re.search(r'^version = "(.*)"$', (ROOT / "pyproject.toml").read_text(), re.M)
    assert pyproject
    meta = chart().metadata
    assert pyproject.group(1) == meta["version"] == meta["appVersion"]
    for check in ('grep -qx "version = \\"${version}\\"" pyproject.toml',
                  'grep -qx "version: ${version}" helm/hookfan/Chart.yaml'):
        assert check in scripts("image")
