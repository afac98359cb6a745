"""One exception hierarchy, rendered as RFC 9457 problem details.

Each refusal has a stable `type` (`urn:consortium:problem:<slug>`) that clients branch on;
the `detail` is for people and may change. `docs/problems.md` lists every type.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import (
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

logger = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:consortium:problem:"


class ConsortiumError(Exception):
    slug: str = "error"
    title: str = "Request failed"
    status: int = status.HTTP_400_BAD_REQUEST

    def __init__(self, detail: str | None = None, **extensions: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extensions = extensions

    @property
    def type(self) -> str:
        return TYPE_PREFIX + self.slug


def _error(slug: str, title: str, http_status: int) -> type[ConsortiumError]:
    name = "".join(part.capitalize() for part in slug.split("-")) + "Error"
    return type(name, (ConsortiumError,), {"slug": slug, "title": title, "status": http_status})


# Authentication and authorization.
AuthenticationRequired = _error("authentication-required", "An API key is required", 401)
InvalidApiKey = _error("invalid-api-key", "The API key is not valid", 401)
InsufficientScope = _error("insufficient-scope", "The API key lacks the required scope", 403)
# Input.
MalformedRequest = _error("malformed-request", "The request is malformed", 400)
MalformedEnvelope = _error("malformed-envelope", "The envelope is malformed", 400)
InvalidBase64 = _error("invalid-base64", "A field is not valid base64", 400)
InvalidSignature = _error("invalid-signature", "The envelope signature is not valid", 400)
WrongPayloadType = _error("wrong-payload-type", "The envelope has the wrong payload type", 400)
InvalidPayload = _error("invalid-payload", "The signed payload is not valid", 400)
UnknownAlgorithm = _error("unknown-algorithm", "The hash algorithm is not supported", 400)
InvalidHashValue = _error("invalid-hash-value", "The hash value is not valid", 400)
EmptyBatch = _error("empty-batch", "The batch has no entries", 400)
BatchTooLarge = _error("batch-too-large", "The batch has too many entries", 413)
RequestTooLarge = _error("request-too-large", "The request body is too large", 413)
TooManyFiles = _error("too-many-files", "The request carries too many files", 400)
TooManyFields = _error("too-many-fields", "The request carries too many form fields", 400)
DuplicateInBatch = _error("duplicate-in-batch", "The batch names the same hash twice", 400)
UnknownVariant = _error(
    "unknown-variant", "The entry names a variant this server does not know", 400
)
DuplicateVariant = _error("duplicate-variant", "The entry names the same variant twice", 400)
TooManyVariants = _error("too-many-variants", "The entry carries too many variants", 400)
CommitmentMismatch = _error(
    "commitment-mismatch", "A value and salt do not open the entry's signed commitment", 400
)
LegacyPayloadVersion = _error(
    "legacy-payload-version",
    "Version 1 submissions, which sign the values themselves, are no longer accepted",
    400,
)
InvalidCursor = _error("invalid-cursor", "The cursor is not valid", 400)
StaleEnvelope = _error(
    "stale-envelope", "The envelope's signed timestamp is outside the accepted window", 400
)
LimitOutOfRange = _error("limit-out-of-range", "The limit is outside the allowed range", 400)
# State.
UnknownList = _error("unknown-list", "No such list is visible to this partner", 404)
ListNotWritable = _error("list-not-writable", "This partner may not submit to the list", 403)
EntryExists = _error("entry-exists", "This partner already has the hash active in the list", 409)
UnknownEntry = _error("unknown-entry", "No such entry is visible to this partner", 404)
UnknownSubmission = _error(
    "unknown-submission", "No such submission is visible to this partner", 404
)
UnknownRevocation = _error(
    "unknown-revocation", "No such signed revocation is visible to this partner", 404
)
UnknownAccessPeriod = _error("unknown-access-period", "No such access period is sealed", 404)
NotEntrySubmitter = _error(
    "not-entry-submitter", "Only the entry's submitter may revoke it or resolve its quarantine", 403
)
FeedbackOnOwnEntry = _error(
    "feedback-on-own-entry", "A partner cannot give feedback on its own entry", 403
)
UnknownGrade = _error("unknown-grade", "The grade is not on the list's grade scale", 400)
EntryNotQuarantined = _error("entry-not-quarantined", "The entry is not quarantined", 409)
EntryErased = _error("entry-erased", "The entry was erased", 409)
EntryAlreadyRevoked = _error("entry-already-revoked", "The entry is already revoked", 409)
NonceReused = _error(
    "nonce-reused", "This partner already signed another statement with this nonce", 409
)
SignedBeforeRevocation = _error(
    "signed-before-revocation",
    "The hash was revoked after this envelope was signed; only a newer signature re-adds it",
    409,
)
# The verifiable log.
UnknownLogEvent = _error("unknown-log-event", "No such log event is visible to this partner", 404)
UnknownTreeSize = _error("unknown-tree-size", "The log has no tree of this size yet", 404)
UnknownCheckpoint = _error(
    "unknown-checkpoint", "The note is not a checkpoint this log has signed", 404
)
InvalidCosignature = _error(
    "invalid-cosignature",
    "The cosignature is malformed, does not verify, or is not by an active signing key",
    400,
)
WrongCosignerName = _error(
    "wrong-cosigner-name", "A cosignature must carry the calling partner's name", 400
)
# Webhooks.
UnknownWebhook = _error("unknown-webhook", "No such webhook subscription of this partner", 404)
WebhookUrlRefused = _error(
    "webhook-url-refused", "The webhook URL is not a target the server may request", 400
)
UnknownWebhookEventType = _error(
    "unknown-webhook-event-type", "The webhook event type is not one the server sends", 400
)
TooManyWebhooks = _error(
    "too-many-webhooks", "The partner has as many webhook subscriptions as allowed", 409
)
ImageMissing = _error("image-missing", "No image was sent", 400)
ImageTooLarge = _error("image-too-large", "The image is too large", 413)
NotAnImage = _error("not-an-image", "The upload is not an accepted image format", 415)
ImageTooManyPixels = _error("image-too-many-pixels", "The image has too many pixels", 422)
ImageTruncated = _error("image-truncated", "The image is truncated", 422)
ImageCorrupt = _error("image-corrupt", "The image cannot be decoded", 422)
HashingBusy = _error("hashing-busy", "Every image hashing slot is busy", 429)
NotFound = _error("not-found", "Not found", 404)
MethodNotAllowed = _error("method-not-allowed", "Method not allowed", 405)
NotAcceptable = _error("not-acceptable", "No acceptable response format", 406)
UnsupportedMediaType = _error("unsupported-media-type", "Unsupported media type", 415)
Throttled = _error("throttled", "Too many requests", 429)
InternalError = _error("internal-error", "Internal server error", 500)

_DRF_EQUIVALENTS: list[tuple[type[Exception], type[ConsortiumError]]] = [
    (exceptions.NotAuthenticated, AuthenticationRequired),
    (exceptions.AuthenticationFailed, InvalidApiKey),
    (exceptions.PermissionDenied, InsufficientScope),
    (exceptions.ParseError, MalformedRequest),
    (exceptions.ValidationError, MalformedRequest),
    (exceptions.NotFound, NotFound),
    (Http404, NotFound),
    (exceptions.MethodNotAllowed, MethodNotAllowed),
    (exceptions.NotAcceptable, NotAcceptable),
    (exceptions.UnsupportedMediaType, UnsupportedMediaType),
    (exceptions.Throttled, Throttled),
]


def problem_types() -> list[type[ConsortiumError]]:
    """Every refusal defined so far (apps define some of their own), by status then slug."""
    found: set[type[ConsortiumError]] = set()
    pending = [ConsortiumError]
    while pending:
        for sub in pending.pop().__subclasses__():
            found.add(sub)
            pending.append(sub)
    return sorted(found, key=lambda problem: (problem.status, problem.slug))


def problem_body(error: ConsortiumError, *, instance: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": error.type,
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
    }
    if instance:
        body["instance"] = instance
    body.update(error.extensions)
    return _utf8_safe(body)


def _utf8_safe(value: Any) -> Any:
    """`value` with every lone surrogate spelt as its escape (`\\ud800`). A problem may quote
    what a hostile client sent, and a surrogate cannot be encoded as UTF-8: rendering it
    would turn a refusal into a 500."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_utf8_safe(key): _utf8_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_utf8_safe(item) for item in value]
    return value


