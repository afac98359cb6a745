"""Writes about partners and their keys. Each one records its access event, and each
change other partners must learn of (signing keys, suspensions) its log event, in the same
transaction."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from datetime import datetime
from typing import Any, cast

from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.utils import timezone

from audit.actors import Actor
from audit.services import EventDraft, access_event_record, log_append
from consortium.errors import ConsortiumError, MalformedRequest
from consortium_client import leaves
from consortium_client.keys import KeyFormatError, key_id, public_key_load, public_key_raw
from partners.apikeys import apikey_digest, apikey_generate
from partners.models import ApiKey, Partner, SharingGroup, SigningKey

ALL_SCOPES = tuple(ApiKey.Scope.values)


class InvalidPublicKey(ConsortiumError):
    slug = "invalid-public-key"
    title = "The public key is not a valid Ed25519 key"


class SigningKeyExists(ConsortiumError):
    slug = "signing-key-exists"
    title = "This signing key is already registered"
    status = 409


def _status(created: bool) -> int:
    return 201 if created else 200


def name_clean(model: type[models.Model], name: str) -> str:
    """Check `name` against the model's `name` field (a slug, of bounded length).

    Names appear in log leaves, actor labels and targets (`partner:<name>`); the ORM alone
    would store anything, so every service that creates a named row checks it here.
    """
    field = cast("models.Field[Any, Any]", model._meta.get_field("name"))
    try:
        field.run_validators(name)
    except ValidationError as exc:
        raise MalformedRequest(f"name {name!r}: {exc.messages[0]}", pointer="/name") from exc
    return name


@transaction.atomic
def partner_onboard(
    *, name: str, display_name: str, kind: str, actor: Actor, activate: bool = True
) -> Partner:
    """Create a partner, active at once unless `activate` is false (then pending)."""
    name_clean(Partner, name)
    status = Partner.Status.ACTIVE if activate else Partner.Status.PENDING
    partner = Partner.objects.create(name=name, display_name=display_name, kind=kind, status=status)
    access_event_record(actor=actor, action="partner.onboard", status=201, target=name)
    return partner


def _partner_status_set(
    *, partner: Partner, status: str, event_type: str, reason: str, actor: Actor
) -> Partner:
    partner = Partner.objects.select_for_update(no_key=True).get(pk=partner.pk)
    if partner.status == status:
        return partner
    previous = partner.status
    partner.status = status
    partner.save(update_fields=["status"])
    # Suspensions and reactivations are logged for every partner to see; the first
    # activation of a pending partner is an onboarding step, recorded as access only.
    first_activation = previous == Partner.Status.PENDING and status == Partner.Status.ACTIVE
    if not first_activation:
        log_append(
            drafts=[
                EventDraft(
                    event_type,
                    {"partner": partner.name, "by": actor.label, "reason": reason},
                    partner_id=partner.pk,
                )
            ]
        )
    access_event_record(
        actor=actor,
        action=f"partner.{status}",
        status=200,
        target=partner.name,
        detail={"reason": reason, "previous": previous},
    )
    return partner


@transaction.atomic
def partner_suspend(*, partner: Partner, reason: str, actor: Actor) -> Partner:
    """Suspend a partner: its keys stop working at once; its entries stay, attributed."""
    return _partner_status_set(
        partner=partner,
        status=Partner.Status.SUSPENDED,
        event_type=leaves.PARTNER_SUSPENDED,
        reason=reason,
        actor=actor,
    )


@transaction.atomic
def partner_activate(*, partner: Partner, reason: str, actor: Actor) -> Partner:
    """Activate a pending partner or reactivate a suspended one (logged when reactivated)."""
    return _partner_status_set(
        partner=partner,
        status=Partner.Status.ACTIVE,
        event_type=leaves.PARTNER_REACTIVATED,
        reason=reason,
        actor=actor,
    )


def scopes_clean(scopes: Iterable[str]) -> list[str]:
    cleaned = sorted(set(scopes))
    unknown = [scope for scope in cleaned if scope not in ALL_SCOPES]
    if unknown or not cleaned:
        raise MalformedRequest(f"scopes must be a non-empty subset of {', '.join(ALL_SCOPES)}")
    return cleaned


def networks_clean(networks: Iterable[str]) -> list[str]:
    try:
        return [str(ipaddress.ip_network(network.strip(), strict=False)) for network in networks]
    except ValueError as exc:
        raise MalformedRequest(f"not a network: {exc}") from exc


def apikey_secret_assign(api_key: ApiKey) -> str:
    """Give an unsaved key its prefix and digest; return the full key, shown only once."""
    prefix, full_key = apikey_generate()
    api_key.prefix = prefix
    api_key.digest = apikey_digest(full_key)
    return full_key


@transaction.atomic
def apikey_create(
    *,
    partner: Partner,
    scopes: Iterable[str],
    actor: Actor,
    name: str = "",
    expires_at: datetime | None = None,
    allowed_networks: Iterable[str] = (),
) -> tuple[ApiKey, str]:
    """Issue an API key. Returns the key row and the full key, which is never stored."""
    api_key = ApiKey(
        partner=partner,
        name=name,
        scopes=scopes_clean(scopes),
        expires_at=expires_at,
        allowed_networks=networks_clean(allowed_networks),
    )
    full_key = apikey_secret_assign(api_key)
    api_key.save()
    access_event_record(
        actor=actor,
        action="apikey.create",
        status=201,
        target=f"{partner.name}:{api_key.prefix}",
        detail={"scopes": api_key.scopes},
    )
    return api_key, full_key


@transaction.atomic
def apikey_revoke(*, api_key: ApiKey, actor: Actor) -> ApiKey:
    """Revoke a key with immediate effect. Revoking twice changes nothing."""
    api_key = ApiKey.objects.select_for_update(no_key=True).get(pk=api_key.pk)
    created = api_key.revoked_at is None
    if created:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
    access_event_record(
        actor=actor,
        action="apikey.revoke",
        status=_status(created),
        target=f"{api_key.partner.name}:{api_key.prefix}",
    )
    return api_key


@transaction.atomic
def signing_key_register(
    *, partner: Partner, public_key: str | bytes, actor: Actor, name: str = ""
) -> SigningKey:
    """Register an Ed25519 public key (PEM or base64 of 32 raw bytes) and log it."""
    try:
        key = public_key_load(public_key)
    except KeyFormatError as exc:
        raise InvalidPublicKey(str(exc)) from exc
    identifier = key_id(key)
    if SigningKey.objects.filter(key_id=identifier).exists():
        raise SigningKeyExists(f"key {identifier} is already registered")
    raw = public_key_raw(key)
    signing_key = SigningKey.objects.create(
        partner=partner, key_id=identifier, public_key=raw, name=name
    )
    log_append(
        drafts=[
            EventDraft(
                leaves.SIGNING_KEY_REGISTERED,
                {
                    "partner": partner.name,
                    "key": identifier,
                    "public_key": raw.hex(),
                    "by": actor.label,
                },
                partner_id=partner.pk,
            )
        ]
    )
    access_event_record(
        actor=actor,
        action="signing_key.register",
        status=201,
        target=f"{partner.name}:{identifier}",
    )
    return signing_key


@transaction.atomic
def signing_key_revoke(*, signing_key: SigningKey, actor: Actor, reason: str = "") -> SigningKey:
    """Revoke a signing key: nothing signed with it is accepted from now on. Logged."""
    signing_key = SigningKey.objects.select_for_update(no_key=True).get(pk=signing_key.pk)
    created = signing_key.revoked_at is None
    if created:
        signing_key.revoked_at = timezone.now()
        signing_key.save(update_fields=["revoked_at"])
        log_append(
            drafts=[
                EventDraft(
                    leaves.SIGNING_KEY_REVOKED,
                    {
                        "partner": signing_key.partner.name,
                        "key": signing_key.key_id,
                        "by": actor.label,
                        "reason": reason,
                    },
                    partner_id=signing_key.partner_id,
                )
            ]
        )
    access_event_record(
        actor=actor,
        action="signing_key.revoke",
        status=_status(created),
        target=f"{signing_key.partner.name}:{signing_key.key_id}",
    )
    return signing_key


@transaction.atomic
def sharing_group_set(*, name: str, members: list[Partner], actor: Actor) -> SharingGroup:
    """Create the group `name` or replace its members. Changes who sees its lists at once."""
    name_clean(SharingGroup, name)
    group, created = SharingGroup.objects.get_or_create(name=name)
    group.members.set(members)
    access_event_record(
        actor=actor,
        action="sharing_group.set",
        status=_status(created),
        target=name,
        detail={"members": [partner.name for partner in members]},
    )
    return group
