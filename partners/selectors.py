"""Reads of partners and their keys. The auditors' pages (audit.web) decide who may see
them; the API reads the calling partner from its own key."""

from __future__ import annotations

from django.db.models import QuerySet

from partners.models import ApiKey, Partner, SigningKey


def partner_by_name(*, name: str) -> Partner | None:
    return Partner.objects.filter(name=name).first()


def partners_all() -> QuerySet[Partner]:
    """Every partner, by name (a consortium has tens or hundreds, not millions)."""
    return Partner.objects.order_by("name")


def partner_names(*, ids: set[int]) -> dict[int, str]:
    return dict(Partner.objects.filter(id__in=ids).values_list("id", "name"))


def api_keys_of(*, partner: Partner) -> list[ApiKey]:
    """The partner's API keys, newest first, revoked ones too (never their secrets)."""
    return list(ApiKey.objects.filter(partner=partner).order_by("-created_at", "-id"))


def signing_keys_of(*, partner: Partner) -> list[SigningKey]:
    """The partner's signing keys, newest first, revoked ones too."""
    return list(SigningKey.objects.filter(partner=partner).order_by("-created_at", "-id"))
