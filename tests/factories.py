from __future__ import annotations

import factory

from hashes.models import HashList
from partners.models import Partner, SharingGroup


class PartnerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Partner

    name = factory.Sequence(lambda n: f"partner-{n}")
    display_name = factory.LazyAttribute(lambda o: o.name.title())
    status = Partner.Status.ACTIVE


class SharingGroupFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SharingGroup

    name = factory.Sequence(lambda n: f"group-{n}")


class HashListFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = HashList

    name = factory.Sequence(lambda n: f"list-{n}")
    owner = factory.SubFactory(PartnerFactory)
    visibility = HashList.Visibility.ALL
