"""Views that take an image: hashed in memory, matched or returned, and dropped."""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping
from typing import Any

import msgspec
from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from consortium.api import ConsortiumView
from consortium.errors import (
    HashingBusy,
    ImageCorrupt,
    ImageMissing,
    ImageTooLarge,
    ImageTooManyPixels,
    ImageTruncated,
    LimitOutOfRange,
    MalformedRequest,
    NotAnImage,
)
from consortium.parsers import StrictJSONParser
from consortium_client.hashvalues import ALGORITHMS
from consortium_client.imaging import DIHEDRAL_TRANSFORMS, ImageHashes, ImageRejected, image_hashes
from hashes.matching import HashQuery, QueryResult, match_hashes
from hashes.payloads import hash_item_parse
from hashes.serializers import EntryProvenanceSerializer, quality_is_low, shown_provenance
from hashes.uploads import TOO_LARGE_MARK

_REJECTIONS = {
    "too-large": ImageTooLarge,
    "too-many-pixels": ImageTooManyPixels,
    "not-an-image": NotAnImage,
    "truncated": ImageTruncated,
}


# A slot frees within about a second: hashing one image under the caps costs at most that.
HASHING_RETRY_AFTER_SECONDS = 1


@functools.cache
def _slots(concurrency: int) -> threading.BoundedSemaphore:
    return threading.BoundedSemaphore(concurrency)


def hashing_slots() -> threading.BoundedSemaphore:
    """This process's image hashing slots, IMAGE_HASH_CONCURRENCY of them."""
    return _slots(settings.IMAGE_HASH_CONCURRENCY)


def uploaded_image_hashes(
    request: Request, *, dihedral: bool, canonical: bool = False
) -> ImageHashes:
    """Hash the request's `image` in memory. Its bytes live only in this call's frame.

    At most IMAGE_HASH_CONCURRENCY images are hashed at once in a process; past that a request
    waits up to IMAGE_HASH_WAIT seconds for a slot and is then refused, so that other requests
    still find a thread and a core.
    """
    if getattr(request._request, TOO_LARGE_MARK, False):
        raise ImageTooLarge(f"the image exceeds {settings.IMAGE_MAX_BYTES} bytes")
    upload = request.FILES.get("image")
    if upload is None:
        raise ImageMissing("send the image as the multipart field 'image'")
    slots = hashing_slots()
    try:
        if not slots.acquire(timeout=settings.IMAGE_HASH_WAIT):
            raise HashingBusy(
                f"{settings.IMAGE_HASH_CONCURRENCY} images are being hashed; retry shortly",
                retry_after=HASHING_RETRY_AFTER_SECONDS,
            )
        try:
            return image_hashes(
                upload.read(),
                max_bytes=settings.IMAGE_MAX_BYTES,
                max_pixels=settings.IMAGE_MAX_PIXELS,
                dihedral=dihedral,
                canonical=canonical,
            )
        finally:
            slots.release()
    except ImageRejected as exc:
        raise _REJECTIONS.get(exc.reason, ImageCorrupt)(exc.message) from None
    finally:
        upload.close()


def _flag(request: Request, name: str, *, default: bool = False) -> bool:
    # Multipart form data is a QueryDict: a Mapping, unlike a JSON list body.
    data = request.data
    value = data.get(name) if isinstance(data, Mapping) else None
    if value is None or value == "":
        return default
    text = str(value).lower()
    if text in ("1", "true", "yes"):
        return True
    if text in ("0", "false", "no"):
        return False
    raise MalformedRequest(f"{name} must be true or false", pointer=f"/{name}")


class ImageHashesOut(serializers.Serializer):
    hashes = serializers.DictField(child=serializers.CharField())
    pdq_quality = serializers.IntegerField()
    pdq_dihedral = serializers.DictField(child=serializers.CharField(), allow_null=True)
    format = serializers.CharField()
    width = serializers.IntegerField()
    height = serializers.IntegerField()


def _hashes_body(hashed: ImageHashes) -> dict[str, Any]:
    dihedral = None
    if hashed.pdq_dihedral is not None:
        dihedral = dict(zip(DIHEDRAL_TRANSFORMS, hashed.pdq_dihedral, strict=True))
    return {
        "hashes": hashed.values,
        "pdq_quality": hashed.pdq_quality,
        "pdq_dihedral": dihedral,
        "format": hashed.format,
        "width": hashed.width,
        "height": hashed.height,
    }


class ImageUploadSerializer(serializers.Serializer):
    image = serializers.FileField(help_text="JPEG, PNG, GIF, WebP, BMP or TIFF")
    dihedral = serializers.BooleanField(
        required=False, help_text="also the PDQ hashes of the 8 rotations and mirrors"
    )


class ImageMatchSerializer(ImageUploadSerializer):
    dihedral = serializers.BooleanField(
        required=False,
        default=True,
        help_text="also search the PDQ hashes of the image's 8 rotations and mirrors (and "
        "those of the image without its borders); false to search the image as it is",
    )
    limit = serializers.IntegerField(
        required=False,
        min_value=1,
        help_text="matches per hash, nearest first (MATCH_DEFAULT_LIMIT, at most MATCH_MAX_LIMIT)",
    )
    include_pending = serializers.BooleanField(
        required=False,
        default=False,
        help_text="also match entries awaiting their list's review (each says `pending`); "
        "quarantined entries never match",
    )


