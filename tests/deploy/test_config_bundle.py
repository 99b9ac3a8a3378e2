"""config/ (manifests for users without Helm) is generated from the chart and must not go stale."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from .chart import ROOT

SCRIPT = ROOT / "scripts" / "gen-config.py"
CONFIG = ROOT / "config"


def gen(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)


def test_config_is_up_to_date_with_the_chart() -> None:
    done = gen("--check")
    assert done.returncode == 0, done.stderr


def test_check_notices_an_edited_a_missing_and_an_extra_file(tmp_path: Path) -> None:
    copy = tmp_path / "config"
    shutil.copytree(CONFIG, copy)
    (copy / "manager" / "deployment_hookfan-app.yaml").write_text("edited\n")
    (copy / "rbac" / "role_hookfan-operator.yaml").unlink()
    (copy / "crd" / "leftover.yaml").write_text("{}\n")
    done = gen("--check", "--out", str(copy))
    assert done.returncode == 1
    assert "stale: manager/deployment_hookfan-app.yaml" in done.stderr
    assert "missing: rbac/role_hookfan-operator.yaml" in done.stderr
    assert "extra: crd/leftover.yaml" in done.stderr


def test_generator_rewrites_a_stale_tree(tmp_path: Path) -> None:
    out = tmp_path / "config"
    assert gen("--out", str(out)).returncode == 0
    assert gen("--check", "--out", str(out)).returncode == 0


def test_crd_in_config_is_byte_identical_to_the_package_crd() -> None:
    assert (CONFIG / "crd" / "requestclone.yaml").read_bytes() == \
        (ROOT / "hookfan" / "crd.yaml").read_bytes()
    assert (CONFIG / "crd" / "receiver.yaml").read_bytes() == \
        (ROOT / "hookfan" / "receiver_crd.yaml").read_bytes()


def test_every_kustomization_lists_exactly_its_directory() -> None:
    for kfile in CONFIG.glob("*/kustomization.yaml"):
        listed = set(yaml.safe_load(kfile.read_text())["resources"])
        present = {p.name for p in kfile.parent.iterdir() if p.name != "kustomization.yaml"}
        assert listed == present, kfile
    top = yaml.safe_load((CONFIG / "kustomization.yaml").read_text())["resources"]
    assert top == ["crd", "rbac", "manager"]  # monitoring needs the Prometheus Operator: opt-in


def test_bundle_has_no_helm_bookkeeping_and_no_generated_secret() -> None:
    for f in CONFIG.rglob("*.yaml"):
        text = f.read_text()
        assert "helm.sh/chart" not in text and "managed-by: Helm" not in text, f
        for doc in yaml.safe_load_all(text):
            assert not doc or doc.get("kind") != "Secret", f