def problem_headers(error: ConsortiumError) -> dict[str, str]:
    """The headers a problem carries besides its body, wherever it is answered."""
    headers = {}
    if error.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="consortium"'
    if error.status == 429 and "retry_after" in error.extensions:
        headers["Retry-After"] = str(error.extensions["retry_after"])
    return headers


def problem_response(error: ConsortiumError, *, instance: str | None = None) -> Response:
    """A problem answered by a DRF view."""
    response = Response(
        problem_body(error, instance=instance), status=error.status, headers=problem_headers(error)
    )
    response.content_type = PROBLEM_CONTENT_TYPE
    return response


def problem_json_response(error: ConsortiumError, *, instance: str | None = None) -> JsonResponse:
    """The same problem answered outside DRF (middleware, Django's error handlers)."""
    return JsonResponse(
        problem_body(error, instance=instance),
        status=error.status,
        content_type=PROBLEM_CONTENT_TYPE,
        headers=problem_headers(error),
    )


def _suspicious_request(exc: SuspiciousOperation) -> ConsortiumError:
    # Django raises these while reading a body (DRF reads lazily, inside the view), and
    # would answer with its HTML 400 page; each cap gets its own problem type instead.
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return RequestTooLarge(f"the body exceeds {limit} bytes", limit=limit)
    if isinstance(exc, TooManyFilesSent):
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FILES
        return TooManyFiles(f"the request carries more than {limit} file(s)", limit=limit)
    if isinstance(exc, TooManyFieldsSent):
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
        return TooManyFields(f"the request carries more than {limit} form fields", limit=limit)
    return MalformedRequest("the request cannot be read")


def as_consortium_error(exc: Exception) -> ConsortiumError | None:
    if isinstance(exc, ConsortiumError):
        return exc
    if isinstance(exc, SuspiciousOperation):
        return _suspicious_request(exc)
    for drf_class, ours in _DRF_EQUIVALENTS:
        if isinstance(exc, drf_class):
            detail = getattr(exc, "detail", None)
            return ours(_detail_text(detail) if detail is not None else None)
    return None


def _detail_text(detail: Any) -> str:
    if isinstance(detail, dict):
        field, messages = next(iter(detail.items()))
        return f"{field}: {_detail_text(messages)}"
    if isinstance(detail, list):
        return _detail_text(detail[0]) if detail else ""
    return str(detail)


def problem_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    error = as_consortium_error(exc)
    if error is None:
        response = exception_handler(exc, context)
        if response is not None:
            return response
        # A bug, not a refusal. Answered here rather than by Django's handler500 so that the
        # view still writes its access event (status 500): a failed request is audited too.
        logger.error("unhandled error in %s", context.get("view"), exc_info=exc)
        error = InternalError("the server failed; the error is logged")
    request = context.get("request")
    return problem_response(error, instance=request.path if request is not None else None)