class ImageHashesView(ConsortiumView):
    audit_action = "image.hash"
    required_scope = "match"
    parser_classes = [MultiPartParser]

    @extend_schema(
        operation_id="image_hashes",
        request={"multipart/form-data": ImageUploadSerializer},
        responses=ImageHashesOut,
        description="Hash an image in memory with every algorithm and return the hashes. "
        "The image is never stored.",
    )
    def post(self, request: Request) -> Response:
        hashed = uploaded_image_hashes(request, dihedral=_flag(request, "dihedral"))
        self.audit_target = "image"
        self.audit_records = len(hashed.values)
        return Response(_hashes_body(hashed))


class MatchInput(serializers.Serializer):
    class HashIn(serializers.Serializer):
        algorithm = serializers.ChoiceField(choices=list(ALGORITHMS))
        value = serializers.CharField()

    hashes = HashIn(many=True)
    limit = serializers.IntegerField(
        required=False,
        min_value=1,
        help_text="matches per hash, nearest first: MATCH_DEFAULT_LIMIT (10) by default, at "
        "most MATCH_MAX_LIMIT (100), and hashes x limit at most MATCH_MAX_RESULTS (10,000)",
    )
    include_pending = serializers.BooleanField(
        required=False,
        default=False,
        help_text="also match entries awaiting their list's review (each says `pending`); "
        "quarantined entries never match",
    )


class MatchQueryOut(serializers.Serializer):
    algorithm = serializers.CharField()
    value = serializers.CharField()
    quality = serializers.IntegerField(allow_null=True)
    low_quality = serializers.BooleanField()
    transform = serializers.CharField(
        allow_null=True,
        help_text="how the server derived this hash from the image: a dihedral transformation, "
        "canonical (plain borders trimmed) or canonical+<transformation>; null otherwise",
    )


class MatchItemOut(EntryProvenanceSerializer):
    entry = serializers.IntegerField()
    distance = serializers.IntegerField()
    variant = serializers.CharField(
        allow_null=True,
        help_text="the entry's variant that matched (a name of consortium_client.variants."
        "VARIANTS), or null for the entry's own value",
    )
    rule = serializers.CharField(
        help_text="which rule matched: the algorithm (pdq, md5, ...) for the hash as given, "
        "pdq-variant through a variant, pdq-canonical for the query image without its plain "
        "borders, pdq-dihedral for a rotated or mirrored query, vpdq for a video"
    )
    query_share = serializers.FloatField(
        allow_null=True,
        help_text="vpdq: the share (0-1) of the query's frames (of at least the list's quality "
        "floor) within the list's frame distance of a frame of this video; null otherwise",
    )
    stored_share = serializers.FloatField(
        allow_null=True,
        help_text="vpdq: the share (0-1) of this video's frames matched by a query frame; "
        "the distance is then 100 less the smaller share in whole percent",
    )
    pending = serializers.BooleanField(
        help_text="the entry awaits its list's review (only with include_pending)"
    )


class MatchResultOut(serializers.Serializer):
    query = MatchQueryOut()
    matches = MatchItemOut(many=True)
    truncated = serializers.BooleanField(
        help_text="more entries were within reach than `limit`: only the nearest are listed"
    )


class MatchOut(serializers.Serializer):
    results = MatchResultOut(many=True)


