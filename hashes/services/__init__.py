from hashes.services.revocations import (
    RevocationResult,
    revocation_by_administrator,
    revocation_create,
)
from hashes.services.submissions import SubmissionResult, submission_create

__all__ = [
    "RevocationResult",
    "SubmissionResult",
    "revocation_by_administrator",
    "revocation_create",
    "submission_create",
]
