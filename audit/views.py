from __future__ import annotations

import re
from typing import Any

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_serializer,
)
from rest_framework import serializers
from rest_framework.parsers import BaseParser
from rest_framework.request import Request
from rest_framework.response import Response

from audit.selectors import (
    CURSOR_PATTERN,
    AccessEventFilter,
    access_events_page,
    access_period_get,
    access_periods_page,
    checkpoint_latest,
    checkpoint_note,
    log_entries,
    log_event_visible,
    log_index_of_leaf_hash,
    log_size,
)
from audit.services import COSIGNATURE_MAX_BYTES, cosignatures_add, log_vkey
from audit.tree import tile_read, tree_consistency_proof, tree_inclusion_proof
from consortium.api import ConsortiumView
from consortium.errors import (
    MalformedRequest,
    NotFound,
    RequestTooLarge,
    UnknownAccessPeriod,
    UnknownLogEvent,
    UnknownTreeSize,
)
from consortium_client import merkle, notes
from partners.models import Partner

PAGE_MAX = 1000


class AccessEventsView(ConsortiumView):
    audit_action = "audit.read"
    required_scope = "audit"

    @extend_schema_serializer(component_name="AccessEventPage")
    class OutputSerializer(serializers.Serializer):
        class EventOut(serializers.Serializer):
            id = serializers.IntegerField()
            time = serializers.DateTimeField()
            actor = serializers.CharField()
            partner = serializers.CharField(source="partner.name", allow_null=True)
            key_prefix = serializers.CharField()
            user = serializers.CharField(source="user.get_username", allow_null=True)
            action = serializers.CharField()
            target = serializers.CharField()
            records = serializers.IntegerField()
            status = serializers.IntegerField()
            client_ip = serializers.IPAddressField(allow_null=True)
            detail = serializers.DictField()

        events = EventOut(many=True)
        next = serializers.CharField(allow_null=True, help_text="pass as `before` to go on")

    @extend_schema(
        operation_id="audit_events",
        parameters=[
            OpenApiParameter("partner", str),
            OpenApiParameter("action", str),
            OpenApiParameter(
                "since", str, description="ISO 8601, inclusive; offset ±15:59 at most"
            ),
            OpenApiParameter(
                "until", str, description="ISO 8601, exclusive; offset ±15:59 at most"
            ),
            OpenApiParameter("before", int, description="cursor"),
            OpenApiParameter("after_id", int, description="only ids above this one"),
            OpenApiParameter("last_id", int, description="only ids up to this one"),
            OpenApiParameter("limit", int, description=f"1 to {PAGE_MAX}"),
        ],
        responses=OutputSerializer,
        description=(
            "Access events of every partner, newest first. Needs the audit scope. With "
            "`after_id` and `last_id` of a sealed period, the period's events: each event "
            "is what `consortium_client.accesslog.access_event_encode` encodes."
        ),
    )
    def get(self, request: Request) -> Response:
        filters = AccessEventFilter(request.query_params)
        if not filters.is_valid():
            field, messages = next(iter(filters.errors.items()))
            raise MalformedRequest(f"{field}: {messages[0]}", parameter=field)
        limit = _limit(request)
        page = access_events_page(filters=filters, limit=limit)
        self.audit_records = len(page.events)
        self.audit_target = request.query_params.urlencode()[:255]
        next_cursor = None if page.next_cursor is None else str(page.next_cursor)
        return Response(self.OutputSerializer({"events": page.events, "next": next_cursor}).data)


def _limit(request: Request) -> int:
    raw_limit = request.query_params.get("limit", "100")
    if not CURSOR_PATTERN.fullmatch(raw_limit):
        raise MalformedRequest("limit must be an integer", parameter="limit")
    limit = int(raw_limit)
    if not 1 <= limit <= PAGE_MAX:
        raise MalformedRequest(f"limit must be between 1 and {PAGE_MAX}", parameter="limit")
    return limit


@extend_schema_serializer(component_name="AccessPeriod")
class AccessPeriodOut(serializers.Serializer):
    number = serializers.IntegerField()
    after_id = serializers.IntegerField(help_text="the period holds ids above this one")
    last_id = serializers.IntegerField(help_text="and up to this one")
    count = serializers.IntegerField()
    # Shadows Field.root only for the type checker: DRF's metaclass pops declared fields.
    root = serializers.CharField(  # type: ignore[assignment]
        help_text="hex RFC 9162 root of the events' encodings"
    )
    log_index = serializers.IntegerField(help_text="index of its access_period_sealed leaf")
    sealed_at = serializers.DateTimeField()


