"""Template helpers of the auditors' pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString

register = template.Library()
TIMES, MINUS = "\N{MULTIPLICATION SIGN}", "\N{MINUS SIGN}"


@register.simple_tag
def moment(value: datetime | None) -> SafeString | str:
    """A moment as UTC text in a <time> element; auditor.js shows it in the viewer's time
    zone with the UTC text on hover. Without JavaScript the UTC text stays."""
    if value is None:
        return "—"
    utc = value.astimezone(UTC)
    return format_html(
        '<time datetime="{}" title="{} UTC">{} UTC</time>',
        utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        utc.strftime("%Y-%m-%d %H:%M:%S"),
        utc.strftime("%Y-%m-%d %H:%M:%S"),
    )


@register.filter
def age(value: timedelta | None) -> str:
    """A duration as an auditor reads it: 42 s, 5 min, 3 h 20 min, 12 days."""
    if value is None:
        return "—"
    seconds = int(value.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} days"


@register.filter
def change(current: int, previous: int) -> str:
    """How `current` compares with `previous`: a factor from twofold up (x3.2, shown with
    a multiplication sign), a percentage below (-40 %, with a minus sign), +12 (from 0)."""
    if current == previous:
        return "="
    if previous == 0:
        return f"+{current} (from 0)"
    ratio = current / previous
    if ratio >= 2:
        return f"{TIMES}{ratio:.1f}"
    return f"{(ratio - 1) * 100:+.0f} %".replace("-", MINUS)
