"""Sealed signing secrets (``--verify-key-file``): what the operator writes to Redis holds no
secret in any form, only the same key opens it, and a host whose secrets do not open comes
back marked unreadable (the intake then answers 503, never serves it unverified)."""

from __future__ import annotations

import base64
import json

import pytest

from hookfan import signatures
from hookfan.config import RedisSettings, SettingsError
from hookfan.signatures import Verification, derive_key

SECRET = b"gh-secret-0123456789abcdef"
OTHER = b"rotated-secret-fedcba9876543210"
KEY = derive_key(b"k" * 32)


def table() -> dict[str, Verification]:
    return {"a.example.com": Verification("github", (SECRET, OTHER)),
            "b.example.com": Verification("hmac-sha256", (OTHER,), header="X-Sig")}


def test_sealed_map_holds_no_secret_and_opens_with_the_same_key():
    text = signatures.dump(table(), KEY)
    for s in (SECRET, OTHER):
        for form in (s, base64.b64encode(s), s.hex().encode()):
            assert form.decode() not in text
    assert signatures.load(text, KEY) == table()
    # Sealing twice gives different text (a fresh nonce per host and write).
    assert signatures.dump(table(), KEY) != text


def test_without_a_key_the_map_is_in_clear_as_before():
    text = signatures.dump(table())
    assert base64.b64encode(SECRET).decode() in text
    assert signatures.load(text) == table()


@pytest.mark.parametrize("key", [None, derive_key(b"another key of 32 characters...")])
def test_a_process_without_the_operators_key_gets_hosts_marked_unreadable(key):
    loaded = signatures.load(signatures.dump(table(), KEY), key)
    assert set(loaded) == {"a.example.com", "b.example.com"}
    for v in loaded.values():
        assert v.secrets == () and "--verify-key-file" in v.unreadable
    assert loaded["b.example.com"].header == "X-Sig"  # the rest of the entry still reads


def test_sealed_secrets_are_bound_to_their_host():
    wire = json.loads(signatures.dump(table(), KEY))
    wire["a.example.com"]["secrets"], wire["b.example.com"]["secrets"] = (
        wire["b.example.com"]["secrets"], wire["a.example.com"]["secrets"])
    loaded = signatures.load(json.dumps(wire), KEY)
    assert all(v.unreadable for v in loaded.values())


def test_key_file_errors_name_the_flag(tmp_path):
    missing = RedisSettings(verify_key_file=str(tmp_path / "none"))
    with pytest.raises(SettingsError, match="--verify-key-file .*cannot be read"):
        missing.verify_key()
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(SettingsError, match="--verify-key-file .* is empty"):
        RedisSettings(verify_key_file=str(empty)).verify_key()
    given = tmp_path / "key"
    given.write_text("k" * 32 + "\n")  # a Secret mounted with or without a newline: one key
    assert RedisSettings(verify_key_file=str(given)).verify_key() == KEY
    assert RedisSettings().verify_key() is None