class AccessPeriodsView(ConsortiumView):
    audit_action = "audit.periods.read"
    required_scope = "audit"

    @extend_schema_serializer(component_name="AccessPeriodPage")
    class OutputSerializer(serializers.Serializer):
        periods = AccessPeriodOut(many=True)
        next = serializers.CharField(allow_null=True, help_text="pass as `before` to go on")

    @extend_schema(
        operation_id="audit_periods",
        parameters=[
            OpenApiParameter("before", int, description="cursor: a period number"),
            OpenApiParameter("limit", int, description=f"1 to {PAGE_MAX}"),
        ],
        responses=OutputSerializer,
        description="Sealed access-log periods, newest first. Needs the audit scope.",
    )
    def get(self, request: Request) -> Response:
        raw_before = request.query_params.get("before")
        if raw_before is not None and not CURSOR_PATTERN.fullmatch(raw_before):
            raise MalformedRequest("before must be a period number", parameter="before")
        limit = _limit(request)
        periods, next_cursor = access_periods_page(
            before=None if raw_before is None else int(raw_before), limit=limit
        )
        self.audit_records = len(periods)
        self.audit_target = request.query_params.urlencode()[:255]
        body = {"periods": periods, "next": None if next_cursor is None else str(next_cursor)}
        return Response(self.OutputSerializer(body).data)


class AccessPeriodDetailView(ConsortiumView):
    audit_action = "audit.period.read"
    required_scope = "audit"

    @extend_schema(
        operation_id="audit_period",
        responses=AccessPeriodOut,
        description=(
            "One sealed access-log period with the log index of its access_period_sealed "
            "leaf. Its events: `GET /api/v1/audit/events?after_id=&last_id=`. Needs the "
            "audit scope."
        ),
    )
    def get(self, request: Request, number: int) -> Response:
        self.audit_target = f"period:{number}"
        period = access_period_get(number=number)
        if period is None:
            raise UnknownAccessPeriod(f"no access period {number} is sealed")
        self.audit_records = 1
        return Response(AccessPeriodOut(period).data)


# The verifiable log: key, checkpoints, leaves, proofs, cosignatures, C2SP tlog-tiles paths.

LOG_ENTRIES_MAX = 1000
TEXT = "text/plain; charset=utf-8"
OCTETS = "application/octet-stream"
HASH_HEX = re.compile(r"[0-9a-f]{64}")


def _size_param(request: Request, name: str, *, low: int, high: int) -> int:
    """A required non-negative integer query parameter within [low, high] (400 otherwise)."""
    raw = request.query_params.get(name)
    if raw is None or not CURSOR_PATTERN.fullmatch(raw):
        raise MalformedRequest(f"{name} is required, as ASCII digits", parameter=name)
    value = int(raw)
    if not low <= value <= high:
        raise MalformedRequest(f"{name} must be between {low} and {high}", parameter=name)
    return value


def _tree_size_param(request: Request, name: str, *, low: int = 0) -> int:
    """A tree size: beyond the committed log it is a tree that does not exist yet (404)."""
    size = _size_param(request, name, low=low, high=notes.MAX_TREE_SIZE)
    if size > log_size():
        raise UnknownTreeSize(f"{name}={size}: the log has {log_size()} events")
    return size


def _visible_list_ids(partner: Partner) -> list[int]:
    # The lists are the hashes app's; it decides who sees which (its selectors).
    from hashes.selectors import lists_visible_ids

    return lists_visible_ids(partner=partner)


def _checkpoint_response() -> HttpResponse:
    checkpoint = checkpoint_latest()
    if checkpoint is None:
        raise NotFound("no checkpoint has been signed yet")
    return HttpResponse(checkpoint_note(checkpoint).encode(), content_type=TEXT)


class LogKeyView(ConsortiumView):
    audit_action = "log.key.read"
    required_scope = None

    @extend_schema(
        operation_id="log_key",
        responses={(200, "text/plain"): OpenApiTypes.STR},
        description="The log's verifier key, in the C2SP vkey text form "
        "(`<origin>+<key hash>+<base64 key>`), as Go's sumdb/note reads it. Any key scope.",
    )
    def get(self, request: Request) -> HttpResponse:
        return HttpResponse((log_vkey() + "\n").encode(), content_type=TEXT)


class CheckpointView(ConsortiumView):
    audit_action = "log.checkpoint.read"
    required_scope = "read"

    @extend_schema(
        operation_id="log_checkpoint",
        responses={(200, "text/plain"): OpenApiTypes.STR},
        description="The latest signed checkpoint: a C2SP tlog-checkpoint in a C2SP signed "
        "note, signed by the log key, followed by the cosignature/v1 lines partners posted.",
    )
    def get(self, request: Request) -> HttpResponse:
        response = _checkpoint_response()
        self.audit_records = 1
        return response


