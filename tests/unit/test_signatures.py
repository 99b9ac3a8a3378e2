"""Signature verification, pure: each provider's scheme against requests signed by that
provider's own library (tests/support/signers.py), and the ways a request fails it."""

from __future__ import annotations

import time

import pytest

from hookfan.signatures import Failed, Passed, Verification, check, secrets_from
from tests.support import signers
from tests.support.signers import SECRETS, SIGNERS, TIMESTAMPED

BODY = b'{"id":"evt_1","type":"thing.happened","data":{"n":1,"s":"\xc3\xa9"}}'
HOST = "hooks.example.com"


OTHER = {p: s + "x" for p, s in SECRETS.items()}
OTHER["standard-webhooks"] = "whsec_b3RoZXItc2VjcmV0LWtleS0zMmJ5dGVzLWxvbmctLQ=="


def verification(provider: str, *secrets: str, tolerance: float = 300.0) -> Verification:
    raw = "\n".join(secrets or (SECRETS[provider],)).encode()
    header = signers.HMAC_HEADER if provider == "hmac-sha256" else ""
    return Verification(provider, secrets_from(provider, raw), header, tolerance)


def verdict(provider: str, headers: list[tuple[str, str]], body: bytes = BODY,
            now: float | None = None, secrets: tuple[str, ...] = (),
            tolerance: float = 300.0) -> Passed | Failed:
    v = verification(provider, *secrets, tolerance=tolerance)
    return check(v, headers, body, time.time() if now is None else now, HOST)


@pytest.mark.parametrize("provider", sorted(SIGNERS))
def test_a_request_signed_by_the_providers_library_passes(provider):
    headers = SIGNERS[provider](BODY)
    signers.official_verify(provider, BODY, headers, SECRETS[provider])
    got = verdict(provider, headers)
    assert isinstance(got, Passed)
    assert (got.replay_key is not None) == (provider in TIMESTAMPED)


@pytest.mark.parametrize("provider", sorted(SIGNERS))
def test_a_request_signed_with_another_secret_is_a_signature_mismatch(provider):
    got = verdict(provider, SIGNERS[provider](BODY, secret=OTHER[provider]))
    assert got == Failed("signature mismatch")


@pytest.mark.parametrize("provider", sorted(SIGNERS))
def test_a_changed_body_is_a_signature_mismatch(provider):
    got = verdict(provider, SIGNERS[provider](BODY), body=BODY.replace(b"1", b"2"))
    assert got == Failed("signature mismatch")


@pytest.mark.parametrize("provider", TIMESTAMPED)
@pytest.mark.parametrize("age", [301, -301])
def test_a_timestamp_outside_the_tolerance_fails(provider, age):
    stamp = int(time.time()) - age
    got = verdict(provider, SIGNERS[provider](BODY, stamp=stamp))
    assert got == Failed("timestamp outside tolerance")
    # Inside a longer tolerance, the same request passes.
    assert isinstance(verdict(provider, SIGNERS[provider](BODY, stamp=stamp),
                              tolerance=600.0), Passed)


@pytest.mark.parametrize("provider,header", [
    ("github", "X-Hub-Signature-256"), ("stripe", "Stripe-Signature"),
    ("slack", "X-Slack-Signature"), ("slack", "X-Slack-Request-Timestamp"),
    ("standard-webhooks", "webhook-id"), ("standard-webhooks", "webhook-timestamp"),
    ("standard-webhooks", "webhook-signature"), ("hmac-sha256", "X-Signature")])
def test_a_missing_header_is_named(provider, header):
    headers = [(n, v) for n, v in SIGNERS[provider](BODY) if n.lower() != header.lower()]
    assert verdict(provider, headers) == Failed(f"missing {header}")


@pytest.mark.parametrize("provider", sorted(SIGNERS))
def test_the_reason_never_holds_the_expected_digest_or_the_secret(provider):
    headers = SIGNERS[provider](BODY, secret=OTHER[provider])
    got = verdict(provider, headers)
    assert isinstance(got, Failed)
    good = SIGNERS[provider](BODY)
    for _, value in good + headers:
        assert value not in got.reason
    assert SECRETS[provider] not in got.reason


@pytest.mark.parametrize("provider", sorted(SIGNERS))
def test_any_of_several_secrets_verifies_rotation(provider):
    old, new = SECRETS[provider], OTHER[provider]
    for secret in (old, new):
        got = verdict(provider, SIGNERS[provider](BODY, secret=secret), secrets=(old, new))
        assert isinstance(got, Passed), secret
    assert isinstance(verdict(provider, SIGNERS[provider](BODY, secret=new), secrets=(old,)),
                      Failed)


