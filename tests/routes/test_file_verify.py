"""``spec.verify`` in the file source: ``secretFile`` relative to the YAML file, and every way
verify cannot be applied skips the RequestClone with a reason (the file source's Ready=False),
never a crash and never the host served unverified."""

from __future__ import annotations

from pathlib import Path

from hookfan.operator.files import load
from hookfan.operator.filesource import file_table

DOC = """\
apiVersion: proxy.infra.doodle.com/v1beta1
kind: RequestClone
metadata: {name: %(name)s}
spec:
  host: h.example.com
  backend: {serviceName: svc-%(name)s, servicePort: 80}
%(verify)s"""


def clone(name: str, verify: str = "") -> str:
    return DOC % {"name": name, "verify": f"  verify: {verify}\n" if verify else ""}


def table_of(root: Path):  # type: ignore[no-untyped-def]
    clones, rejected = load(root)
    table, unresolved = file_table(clones, {})
    return table, [(r.name, r.reason) for r in rejected + unresolved]


def test_a_relative_secret_file_is_read_next_to_the_yaml(tmp_path: Path) -> None:
    (tmp_path / "apps").mkdir()
    (tmp_path / "apps" / "gh.secret").write_text("one\ntwo\n")
    (tmp_path / "apps" / "r.yaml").write_text(
        clone("a", "{provider: github, secretFile: gh.secret}"))
    table, skipped = table_of(tmp_path)
    assert skipped == []
    assert table.verify["h.example.com"].secrets == (b"one", b"two")
    assert "one" not in table.to_json()


def test_secret_ref_missing_file_and_bad_values_skip_the_clone_with_a_reason(
        tmp_path: Path) -> None:
    cases = {
        "ref": ("{provider: github, secretRef: {name: s, key: k}}", "secretRef needs Kubernetes"),
        "gone": ("{provider: slack, secretFile: /nonexistent/slack}", "cannot be read"),
        "hmac": ("{provider: hmac-sha256, secretFile: x}", "needs the name of the header"),
        "tol": ("{provider: github, secretFile: x, tolerance: 5m}", "signs no timestamp"),
        "typo": ("{provider: gitlab, secretFile: x}", "'gitlab' is not one of"),
    }
    for name, (verify, _) in cases.items():
        root = tmp_path / name
        root.mkdir()
        (root / "r.yaml").write_text(clone(name, verify))
        table, skipped = table_of(root)
        assert table.routes == {}, name
        assert len(skipped) == 1 and cases[name][1] in skipped[0][1], (name, skipped)


def test_an_empty_standard_webhooks_secret_is_invalid(tmp_path: Path) -> None:
    (tmp_path / "s").write_text("\n")
    (tmp_path / "r.yaml").write_text(clone("a", "{provider: standard-webhooks, secretFile: s}"))
    table, skipped = table_of(tmp_path)
    assert table.routes == {} and skipped == [("default/a", "InvalidSecret: secret file "
                                                f"{tmp_path / 's'}: the secret is empty; "
                                                "requests for host h.example.com get 503 until "
                                                "it is fixed")]


def test_clones_of_one_host_that_disagree_keep_the_first_and_skip_the_other(
        tmp_path: Path) -> None:
    (tmp_path / "s").write_text("k")
    (tmp_path / "r.yaml").write_text("---\n".join([
        clone("a", "{provider: github, secretFile: s}"), clone("b")]))
    table, skipped = table_of(tmp_path)
    assert [b.route for b in table.routes["h.example.com"]] == ["default/a"]
    assert "h.example.com" in table.verify
    assert len(skipped) == 1 and skipped[0][0] == "default/b"
    assert skipped[0][1].startswith("VerifyConflict: spec.verify differs from that of default/a")