class LogEntriesView(ConsortiumView):
    audit_action = "log.entries.read"
    required_scope = "read"

    @extend_schema(
        operation_id="log_entries",
        parameters=[
            OpenApiParameter("start", int, required=True, description="first index"),
            OpenApiParameter(
                "end",
                int,
                required=True,
                description=f"after the last; at most start + "
                f"{LOG_ENTRIES_MAX} and at most the log size",
            ),
        ],
        responses={200: OpenApiTypes.OBJECT},
        description="Log leaves [start, end), each `{index, leaf_hash, leaf}` with the leaf "
        "verbatim (hash exactly its JSON text), or `{index, leaf_hash, withheld: true}` for "
        "an event this partner may not see.",
    )
    def get(self, request: Request) -> HttpResponse:
        size = log_size()
        start = _size_param(request, "start", low=0, high=notes.MAX_TREE_SIZE)
        end = _size_param(request, "end", low=start + 1, high=start + LOG_ENTRIES_MAX)
        if end > size:
            raise UnknownTreeSize(f"end={end}: the log has {size} events")
        found = log_entries(start=start, end=end, list_ids=_visible_list_ids(self.partner))
        self.audit_target = f"entries:{start}-{end}"
        self.audit_records = sum(entry.leaf is not None for entry in found)
        # Leaves are spliced in verbatim, as in the feed: verifiers hash what they receive.
        items = [
            b'{"index":%d,"leaf_hash":"%s","leaf":%b}'
            % (entry.index, entry.leaf_hash.hex().encode(), entry.leaf)
            if entry.leaf is not None
            else b'{"index":%d,"leaf_hash":"%s","withheld":true}'
            % (entry.index, entry.leaf_hash.hex().encode())
            for entry in found
        ]
        return HttpResponse(b'{"entries":[%b]}' % b",".join(items), content_type="application/json")


class InclusionProofView(ConsortiumView):
    audit_action = "log.proof.read"
    required_scope = "read"

    @extend_schema_serializer(component_name="InclusionProof")
    class OutputSerializer(serializers.Serializer):
        index = serializers.IntegerField()
        size = serializers.IntegerField()
        leaf_hash = serializers.CharField(help_text="hex")
        # Shadows Serializer.root, which only nested serializers read.
        root = serializers.CharField(help_text="hex, the root at `size`")  # type: ignore[assignment]
        proof = serializers.ListField(child=serializers.CharField(), help_text="hex hashes")

    @extend_schema(
        operation_id="log_inclusion_proof",
        parameters=[
            OpenApiParameter("index", int, description="the leaf's index (or leaf_hash)"),
            OpenApiParameter("leaf_hash", str, description="hex RFC 9162 leaf hash (or index)"),
            OpenApiParameter("size", int, required=True, description="tree size, <= log size"),
        ],
        responses=OutputSerializer,
        description="RFC 9162 inclusion proof of one leaf in the tree of `size` leaves. An "
        "event this partner may not see is refused exactly as one that does not exist.",
    )
    def get(self, request: Request) -> Response:
        has_index = "index" in request.query_params
        if has_index == ("leaf_hash" in request.query_params):
            raise MalformedRequest("give exactly one of index and leaf_hash", parameter="index")
        size = _tree_size_param(request, "size", low=1)
        if has_index:
            index: int | None = _size_param(request, "index", low=0, high=notes.MAX_TREE_SIZE)
            self.audit_target = f"index:{index}@{size}"
        else:
            wanted = request.query_params["leaf_hash"]
            if not HASH_HEX.fullmatch(wanted):
                raise MalformedRequest("leaf_hash must be 64 lower-case hex", parameter="leaf_hash")
            index = log_index_of_leaf_hash(leaf_hash=bytes.fromhex(wanted))
            self.audit_target = f"leaf_hash:{wanted}@{size}"
        if (
            index is None
            or index >= size
            or not log_event_visible(index=index, list_ids=_visible_list_ids(self.partner))
        ):
            raise UnknownLogEvent("no such event in this tree is visible to this partner")
        root, proof = tree_inclusion_proof(index=index, size=size)
        leaf_hash = log_entries(start=index, end=index + 1, list_ids=())[0].leaf_hash
        self.audit_records = 1
        body = {"index": index, "size": size, "leaf_hash": leaf_hash.hex(), "root": root.hex()}
        return Response(self.OutputSerializer(body | {"proof": [p.hex() for p in proof]}).data)


