from hashes.services.erasures import ErasureResult, entry_erase
from hashes.services.revocations import (
    RevocationResult,
    revocation_by_administrator,
    revocation_create,
)
from hashes.services.submissions import SubmissionResult, submission_create

__all__ = [
    "ErasureResult",
    "RevocationResult",
    "SubmissionResult",
    "entry_erase",
    "revocation_by_administrator",
    "revocation_create",
    "submission_create",
]
