"""Webhook signatures interoperate with an independent Standard Webhooks implementation (the
`standardwebhooks` package): it verifies what the server signs, and the client library's
verifier accepts what it signs."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks import Webhook, WebhookVerificationError

from consortium_client.webhooks import (
    WebhookSignatureError,
    webhook_headers,
    webhook_secret_new,
    webhook_secret_parse,
    webhook_secret_text,
    webhook_verify,
)


@given(
    body=st.text(max_size=200),
    message_id=st.from_regex(r"msg_[0-9]{1,6}_[0-9]{1,9}", fullmatch=True),
)
def test_standardwebhooks_verifies_what_the_server_signs(body: str, message_id: str) -> None:
    secret = webhook_secret_new()
    data = body.encode("utf-8")
    headers = webhook_headers(secret=secret, message_id=message_id, body=data)

    assert Webhook(webhook_secret_text(secret)).verify(data, headers, json_parse=False) is None


def test_standardwebhooks_refuses_a_changed_body_id_or_secret() -> None:
    secret = webhook_secret_new()
    body = b'{"type":"entry.added"}'
    headers = webhook_headers(secret=secret, message_id="msg_1_7", body=body)
    verifier = Webhook(webhook_secret_text(secret))
    with pytest.raises(WebhookVerificationError):
        verifier.verify(body + b" ", headers)
    with pytest.raises(WebhookVerificationError):
        verifier.verify(body, {**headers, "webhook-id": "msg_1_8"})
    with pytest.raises(WebhookVerificationError):
        Webhook(webhook_secret_text(webhook_secret_new())).verify(body, headers)
    stale = webhook_headers(
        secret=secret, message_id="msg_1_7", body=body, timestamp=int(time.time()) - 3600
    )
    with pytest.raises(WebhookVerificationError):
        verifier.verify(body, stale)


def test_the_client_verifier_accepts_what_standardwebhooks_signs() -> None:
    secret_text = webhook_secret_text(webhook_secret_new())
    body = '{"type":"entry.revoked","data":{}}'
    now = datetime.now(UTC)
    signature = Webhook(secret_text).sign("msg_3_42", now, body)
    headers = {
        "Webhook-Id": "msg_3_42",
        "Webhook-Timestamp": str(int(now.timestamp())),
        "Webhook-Signature": f"v1,bm90LXRoaXMtb25l {signature}",
    }
    secret = webhook_secret_parse(secret_text)

    assert webhook_verify(secret=secret, headers=headers, body=body.encode()) == "msg_3_42"
    with pytest.raises(WebhookSignatureError):
        webhook_verify(secret=secret, headers=headers, body=body.encode() + b"\n")
    with pytest.raises(WebhookSignatureError):
        webhook_verify(secret=secret, headers=headers, body=body.encode(), now=time.time() + 600)
    with pytest.raises(WebhookSignatureError):
        webhook_verify(secret=secret, headers={"webhook-id": "x"}, body=body.encode())


def test_a_secret_is_whsec_and_base64_of_32_bytes() -> None:
    secret = webhook_secret_new()
    text = webhook_secret_text(secret)

    assert text.startswith("whsec_")
    assert webhook_secret_parse(text) == secret
    assert len(secret) == 32
    with pytest.raises(WebhookSignatureError):
        webhook_secret_parse("whsec_not base64!")