class MatchView(ConsortiumView):
    audit_action = "match"
    required_scope = "match"
    parser_classes = [StrictJSONParser, MultiPartParser]

    @extend_schema(
        operation_id="match",
        request={"application/json": MatchInput, "multipart/form-data": ImageMatchSerializer},
        responses=MatchOut,
        description="Match hashes (JSON, at most MATCH_MAX_HASHES) or an image (multipart; "
        "hashed in memory with every algorithm, never stored) against every active entry this "
        "partner may see, within each list's radius for the algorithm. Each hash gets its "
        "nearest `limit` matches (distance, then entry id), `truncated` when there were more. "
        "Entries awaiting their list's review match only with `include_pending`; quarantined "
        "entries never match.",
    )
    def post(self, request: Request) -> HttpResponse:
        limit = _limit(request.data)
        if request.content_type.startswith("multipart/"):
            queries = self._image_queries(request)
            self.audit_target = "image"
        else:
            queries = self._hash_queries(request.data)
            self.audit_target = f"hashes:{len(queries)}"
        if len(queries) * limit > settings.MATCH_MAX_RESULTS:
            most = max(1, settings.MATCH_MAX_RESULTS // len(queries))
            raise LimitOutOfRange(
                f"{len(queries)} hashes x limit {limit} exceeds MATCH_MAX_RESULTS "
                f"({settings.MATCH_MAX_RESULTS}); ask for at most {most} per hash",
                pointer="/limit",
                limit=most,
            )
        # A match costs in proportion to its hashes: the match limits count hashes (a
        # video's frames each), not requests (the request itself counted one, before its
        # body was read).
        self.rate_limit_charge(_query_cost(queries) - 1)
        results = match_hashes(
            partner=self.partner,
            queries=queries,
            limit=limit,
            include_pending=_flag(request, "include_pending"),
        )
        self.audit_records = sum(len(result.matches) for result in results)
        # Encoded here, as MatchOut describes it: up to MATCH_MAX_RESULTS matches of twenty
        # fields each. DRF's renderer (json with a Python hook per date) took 11.6 ms of CPU
        # for 1,000 matches, msgspec 0.7. Dates come out as DRF writes them (RFC 3339, Z).
        body = msgspec.json.encode({"results": [_result_body(result) for result in results]})
        return HttpResponse(body, content_type="application/json")

    def _image_queries(self, request: Request) -> list[HashQuery]:
        # Rotations and mirrors are searched unless the partner opts out: the chosen method
        # of docs/matching.md needs them (mean recall 0.946 with, 0.829 without), and they
        # cost no second pass over the image (bench/match_api.py --images).
        hashed = uploaded_image_hashes(
            request, dihedral=_flag(request, "dihedral", default=True), canonical=True
        )
        queries = [
            HashQuery(algorithm, value, hashed.pdq_quality if algorithm == "pdq" else None)
            for algorithm, value in hashed.values.items()
        ]
        asked = {hashed.values["pdq"]}
        derived = [
            (transform, value)
            for transform, value in zip(
                DIHEDRAL_TRANSFORMS, hashed.pdq_dihedral or [], strict=False
            )
            if transform != "original"
        ]
        # The image without its plain borders (a caption bar, a padded canvas), and turned
        # too when dihedral hashes were asked for: the chosen method of docs/matching.md.
        if hashed.pdq_canonical is not None:
            derived.append(("canonical", hashed.pdq_canonical))
        derived += [
            (f"canonical+{transform}", value)
            for transform, value in zip(
                DIHEDRAL_TRANSFORMS, hashed.pdq_canonical_dihedral or [], strict=False
            )
            if transform != "original"
        ]
        for transform, value in derived:
            # An image without borders is its own canonical image: no query twice.
            if value not in asked:
                asked.add(value)
                queries.append(HashQuery("pdq", value, hashed.pdq_quality, transform))
        return queries

    def _hash_queries(self, data: Any) -> list[HashQuery]:
        items = data.get("hashes") if isinstance(data, dict) else None
        if not isinstance(items, list) or not items:
            raise MalformedRequest("hashes must be a non-empty list", pointer="/hashes")
        if len(items) > settings.MATCH_MAX_HASHES:
            raise MalformedRequest(
                f"at most {settings.MATCH_MAX_HASHES} hashes per request", pointer="/hashes"
            )
        queries = [
            HashQuery(*hash_item_parse(item, f"/hashes/{position}"))
            for position, item in enumerate(items)
        ]
        frames = sum(query.value.count(",") + 1 for query in queries if query.algorithm == "vpdq")
        if frames > settings.MATCH_MAX_FRAMES:
            raise MalformedRequest(
                f"the videos hold {frames} frames; at most {settings.MATCH_MAX_FRAMES} per request",
                pointer="/hashes",
            )
        return queries


def _query_cost(queries: list[HashQuery]) -> int:
    """Hashes matched: one per hash, one per frame of a video."""
    return sum(query.value.count(",") + 1 if query.algorithm == "vpdq" else 1 for query in queries)


def _limit(data: Any) -> int:
    """The request's `limit` (JSON number, or multipart field), checked against the caps."""
    raw = data.get("limit") if isinstance(data, Mapping) else None
    if raw is None or raw == "":
        return int(settings.MATCH_DEFAULT_LIMIT)
    if isinstance(raw, str) and raw.isascii() and raw.isdigit():
        raw = int(raw)
    if not isinstance(raw, int) or isinstance(raw, bool):
        raise MalformedRequest("limit must be an integer", pointer="/limit")
    if not 1 <= raw <= settings.MATCH_MAX_LIMIT:
        raise LimitOutOfRange(
            f"limit must be between 1 and {settings.MATCH_MAX_LIMIT}",
            pointer="/limit",
            limit=settings.MATCH_MAX_LIMIT,
        )
    return raw


def _result_body(result: QueryResult) -> dict[str, Any]:
    query = result.query
    return {
        "query": {
            "algorithm": query.algorithm,
            "value": query.value,
            "quality": query.quality,
            "low_quality": quality_is_low(query.quality),
            "transform": query.transform,
        },
        "matches": [
            {
                "entry": match.entry.id,
                "distance": match.distance,
                "variant": match.variant,
                "rule": match.rule,
                "query_share": None if match.shares is None else match.shares.query_share,
                "stored_share": None if match.shares is None else match.shares.stored_share,
                "pending": match.pending,
                **shown_provenance(match.entry),
            }
            for match in result.matches
        ],
        "truncated": result.truncated,
    }
