from hashes.services.erasures import ErasureResult, entry_erase
from hashes.services.feedback import (
    FeedbackResult,
    ResolutionResult,
    feedback_create,
    quarantine_restore,
)
from hashes.services.revocations import (
    RevocationResult,
    revocation_by_administrator,
    revocation_create,
)
from hashes.services.submissions import SubmissionResult, submission_create

__all__ = [
    "ErasureResult",
    "FeedbackResult",
    "ResolutionResult",
    "RevocationResult",
    "SubmissionResult",
    "entry_erase",
    "feedback_create",
    "quarantine_restore",
    "revocation_by_administrator",
    "revocation_create",
    "submission_create",
]
