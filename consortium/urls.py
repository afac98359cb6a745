from django.contrib import admin
from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from audit import views as audit_views
from consortium.errors import (
    ConsortiumError,
    InternalError,
    MalformedRequest,
    NotFound,
    as_consortium_error,
    problem_json_response,
)
from consortium.health import healthz
from hashes import image_views
from hashes import views as hashes_views
from partners import views as partners_views
from webhooks import views as webhooks_views

api_v1 = [
    path("me", partners_views.MeView.as_view(), name="me"),
    path("lists", hashes_views.ListsView.as_view(), name="lists"),
    path("submissions", hashes_views.SubmissionsView.as_view(), name="submissions"),
    path(
        "submissions/<int:submission_id>/envelope",
        hashes_views.SubmissionEnvelopeView.as_view(),
        name="submission-envelope",
    ),
    path("entries/<int:entry_id>", hashes_views.EntryDetailView.as_view(), name="entry"),
    path(
        "entries/<int:entry_id>/feedback",
        hashes_views.FeedbackView.as_view(),
        name="entry-feedback",
    ),
    path(
        "entries/<int:entry_id>/quarantine/resolution",
        hashes_views.QuarantineResolutionView.as_view(),
        name="entry-quarantine-resolution",
    ),
    path("revocations", hashes_views.RevocationsView.as_view(), name="revocations"),
    path(
        "revocations/<int:revocation_id>/envelope",
        hashes_views.RevocationEnvelopeView.as_view(),
        name="revocation-envelope",
    ),
    path("feed", hashes_views.FeedView.as_view(), name="feed"),
    path("match", image_views.MatchView.as_view(), name="match"),
    path("hashes", image_views.ImageHashesView.as_view(), name="image-hashes"),
    path("audit/events", audit_views.AccessEventsView.as_view(), name="audit-events"),
    path("audit/periods", audit_views.AccessPeriodsView.as_view(), name="audit-periods"),
    path(
        "audit/periods/<int:number>",
        audit_views.AccessPeriodDetailView.as_view(),
        name="audit-period",
    ),
    path("log/key", audit_views.LogKeyView.as_view(), name="log-key"),
    path("log/checkpoint", audit_views.CheckpointView.as_view(), name="log-checkpoint"),
    path("log/entries", audit_views.LogEntriesView.as_view(), name="log-entries"),
    path("log/proofs/inclusion", audit_views.InclusionProofView.as_view(), name="log-inclusion"),
    path(
        "log/proofs/consistency",
        audit_views.ConsistencyProofView.as_view(),
        name="log-consistency",
    ),
    path("log/cosignatures", audit_views.CosignaturesView.as_view(), name="log-cosignatures"),
    # C2SP tlog-tiles: <prefix>/checkpoint, <prefix>/tile/<L>/<N>[.p/<W>], .../tile/entries/...
    path("log/tile/<path:tile_path>", audit_views.LogTileView.as_view(), name="log-tile"),
    path("webhooks", webhooks_views.WebhooksView.as_view(), name="webhooks"),
    path("webhooks/<int:webhook_id>", webhooks_views.WebhookDetailView.as_view(), name="webhook"),
    path(
        "webhooks/<int:webhook_id>/deliveries",
        webhooks_views.WebhookDeliveriesView.as_view(),
        name="webhook-deliveries",
    ),
    path(
        "webhooks/<int:webhook_id>/test",
        webhooks_views.WebhookTestView.as_view(),
        name="webhook-test",
    ),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
]

urlpatterns = [
    path("api/v1/", include(api_v1)),
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
]


def _problem(error: ConsortiumError, request: HttpRequest) -> JsonResponse:
    return problem_json_response(error, instance=request.path)


def handler400(request: HttpRequest, exception: Exception) -> JsonResponse:
    # Reached by SuspiciousOperation raised outside DRF's handling (a non-API path, or
    # Django reading the body before a view): problem+json there too, never an HTML page.
    error = as_consortium_error(exception) or MalformedRequest("the request cannot be read")
    return _problem(error, request)


def handler404(request: HttpRequest, exception: Exception) -> JsonResponse:
    return _problem(NotFound(f"nothing at {request.path}"), request)


def handler500(request: HttpRequest) -> JsonResponse:
    return _problem(InternalError("the server failed; the error is logged"), request)
