"""Requests signed the way each provider signs them, by that provider's own Python library.

- Stripe: ``stripe.WebhookSignature.generate_signature_header`` (stripe-python's helper for
  tests).
- Slack: ``slack_sdk.signature.SignatureVerifier.generate_signature``.
- Standard Webhooks: ``standardwebhooks.Webhook.sign`` (the spec's reference library).
- GitHub publishes no Python library (its own SDK, Octokit, has none for Python):
  ``githubkit``, a community GitHub SDK for Python, signs with ``githubkit.webhooks.sign``
  (GitHub's documented ``sha256=`` scheme).
- hmac-sha256 is hookfan's generic scheme and has no provider: ``hmac`` from the stdlib.

Each returns the header lines a sender would add.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from datetime import UTC, datetime

Headers = list[tuple[str, str]]

GITHUB_SECRET = "gh-secret-\u00e9t\u00e9"
STRIPE_SECRET = "whsec_" + "stripe0123456789abcdef"
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
STANDARD_SECRET = "whsec_" + base64.b64encode(b"standard-webhooks-secret-key-32b").decode()
HMAC_SECRET = "plain-hmac-secret"
HMAC_HEADER = "X-Signature"

SECRETS = {"github": GITHUB_SECRET, "stripe": STRIPE_SECRET, "slack": SLACK_SECRET,
           "standard-webhooks": STANDARD_SECRET, "hmac-sha256": HMAC_SECRET}


def github(body: bytes, secret: str = GITHUB_SECRET, stamp: int | None = None) -> Headers:
    from githubkit.webhooks import sign
    return [("X-GitHub-Event", "push"), ("X-GitHub-Delivery", os.urandom(8).hex()),
            ("X-Hub-Signature-256", sign(secret, body, "sha256"))]


def stripe(body: bytes, secret: str = STRIPE_SECRET, stamp: int | None = None) -> Headers:
    import stripe as lib
    header = lib.WebhookSignature.generate_signature_header(
        body.decode(), secret, timestamp=stamp if stamp is not None else int(time.time()))
    return [("Stripe-Signature", header)]


def slack(body: bytes, secret: str = SLACK_SECRET, stamp: int | None = None) -> Headers:
    from slack_sdk.signature import SignatureVerifier
    ts = str(stamp if stamp is not None else int(time.time()))
    sig = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
    assert sig is not None
    return [("X-Slack-Request-Timestamp", ts), ("X-Slack-Signature", sig)]


def standard(body: bytes, secret: str = STANDARD_SECRET, stamp: int | None = None,
             msg_id: str | None = None) -> Headers:
    from standardwebhooks import Webhook
    ts = stamp if stamp is not None else int(time.time())
    msg_id = msg_id or "msg_" + os.urandom(8).hex()
    sig = Webhook(secret).sign(msg_id, datetime.fromtimestamp(ts, tz=UTC), body.decode())
    return [("webhook-id", msg_id), ("webhook-timestamp", str(ts)), ("webhook-signature", sig)]


def plain_hmac(body: bytes, secret: str = HMAC_SECRET, stamp: int | None = None) -> Headers:
    return [(HMAC_HEADER, hmac.new(secret.encode(), body, hashlib.sha256).hexdigest())]


SIGNERS = {"github": github, "stripe": stripe, "slack": slack, "standard-webhooks": standard,
           "hmac-sha256": plain_hmac}
TIMESTAMPED = ("stripe", "slack", "standard-webhooks")


def official_verify(provider: str, body: bytes, headers: Headers, secret: str) -> None:
    """The provider library's own verification of what it signed (raises if it fails): the
    signers above are checked against their verifiers too."""
    h = dict(headers)
    if provider == "stripe":
        import stripe as lib
        lib.WebhookSignature.verify_header(body.decode(), h["Stripe-Signature"], secret, 300)
    elif provider == "slack":
        from slack_sdk.signature import SignatureVerifier
        assert SignatureVerifier(secret).is_valid(body, h["X-Slack-Request-Timestamp"],
                                                  h["X-Slack-Signature"])
    elif provider == "standard-webhooks":
        from standardwebhooks import Webhook
        Webhook(secret).verify(body, h, json_parse=False)
    elif provider == "github":
        from githubkit.webhooks import verify
        assert verify(secret, body, h["X-Hub-Signature-256"])
