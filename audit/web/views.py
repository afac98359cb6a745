"""The auditors' pages: server-rendered, each one access event (action `audit.web.*`).

Who may see what is decided once, in audit.web.access; reads go through the selectors.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import urlencode

from django import forms
from django.contrib.auth import logout
from django.db import connection
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseRedirect,
    QueryDict,
    StreamingHttpResponse,
)
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views import View

from audit.actors import Actor
from audit.models import AccessEvent
from audit.selectors import (
    CURSOR_PATTERN,
    AccessEventBrowseFilter,
    access_daily_counts,
    access_event_get,
    access_events_browse,
    access_events_export,
    access_events_export_csv,
    access_export_columns,
    access_key_last_use,
    access_partner_totals,
    access_periods_page,
    access_rollup_mark,
    checkpoint_latest,
    cosigners_latest,
    log_size,
    log_verify_latest,
)
from audit.services import access_event_record
from audit.templatetags.auditor import change as change_text
from audit.web.access import (
    AuditorForbidden,
    AuditorScope,
    AuditorSignInRequired,
    auditor_key_sign_in,
    auditor_scope,
)
from audit.witnesses import witnesses_configured
from hashes.selectors import (
    feedback_given_latest,
    feedback_received_latest,
    lists_owned,
    revocations_latest,
    submissions_latest,
)
from partners.authentication import client_ip
from partners.selectors import (
    api_keys_of,
    partner_by_name,
    partner_names,
    partners_all,
    signing_keys_of,
)

PAGE_DEFAULT = 100
PAGE_MAX = 500
RANGE_DEFAULT_DAYS = 30
RANGE_MAX_DAYS = 366
METRICS = (("requests", "Requests"), ("records", "Records read"), ("refusals", "Refusals"))
# A change shows among the largest only if the bigger of its two sides reaches this many:
# from 1 to 4 is fourfold, and noise.
CHANGE_FLOOR = 10
CHANGES_SHOWN = 5
NO_PARTNER = "(no partner)"


class BadPageInput(Exception):
    """A query parameter the page cannot use: a 400 page naming it."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(errors)
        self.errors = errors


class AuditorPage(View):
    """Resolves the auditor's scope, renders, and records one access event per request
    (after rendering, outside any transaction: a page whose event cannot be written fails
    rather than go unaudited). Subclasses set `audit_action`, and while handling may set
    `audit_target`, `audit_records` and `audit_detail`."""

    audit_action: ClassVar[str]
    http_method_names: ClassVar[list[str]] = ["get", "head"]  # type: ignore[misc]
    scope: AuditorScope

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        self.audit_target = ""
        self.audit_records = 0
        self.audit_detail: dict[str, Any] = {}
        self.access_recorded = False
        try:
            self.scope = auditor_scope(request)
        except AuditorSignInRequired as sign_in:
            query = urlencode({"next": request.get_full_path()})
            login = reverse("admin:login") if sign_in.staff else reverse("auditor-sign-in")
            response: HttpResponseBase = redirect(f"{login}?{query}")
            if sign_in.reason:
                self.audit_detail["signed_out"] = sign_in.reason
            self._record(request, Actor.anonymous(client_ip=client_ip(request)), response)
            return response
        except AuditorForbidden as forbidden:
            response = render(request, "audit/web/refused.html", status=403)
            self._record(request, forbidden.actor, response)
            return response
        try:
            response = super().dispatch(request, *args, **kwargs)
        except Http404:
            response = self.page("audit/web/missing.html", {}, status=404)
        except BadPageInput as bad:
            self.audit_detail["invalid"] = sorted(bad.errors)
            response = self.page("audit/web/bad_input.html", {"errors": bad.errors}, status=400)
        # Shared data: never kept by a browser's or a proxy's cache.
        response["Cache-Control"] = "private, no-store"
        if not self.access_recorded:
            self._record(request, self.scope.actor, response)
        return response

    def page(self, template: str, context: dict[str, Any], status: int = 200) -> HttpResponse:
        return render(self.request, template, {"scope": self.scope, **context}, status=status)

    def record_now(self, status: int) -> None:
        """Record this request's access event before the response is sent (an export)."""
        self._record(self.request, self.scope.actor, HttpResponse(status=status))
        self.access_recorded = True

    def _record(self, request: HttpRequest, actor: Actor, response: HttpResponseBase) -> None:
        access_event_record(
            actor=actor,
            action=self.audit_action,
            status=response.status_code,
            target=self.audit_target,
            records=self.audit_records,
            detail={"method": request.method, "path": request.path, **self.audit_detail},
        )


