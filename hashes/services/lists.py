from __future__ import annotations

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
