from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction

from audit.actors import Actor
from audit.services import access_event_record
from consortium.errors import ConsortiumError, MalformedRequest
from hashes.models import HashList
from partners.models import Partner, SharingGroup
from partners.services import name_clean


class ListExists(ConsortiumError):
    slug = "list-exists"
    title = "A list of that name exists"
    status = 409


@transaction.atomic
def hash_list_create(
    *,
    name: str,
    owner: Partner,
    visibility: str,
    actor: Actor,
    group: SharingGroup | None = None,
    contributors: str = HashList.Contributors.MEMBERS,
    purpose: str = "",
    description: str = "",
) -> HashList:
    """Create a list. A group list names its group; other lists must not."""
    name_clean(HashList, name)
    if (visibility == HashList.Visibility.GROUP) != (group is not None):
        raise MalformedRequest("a list is shared with a group exactly when its visibility is group")
    if HashList.objects.filter(name=name).exists():
        raise ListExists(f"list {name!r} exists")
    hash_list = HashList.objects.create(
        name=name,
        owner=owner,
        visibility=visibility,
        group=group,
        contributors=contributors,
        purpose=purpose,
        description=description,
    )
    access_event_record(
        actor=actor,
        action="list.create",
        status=201,
        target=f"list:{name}",
        detail={"visibility": visibility, "group": group.name if group else None},
    )
    return hash_list


@transaction.atomic
def hash_list_policy_set(
    *,
    hash_list: HashList,
    actor: Actor,
    review_required: bool,
    reviews_needed: int,
    reviewers: list[Partner],
    grades: list[str],
    quarantine_after: int | None,
) -> HashList:
    """Set a list's review and quarantine policy, validated as the admin validates it.

    Applies to what happens next: entries already pending stay pending until confirmed,
    and entries already added without review are not made pending."""
    hash_list.review_required = review_required
    hash_list.reviews_needed = reviews_needed
    hash_list.grades = grades
    hash_list.quarantine_after = quarantine_after
    try:
        hash_list.full_clean()
    except ValidationError as exc:
        raise MalformedRequest("; ".join(exc.messages)) from exc
    hash_list.save(
        update_fields=["review_required", "reviews_needed", "grades", "quarantine_after"]
    )
    hash_list.reviewers.set(reviewers)
    access_event_record(
        actor=actor,
        action="list.policy",
        status=200,
        target=f"list:{hash_list.name}",
        detail={
            "review_required": review_required,
            "reviews_needed": reviews_needed,
            "reviewers": sorted(partner.name for partner in reviewers),
            "grades": grades,
            "quarantine_after": quarantine_after,
        },
    )
    return hash_list
