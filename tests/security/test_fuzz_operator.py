"""Fuzzing the operator's inputs: RequestClone objects through the pure core (what the
Kubernetes source feeds it), and malformed YAML through the file source. Whatever users write,
the operator keeps running: every RequestClone gets a condition, no exception escapes."""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from hookfan.operator import files
from hookfan.operator.kubesource import to_clone, to_service
from hookfan.operator.model import API_VERSION, KIND
from hookfan.operator.resolve import HOST_POLICIES, resolve

FUZZ = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

json_scalars = st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(
    allow_nan=True) | st.text(max_size=40)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=4),
                           max_leaves=12)
names = st.text(string.ascii_lowercase + string.digits + "-.", min_size=1, max_size=20) | st.text(
    max_size=20)
hosts = st.sampled_from(["a.example.com", "A.EXAMPLE.COM:443", "b.example.com", "", " ",
                         "*.example.com", "a.example.com.", "[::1]:80", "é.example.com"]) | st.text(
    max_size=30)
ports = st.integers(-5, 70000) | st.sampled_from(["http", "80", "0", "", "https", " 8080 "]) | (
    json_values)


@st.composite
def specs(draw: st.DrawFn) -> Any:
    """Mostly the right shape with wrong contents, sometimes anything at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    backend = {"serviceName": draw(names | json_values), "servicePort": draw(ports)}
    if draw(st.booleans()):
        backend.update(draw(st.dictionaries(st.text(max_size=10), json_values, max_size=2)))
    spec: dict[str, Any] = {"host": draw(hosts | json_values), "backend": draw(
        st.just(backend) | json_values)}
    if draw(st.booleans()):
        spec.update(draw(st.dictionaries(st.text(max_size=10), json_values, max_size=2)))
    return spec


@st.composite
def api_objects(draw: st.DrawFn) -> dict[str, Any]:
    """As the API server hands them out: metadata well-typed (it validates that), spec not
    necessarily (objects stored before a schema change, or a CRD without validation)."""
    meta = {"name": draw(names), "namespace": draw(st.sampled_from(["apps", "other", "ns-3"])),
            "generation": draw(st.integers(1, 10**6)),
            "creationTimestamp": draw(st.sampled_from(
                ["2024-01-01T00:00:01Z", "2024-01-01T00:00:02Z", "2023-12-31T23:59:59Z"]))}
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": meta, "spec": draw(specs())}


@st.composite
def services(draw: st.DrawFn) -> dict[str, Any]:
    ports = draw(st.lists(st.fixed_dictionaries({
        "name": st.sampled_from(["http", "https", "", "metrics"]),
        "port": st.integers(1, 65535), "targetPort": st.integers(1, 65535) | st.text(max_size=8)}),
        max_size=3))
    return {"metadata": {"name": draw(names), "namespace": draw(st.sampled_from(
        ["apps", "other"]))}, "spec": {"clusterIP": draw(st.sampled_from(
            ["10.0.0.1", "None", "", "fd00::1"])), "ports": ports}}


@FUZZ
@given(objs=st.lists(api_objects(), max_size=6), svcs=st.lists(services(), max_size=4),
       policy=st.sampled_from(HOST_POLICIES))
def test_any_requestclone_gets_a_condition_and_nothing_raises(objs, svcs, policy):
    clones = [to_clone(o) for o in objs]
    by_key = {(s.namespace, s.name): s for s in map(to_service, svcs)}
    result = resolve(clones, by_key, policy)
    keys = {f"{o['metadata']['namespace']}/{o['metadata']['name']}" for o in objs}
    assert set(result.conditions) == keys
    for cond in result.conditions.values():
        assert cond.reason and cond.message
    ready = {k for k, c in result.conditions.items() if c.ready}
    for c in result.conditions.values():
        event(c.reason)
    routed = {b.route for backends in result.table.routes.values() for b in backends}
    assert routed == ready
    for backends in result.table.routes.values():
        for b in backends:
            assert b.url.startswith("http://")


yaml_lines = st.lists(st.sampled_from([
    "apiVersion: proxy.infra.doodle.com/v1beta1", "kind: RequestClone", "---", "metadata:",
    "  name: x", "  namespace: [1, 2]", "metadata: 7", "spec:", "  host: a.example.com",
    "  host: [", "  backend: {serviceName: s, servicePort: http}", "  backend: {{{",
    "  backend:", "    servicePort: -1", "    serviceName: !!python/object:os.system x",
    "&a [*a]", "!!binary ZZZ", "? complex key", "%YAML 9.9", "\t- tab", "spec: null", "...",
    "  backend: {serviceName: s, servicePort: 99999999999999999999}", "a: &x {b: *x}",
    "  creationTimestamp: 2024-01-01T00:00:00Z", "  generation: 3"]), max_size=14).map("\n".join)


@st.composite
def clone_yaml(draw: st.DrawFn) -> str:
    """A RequestClone document with arbitrary values where a file's author may put them."""
    import yaml
    meta = draw(st.fixed_dictionaries({"name": names | json_values}, optional={
        "namespace": names | json_values, "generation": st.integers() | json_values,
        "creationTimestamp": json_values}))
    doc = {"apiVersion": API_VERSION, "kind": KIND, "metadata": meta, "spec": draw(specs())}
    return str(yaml.safe_dump(doc))


yaml_texts = st.one_of(st.text(max_size=300),
                       st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
                       yaml_lines, clone_yaml())


def load_dir(root: Path, docs: list[str], raw: bytes) -> tuple[list[Any], list[Any]]:
    for i, text in enumerate(docs):
        (root / f"r{i}.yaml").write_text(text, encoding="utf-8", errors="surrogateescape")
    (root / "ns").mkdir()
    (root / "ns" / "raw.yml").write_bytes(raw)
    return files.load(root)


@FUZZ
@given(docs=st.lists(yaml_texts, min_size=1, max_size=3), raw=st.binary(max_size=64))
@example(docs=["when: 2024-13-45"], raw=b"")  # once a crash: PyYAML raised ValueError
def test_the_file_source_never_raises_on_malformed_yaml(tmp_path_factory, docs, raw):
    clones, rejected = load_dir(tmp_path_factory.mktemp("fuzzroutes"), docs, raw)
    event(f"clones={min(len(clones), 1)} rejected={min(len(rejected), 1)}")
    for r in rejected:
        assert r.reason
    for clone in clones:
        assert isinstance(clone.namespace, str) and "{" not in clone.namespace
        try:
            files.backend_for(clone, {})
        except files.InvalidSpec as exc:
            assert str(exc)


CLONE = ("apiVersion: proxy.infra.doodle.com/v1beta1\nkind: RequestClone\n"
         "metadata: {{name: x{meta}}}\nspec: {{host: a.example.com, "
         "backend: {{serviceName: s, servicePort: 80}}}}\n{extra}")


@pytest.mark.parametrize("text", [
    "a: 2024-13-45", "when: 2001-02-30", "0: !!timestamp", "a: !!int abc", "a: !!float .",
    "a: !!bool maybe", CLONE.format(meta=", generation: abc", extra=""),
    CLONE.format(meta="", extra="note: 2024-13-45\n")], ids=lambda t: t[:30])
def test_known_malformed_files_are_rejected_not_raised(tmp_path, text):
    clones, rejected = load_dir(tmp_path, [text], b"")
    assert clones == [] or rejected


def test_a_dict_as_namespace_is_rejected_not_used(tmp_path):
    text = CLONE.format(meta=", namespace: {a: 1}", extra="")
    clones, rejected = load_dir(tmp_path, [text], b"")
    assert [c.namespace for c in clones] in ([], ["default"]) or rejected