def test_stripe_accepts_any_of_several_v1_signatures():
    good = dict(signers.stripe(BODY))["Stripe-Signature"]
    t, v1 = good.split(",")
    header = f"{t},v1={'0' * 64},{v1},v0=abc"
    assert isinstance(verdict("stripe", [("Stripe-Signature", header)]), Passed)
    assert verdict("stripe", [("Stripe-Signature", f"{t},v0=abc")]) == Failed(
        "no v1 signature in Stripe-Signature")


def test_standard_webhooks_accepts_any_of_several_signatures_and_skips_other_versions():
    headers = dict(signers.standard(BODY))
    sig = headers["webhook-signature"]
    headers["webhook-signature"] = f"v1a,abc v1,{'A' * 44} {sig}"
    assert isinstance(verdict("standard-webhooks", list(headers.items())), Passed)
    headers["webhook-signature"] = f"v2,{sig[3:]}"
    assert verdict("standard-webhooks", list(headers.items())) == Failed(
        "no v1 signature in webhook-signature")


def test_a_signature_header_given_twice_fails():
    headers = signers.github(BODY)
    headers.append(headers[-1])
    assert verdict("github", headers) == Failed("X-Hub-Signature-256 given more than once")


@pytest.mark.parametrize("value", ["", "sha1=abc", "sha256=zz", "sha256=\u00e9\u00e9"])
def test_malformed_github_signatures_fail_without_raising(value):
    assert isinstance(verdict("github", [("X-Hub-Signature-256", value)]), Failed)


@pytest.mark.parametrize("provider", TIMESTAMPED)
def test_the_replay_key_is_the_signed_content_and_lives_as_long_as_the_signature(provider):
    now = time.time()
    stamp = int(now) - 100
    headers = SIGNERS[provider](BODY, stamp=stamp)
    first = verdict(provider, headers, now=now)
    again = verdict(provider, headers, now=now + 5)
    other = verdict(provider, SIGNERS[provider](BODY, stamp=stamp + 1), now=now)
    assert isinstance(first, Passed) and isinstance(again, Passed) and isinstance(other, Passed)
    assert first.replay_key == again.replay_key != other.replay_key
    assert 199 <= first.ttl <= 202  # until stamp + 300 s, and a second more


def test_a_stripe_replay_with_one_of_two_signatures_dropped_has_the_same_key():
    header = dict(signers.stripe(BODY))["Stripe-Signature"]
    t, v1 = header.split(",")
    both = check(verification("stripe"), [("Stripe-Signature", f"{t},{v1},v1={'1' * 64}")],
                 BODY, time.time(), HOST)
    one = check(verification("stripe"), [("Stripe-Signature", f"{t},{v1}")], BODY,
                time.time(), HOST)
    assert isinstance(both, Passed) and isinstance(one, Passed)
    assert both.replay_key == one.replay_key


def test_secrets_are_one_per_line_and_standard_webhooks_secrets_are_base64():
    assert secrets_from("github", b" a \n\nb c\r\n") == (b"a", b"b c")
    with pytest.raises(ValueError, match="empty"):
        secrets_from("github", b"\n \n")
    with pytest.raises(ValueError, match="whsec_"):
        secrets_from("standard-webhooks", b"whsec_")


def test_a_verification_never_prints_its_secrets():
    v = verification("github")
    assert GITHUB_SECRET_BYTES not in repr(v).encode()


GITHUB_SECRET_BYTES = signers.GITHUB_SECRET.encode()


def test_standard_webhooks_reads_svix_named_headers_as_svix_does():
    """Svix sends the Standard Webhooks scheme as ``svix-id``/``svix-timestamp``/
    ``svix-signature`` (its library reads either name set; the svix package is not a test
    dependency, so the names are renamed on a request signed by the standardwebhooks library).
    """
    svix = [(n.replace("webhook-", "svix-"), v) for n, v in signers.standard(BODY)]
    assert isinstance(verdict("standard-webhooks", svix), Passed)
    forged = [(n, v[:-4] + "AAA=") if n == "svix-signature" else (n, v) for n, v in svix]
    assert verdict("standard-webhooks", forged) == Failed("signature mismatch")
    # Both sets present: the standard names decide.
    mixed = svix + [(n, v) for n, v in signers.standard(BODY, msg_id="other")
                    if n != "webhook-signature"]
    assert verdict("standard-webhooks", mixed) == Failed("missing webhook-signature")