def _query_without(query: QueryDict, *names: str) -> str:
    kept = query.copy()
    for name in names:
        kept.pop(name, None)
    return kept.urlencode()


# Overview


class OverviewForm(forms.Form):
    start = forms.DateField(required=False, label="From (UTC day)")
    end = forms.DateField(required=False, label="To (UTC day, inclusive)")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        end = data.get("end") or timezone.now().astimezone(UTC).date()
        start = data.get("start") or end - timedelta(days=RANGE_DEFAULT_DAYS - 1)
        if start > end:
            raise forms.ValidationError("The range starts after it ends.")
        if (end - start).days + 1 > RANGE_MAX_DAYS:
            raise forms.ValidationError(f"A range may span at most {RANGE_MAX_DAYS} days.")
        if start.year < 2 or end.year > 9998:
            raise forms.ValidationError("The range is out of bounds.")
        data["start"], data["end"] = start, end
        return data


def _largest_changes(
    totals: dict[int, dict[str, tuple[int, int]]], names: dict[int, str]
) -> list[dict[str, Any]]:
    """The biggest moves between the previous period and this one: ranked by the factor
    of change (a tenfold jump first), each side counted plus one so that 0 to 50 ranks."""
    changes: list[dict[str, Any]] = []
    for partner_id, metrics in totals.items():
        for metric, label in METRICS:
            previous, current = metrics.get(metric, (0, 0))
            if max(previous, current) < CHANGE_FLOOR or previous == current:
                continue
            score = abs(math.log2((current + 1) / (previous + 1)))
            changes.append(
                {
                    "partner_id": partner_id,
                    "partner": names.get(partner_id, NO_PARTNER),
                    "metric": metric,
                    "label": label,
                    "previous": previous,
                    "current": current,
                    "factor": (current / previous) if previous else None,
                    "score": score,
                    "up": current > previous,
                }
            )
    changes.sort(key=lambda change: (-change["score"], change["partner"], change["metric"]))
    return changes[:CHANGES_SHOWN]


class OverviewPage(AuditorPage):
    audit_action = "audit.web.overview"

    def get(self, request: HttpRequest) -> HttpResponse:
        form = OverviewForm(request.GET)
        if not form.is_valid():
            raise BadPageInput({k: [str(m) for m in v] for k, v in form.errors.items()})
        start: date = form.cleaned_data["start"]
        end: date = form.cleaned_data["end"]
        span = (end - start).days + 1
        previous_start = start - timedelta(days=span)
        counts = access_daily_counts(
            first_day=start, last_day=end, partner_id=self.scope.partner_id
        )
        before = access_partner_totals(
            first_day=previous_start,
            last_day=start - timedelta(days=1),
            partner_id=self.scope.partner_id,
        )
        days = [start + timedelta(days=offset) for offset in range(span)]
        position = {day: offset for offset, day in enumerate(days)}
        keys = [metric for metric, _ in METRICS]
        # One pass over the days' rows: each partner's series, its totals (previous period,
        # this one) and every partner's sum per day, as plain lists.
        series: dict[int, list[list[int]]] = {}
        totals: dict[int, list[list[int]]] = {
            partner_id: [[value, 0] for value in values] for partner_id, values in before.items()
        }
        day_sums = [[0] * span for _ in keys]
        for count in counts:
            partner_id = count.partner_id
            lines = series.get(partner_id)
            if lines is None:
                lines = series[partner_id] = [[0] * span for _ in keys]
            sums = totals.get(partner_id)
            if sums is None:
                sums = totals[partner_id] = [[0, 0] for _ in keys]
            offset = position[count.day]
            for index, value in enumerate((count.requests, count.records, count.refusals)):
                lines[index][offset] = value
                sums[index][1] += value
                day_sums[index][offset] += value
        if self.scope.partner is not None:
            totals.setdefault(self.scope.partner.pk, [[0, 0] for _ in keys])
        names = partner_names(ids=set(totals))
        frozen = {
            partner_id: {key: (pair[0], pair[1]) for key, pair in zip(keys, pairs, strict=True)}
            for partner_id, pairs in totals.items()
        }
        changes = _largest_changes(frozen, names)
        flagged = {(change["partner_id"], change["metric"]) for change in changes}
        order = sorted(totals, key=lambda pid: (-totals[pid][0][1], names.get(pid, "~")))
        rows = [
            {
                "partner_id": pid,
                "partner": names.get(pid, NO_PARTNER),
                "cells": [
                    {
                        "metric": key,
                        # Text already: Django's templates localise each number they
                        # print, the largest part of this page's cost at 50 partners.
                        "previous": str(previous),
                        "current": str(current),
                        "flag": " flag" if (pid, key) in flagged else "",
                        "change": change_text(current, previous),
                    }
                    for key, (previous, current) in zip(keys, totals[pid], strict=True)
                ],
            }
            for pid in order
        ]
        daily = [
            {"day": day.isoformat(), **{k: str(day_sums[i][offset]) for i, k in enumerate(keys)}}
            for offset, day in enumerate(days)
        ]
        chart = {
            "days": [day.isoformat() for day in days],
            "metrics": [{"key": metric, "label": label} for metric, label in METRICS],
            "series": [
                {
                    "partner": names.get(pid, NO_PARTNER),
                    **dict(zip(keys, series[pid], strict=True)),
                }
                for pid in order
                if pid in series
            ],
        }
        self.audit_target = f"{start.isoformat()}..{end.isoformat()}"
        self.audit_records = len(counts) + len(before)
        return self.page(
            "audit/web/overview.html",
            {
                "form": form,
                "start": start,
                "end": end,
                "previous_start": previous_start,
                "previous_end": start - timedelta(days=1),
                "metrics": METRICS,
                "rows": rows,
                "changes": changes,
                "daily": daily,
                "chart": chart,
                "rolled_up_to": access_rollup_mark(),
            },
        )


