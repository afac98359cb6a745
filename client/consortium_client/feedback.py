"""Feedback: a partner's signed verdict on another partner's entry, and what verdicts add up to.

Pure rules shared by the server (which applies them) and partners (who can recompute an
entry's status from the `entry_feedback` events of their feed). docs/formats.md describes
the payload; docs/api.md the status rule.
"""

from __future__ import annotations

from collections.abc import Mapping

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consortium_client.dsse import FEEDBACK_PAYLOAD_TYPE, envelope_sign

AGREE = "agree"
DISAGREE = "disagree"
FALSE_POSITIVE = "false_positive"
VERDICTS = (AGREE, DISAGREE, FALSE_POSITIVE)
NEGATIVE_VERDICTS = (DISAGREE, FALSE_POSITIVE)

# The reason codes each verdict may carry. A verdict names exactly one.
REASONS: Mapping[str, tuple[str, ...]] = {
    # The entry is what its labels say (a reviewer may add a grade from the list's scale).
    AGREE: ("confirmed_abusive", "confirmed_label"),
    # The entry should not be shared as it is.
    DISAGREE: ("not_abusive", "wrong_label", "wrong_category", "low_quality_hash"),
    # The entry matched content that is not what its labels say.
    FALSE_POSITIVE: ("matched_benign_content", "not_abusive", "low_quality_hash"),
}
REASON_CODES = tuple(sorted({reason for reasons in REASONS.values() for reason in reasons}))

# A note is for people, and may be erased on request: it is signed, never in the log.
NOTE_MAX = 2000

# The aggregate status of an entry (`feedback_status`).
CONFIRMED = "confirmed"
DISPUTED = "disputed"
PENDING = "pending"


def feedback_status(*, agree: int, negative: int, review: str | None) -> str | None:
    """An entry's status from its current verdicts and its review state.

    - `disputed`: a positive (an `agree`, or a confirmation by the list's review policy) and
      a negative verdict (`disagree` or `false_positive`) are both current;
    - `pending`: otherwise, while the list's review policy has not confirmed it;
    - `confirmed`: otherwise, when it was agreed with or confirmed;
    - None: no verdict, or only negative ones, on an entry that needs no review.
    """
    positive = agree > 0 or review == CONFIRMED
    if positive and negative > 0:
        return DISPUTED
    if review == PENDING:
        return PENDING
    if positive:
        return CONFIRMED
    return None


def feedback_envelope(
    *,
    entry: int,
    verdict: str,
    reason: str,
    private_key: Ed25519PrivateKey,
    note: str | None = None,
    grade: str | None = None,
) -> bytes:
    """A signed verdict on `entry` (checked here as the server checks it, so a client learns
    of a bad verdict before it signs)."""
    from consortium_client.payloads import _stamp

    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}")
    if reason not in REASONS[verdict]:
        raise ValueError(f"a {verdict} verdict takes a reason of {', '.join(REASONS[verdict])}")
    if grade is not None and verdict != AGREE:
        raise ValueError("only an agree verdict carries a grade")
    if note is not None and len(note) > NOTE_MAX:
        raise ValueError(f"a note is at most {NOTE_MAX} characters")
    payload: dict[str, object] = {"entry": entry, "verdict": verdict, "reason": reason}
    if note:
        payload["note"] = note
    if grade is not None:
        payload["grade"] = grade
    return envelope_sign(FEEDBACK_PAYLOAD_TYPE, _stamp(payload), private_key)