class ConsistencyProofView(ConsortiumView):
    audit_action = "log.proof.read"
    required_scope = "read"

    @extend_schema_serializer(component_name="ConsistencyProof")
    class OutputSerializer(serializers.Serializer):
        # `from` is a Python keyword: the field is declared below.
        to = serializers.IntegerField()
        old_root = serializers.CharField(help_text="hex, the root at `from`")
        new_root = serializers.CharField(help_text="hex, the root at `to`")
        proof = serializers.ListField(child=serializers.CharField(), help_text="hex hashes")

    OutputSerializer._declared_fields["from"] = serializers.IntegerField()

    @extend_schema(
        operation_id="log_consistency_proof",
        parameters=[
            OpenApiParameter("from", int, required=True, description="the older tree size"),
            OpenApiParameter("to", int, required=True, description="the newer size, <= log size"),
        ],
        responses=OutputSerializer,
        description="RFC 9162 consistency proof: the tree of `from` leaves is a prefix of the "
        "tree of `to` leaves. Empty when from is 0 or equals to.",
    )
    def get(self, request: Request) -> Response:
        new = _tree_size_param(request, "to")
        old = _size_param(request, "from", low=0, high=new)
        old_root, new_root, proof = tree_consistency_proof(old=old, new=new)
        self.audit_target = f"consistency:{old}-{new}"
        self.audit_records = 1
        body = {"from": old, "to": new, "old_root": old_root.hex(), "new_root": new_root.hex()}
        return Response(self.OutputSerializer(body | {"proof": [p.hex() for p in proof]}).data)


class PlainTextParser(BaseParser):
    media_type = "text/plain"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        return stream.read()


class CosignaturesView(ConsortiumView):
    audit_action = "log.cosignature.add"
    required_scope = "read"
    parser_classes = [PlainTextParser]

    @extend_schema_serializer(component_name="CosignatureReceipt")
    class OutputSerializer(serializers.Serializer):
        size = serializers.IntegerField(help_text="the cosigned checkpoint's tree size")
        added = serializers.IntegerField(help_text="cosignatures new to the server")

    @extend_schema(
        operation_id="log_cosignature_add",
        request={"text/plain": OpenApiTypes.STR},
        responses={201: OutputSerializer, 200: OpenApiResponse(OutputSerializer, "known")},
        description="A checkpoint this log signed, as a C2SP signed note carrying one or more "
        "cosignature/v1 lines (c2sp.org/tlog-cosignature) by the calling partner: key name "
        "the partner's name, key one of its active Ed25519 signing keys. The log's own "
        "signature line may stay in the note. Stored once per checkpoint and key, and "
        "served from then on in the checkpoint's note.",
    )
    def post(self, request: Request) -> Response:
        body = self.body()
        if len(body) > COSIGNATURE_MAX_BYTES:
            raise RequestTooLarge(f"a cosigned note is at most {COSIGNATURE_MAX_BYTES} bytes")
        result = cosignatures_add(actor=self.actor(), note=body)
        self.access_recorded = True
        data = self.OutputSerializer({"size": result.checkpoint.size, "added": result.added}).data
        return Response(data, status=201 if result.added else 200)


class LogTileView(ConsortiumView):
    audit_action = "log.tile.read"
    required_scope = "read"

    @extend_schema(
        operation_id="log_tile",
        responses={
            (200, "application/octet-stream"): OpenApiTypes.BINARY,
            (200, "text/plain"): OpenApiTypes.STR,
        },
        description="C2SP tlog-tiles read paths: `checkpoint` (as /log/checkpoint), "
        "`tile/<L>/<N>[.p/<W>]` (hash tiles) and `tile/entries/<N>[.p/<W>]` (entry bundles: "
        "an event this partner may not see is a zero-length entry; its hash is in tile 0). "
        "Only canonical paths; a tile beyond the tree is 404.",
    )
    def get(self, request: Request, tile_path: str) -> HttpResponse:
        self.audit_target = tile_path[:255]
        if tile_path == "checkpoint":
            self.audit_records = 1
            return _checkpoint_response()
        try:
            tile = merkle.parse_tile_path(tile_path)
        except merkle.TilePathError:
            raise NotFound(f"no tile at {tile_path}") from None
        if isinstance(tile, merkle.EntryBundle):
            first = tile.index * merkle.TILE_WIDTH
            if first + tile.width > log_size():
                raise NotFound(f"{tile_path} is beyond the log")
            found = log_entries(
                start=first, end=first + tile.width, list_ids=_visible_list_ids(self.partner)
            )
            self.audit_records = sum(entry.leaf is not None for entry in found)
            data = merkle.entry_bundle_encode([entry.leaf or b"" for entry in found])
        else:
            tile_data = tile_read(level=tile.level, index=tile.index, width=tile.width)
            if tile_data is None:
                raise NotFound(f"{tile_path} is beyond the tree")
            self.audit_records = 1
            data = tile_data
        return HttpResponse(data, content_type=OCTETS)