class OverviewExportPage(AuditorPage):
    """The overview's numbers (per UTC day and partner, the range's days only) as CSV or
    JSON lines: what the charts draw, for a spreadsheet or a report."""

    audit_action = "audit.web.overview_export"

    def get(self, request: HttpRequest, export_format: str) -> HttpResponseBase:
        if export_format not in EXPORT_FORMATS:
            raise Http404
        form = OverviewForm(request.GET)
        if not form.is_valid():
            raise BadPageInput({k: [str(m) for m in v] for k, v in form.errors.items()})
        start: date = form.cleaned_data["start"]
        end: date = form.cleaned_data["end"]
        counts = access_daily_counts(
            first_day=start, last_day=end, partner_id=self.scope.partner_id
        )
        names = partner_names(ids={count.partner_id for count in counts})
        rows = [
            (
                count.day.isoformat(),
                names.get(count.partner_id, ""),
                count.requests,
                count.records,
                count.refusals,
            )
            for count in counts
        ]
        self.audit_target = f"{start.isoformat()}..{end.isoformat()}"
        self.audit_records = len(rows)
        self.audit_detail["format"] = export_format
        columns = ["day", "partner", "requests", "records", "refusals"]
        if export_format == "jsonl":
            body = "".join(
                json.dumps(dict(zip(columns, row, strict=True)), separators=(",", ":")) + "\n"
                for row in rows
            )
        else:
            body = "".join(csv_lines(rows, columns))
        response = HttpResponse(body, content_type=EXPORT_FORMATS[export_format])
        response["Content-Disposition"] = (
            f'attachment; filename="access-overview-{start}-{end}.{export_format}"'
        )
        return response


# The access-event browser


def _browse_filters(page: AuditorPage, query: QueryDict) -> AccessEventBrowseFilter:
    """The request's filters, validated, within the auditor's scope: naming another
    partner answers 404 to a partner's auditor, as for a partner that does not exist."""
    filters = AccessEventBrowseFilter(query, queryset=AccessEvent.objects.all())
    if not filters.is_valid():
        raise BadPageInput({k: [str(m) for m in v] for k, v in filters.errors.items()})
    named = filters.form.cleaned_data.get("partner")
    scope = page.scope
    if named and scope.partner is not None and named != scope.partner.name:
        raise Http404
    return filters


class EventsPage(AuditorPage):
    audit_action = "audit.web.events"

    def get(self, request: HttpRequest) -> HttpResponse:
        filters = _browse_filters(self, request.GET)
        raw_limit = request.GET.get("limit", str(PAGE_DEFAULT))
        if not CURSOR_PATTERN.fullmatch(raw_limit) or not 1 <= int(raw_limit) <= PAGE_MAX:
            raise BadPageInput({"limit": [f"must be a whole number from 1 to {PAGE_MAX}"]})
        page = access_events_browse(
            filters=filters, partner_id=self.scope.partner_id, limit=int(raw_limit)
        )
        self.audit_target = request.GET.urlencode()[:255]
        self.audit_records = len(page.events)
        base = _query_without(request.GET, "before")
        next_query = None
        if page.next_cursor is not None:
            next_query = (f"{base}&" if base else "") + f"before={page.next_cursor}"
        return self.page(
            "audit/web/events.html",
            {
                "filters": filters,
                "form": filters.form,
                "events": page.events,
                "next_query": next_query,
                "first_query": base if request.GET.get("before") else None,
                "export_query": _query_without(request.GET, "before", "limit"),
                "limit": raw_limit,
            },
        )


class EventPage(AuditorPage):
    audit_action = "audit.web.event"

    def get(self, request: HttpRequest, event_id: int) -> HttpResponse:
        self.audit_target = f"access_event:{event_id}"
        event = access_event_get(event_id=event_id, partner_id=self.scope.partner_id)
        if event is None:
            raise Http404
        self.audit_records = 1
        return self.page(
            "audit/web/event.html",
            {"event": event, "detail_json": json.dumps(event.detail, indent=2, sort_keys=True)},
        )


# Exports


class _Echo:
    def write(self, value: str) -> str:
        return value


# A spreadsheet runs a cell that starts with one of these as a formula; the export's cells
# come partly from what callers sent (targets, paths), so such a cell is prefixed with '.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
ROWS_PER_WRITE = 500


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return _utc_text(value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def csv_lines(rows: Iterable[tuple[Any, ...]], names: list[str]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    buffer = [writer.writerow(names)]
    for row in rows:
        buffer.append(writer.writerow([_cell(value) for value in row]))
        if len(buffer) >= ROWS_PER_WRITE:
            yield "".join(buffer)
            buffer = []
    if buffer:
        yield "".join(buffer)


def jsonl_lines(lines: Iterable[str]) -> Iterator[str]:
    buffer = []
    for line in lines:
        buffer.append(line)
        if len(buffer) >= ROWS_PER_WRITE:
            yield "\n".join(buffer) + "\n"
            buffer = []
    if buffer:
        yield "\n".join(buffer) + "\n"


EXPORT_FORMATS = {
    "csv": "text/csv; charset=utf-8",
    "jsonl": "application/jsonl; charset=utf-8",
}


class ExportPage(AuditorPage):
    """Every event of a filtered view (all pages, newest first) as CSV or JSON lines,
    streamed in keyset chunks. Recorded before the first byte is sent: an export that
    breaks off midway is audited all the same."""

    audit_action = "audit.web.export"

    def get(self, request: HttpRequest, export_format: str) -> HttpResponseBase:
        if export_format not in EXPORT_FORMATS:
            raise Http404
        filters = _browse_filters(self, request.GET)
        self.audit_target = request.GET.urlencode()[:255]
        self.audit_detail["format"] = export_format
        self.record_now(200)
        as_json = export_format == "jsonl"
        body: Iterator[str] | Iterator[bytes]
        if not as_json and connection.vendor == "postgresql":
            header = csv_lines([], list(access_export_columns()))
            body = itertools.chain(
                (text.encode() for text in header),
                access_events_export_csv(filters=filters, partner_id=self.scope.partner_id),
            )
        else:
            rows = access_events_export(
                filters=filters, partner_id=self.scope.partner_id, as_json=as_json
            )
            body = jsonl_lines(rows) if as_json else csv_lines(rows, list(access_export_columns()))
        response = StreamingHttpResponse(body, content_type=EXPORT_FORMATS[export_format])
        stamp = timezone.now().astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        response["Content-Disposition"] = (
            f'attachment; filename="access-events-{stamp}.{export_format}"'
        )
        return response


# Partners


class PartnersPage(AuditorPage):
    audit_action = "audit.web.partners"

    def get(self, request: HttpRequest) -> HttpResponseBase:
        if self.scope.partner is not None:
            return redirect("auditor-partner", name=self.scope.partner.name)
        partners = list(partners_all())
        self.audit_records = len(partners)
        return self.page("audit/web/partners.html", {"partners": partners})


SHOWN_LATEST = 20


class PartnerPage(AuditorPage):
    audit_action = "audit.web.partner"

    def get(self, request: HttpRequest, name: str) -> HttpResponse:
        self.audit_target = f"partner:{name}"[:255]
        partner = partner_by_name(name=name)
        if partner is None or not self.scope.allows(partner):
            raise Http404
        keys = api_keys_of(partner=partner)
        last_use = access_key_last_use(prefixes=[key.prefix for key in keys])
        submissions = submissions_latest(partner=partner, limit=SHOWN_LATEST)
        revocations = revocations_latest(partner=partner, limit=SHOWN_LATEST)
        given = feedback_given_latest(partner=partner, limit=SHOWN_LATEST)
        received = feedback_received_latest(partner=partner, limit=SHOWN_LATEST)
        signing_keys = signing_keys_of(partner=partner)
        lists = list(lists_owned(partner=partner))
        self.audit_records = (
            len(keys)
            + len(signing_keys)
            + len(lists)
            + len(submissions)
            + len(revocations)
            + len(given)
            + len(received)
        )
        return self.page(
            "audit/web/partner.html",
            {
                "partner": partner,
                "keys": [(key, last_use.get(key.prefix)) for key in keys],
                "signing_keys": signing_keys,
                "lists": lists,
                "submissions": submissions,
                "revocations": revocations,
                "feedback_given": given,
                "feedback_received": received,
                "shown_latest": SHOWN_LATEST,
                "now": timezone.now(),
            },
        )


# Log health


class LogHealthPage(AuditorPage):
    audit_action = "audit.web.log"

    def get(self, request: HttpRequest) -> HttpResponse:
        raw_before = request.GET.get("before")
        if raw_before is not None and not CURSOR_PATTERN.fullmatch(raw_before):
            raise BadPageInput({"before": ["must be a period number (ASCII digits)"]})
        before = None if raw_before is None else int(raw_before)
        periods, next_before = access_periods_page(before=before, limit=SHOWN_LATEST)
        checkpoint = checkpoint_latest()
        now = timezone.now()
        cosigners = cosigners_latest(
            witnesses=[w.name for w in witnesses_configured()], partner_id=self.scope.partner_id
        )
        self.audit_records = len(periods) + len(cosigners) + (1 if checkpoint else 0)
        return self.page(
            "audit/web/log.html",
            {
                "size": log_size(),
                "checkpoint": checkpoint,
                "checkpoint_age": (now - checkpoint.created_at) if checkpoint else None,
                "cosigners": [
                    (state, (now - state.last.created_at) if state.last else None)
                    for state in cosigners
                ],
                "verify": log_verify_latest(),
                "periods": periods,
                "next_before": next_before,
            },
        )


# Signing in and out


class SignInForm(forms.Form):
    api_key = forms.CharField(
        label="API key with the audit scope",
        max_length=200,
        strip=True,
        widget=forms.PasswordInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )


def _next_url(request: HttpRequest, raw: str | None) -> str:
    if raw and url_has_allowed_host_and_scheme(
        raw, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return raw
    return reverse("auditor-overview")


class SignInPage(View):
    """A partner's auditor signs in with an API key; staff are sent to the admin's login."""

    http_method_names: ClassVar[list[str]] = ["get", "head", "post"]  # type: ignore[misc]

    def get(self, request: HttpRequest) -> HttpResponse:
        return self._page(request, SignInForm(), status=200)

    def post(self, request: HttpRequest) -> HttpResponseBase:
        form = SignInForm(request.POST)
        address = client_ip(request)
        if not form.is_valid():
            return self._page(request, form, status=400)
        api_key, prefix, reason = auditor_key_sign_in(request, form.cleaned_data["api_key"])
        if api_key is None:
            access_event_record(
                actor=Actor.anonymous(key_prefix=prefix, client_ip=address),
                action="audit.web.sign_in",
                status=401,
                detail={"method": "POST", "path": request.path, "auth_failure": reason},
            )
            form.add_error(
                None,
                "This key cannot sign in here: unknown, expired, revoked, "
                "without the audit scope, or not usable from this address.",
            )
            return self._page(request, form, status=401)
        access_event_record(
            actor=Actor.for_api_key(api_key, client_ip=address),
            action="audit.web.sign_in",
            status=302,
            detail={"method": "POST", "path": request.path},
        )
        return HttpResponseRedirect(_next_url(request, request.GET.get("next")))

    def _page(self, request: HttpRequest, form: SignInForm, *, status: int) -> HttpResponse:
        next_url = _next_url(request, request.GET.get("next"))
        admin_login = f"{reverse('admin:login')}?{urlencode({'next': next_url})}"
        response = render(
            request,
            "audit/web/sign_in.html",
            {"form": form, "admin_login": admin_login, "next": next_url},
            status=status,
        )
        response["Cache-Control"] = "private, no-store"
        return response


class SignOutPage(View):
    http_method_names: ClassVar[list[str]] = ["post"]  # type: ignore[misc]

    def post(self, request: HttpRequest) -> HttpResponseBase:
        try:
            actor = auditor_scope(request).actor
        except (AuditorSignInRequired, AuditorForbidden):
            actor = Actor.anonymous(client_ip=client_ip(request))
        access_event_record(
            actor=actor,
            action="audit.web.sign_out",
            status=302,
            detail={"method": "POST", "path": request.path},
        )
        logout(request)  # flushes the session: a staff user's or a partner key's
        return redirect("auditor-sign-in")
