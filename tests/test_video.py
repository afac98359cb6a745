"""Videos (issue 9): hashed on the partner's side (md5, sha256, vPDQ), submitted signed like
any hash, and matched by the server with HMA's rule: a re-encoded, resized and trimmed copy
matches, a different video does not, and a video the caller may not see leaves no trace."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.services import checkpoint_sign
from consortium_client import cli
from consortium_client.hashvalues import VideoFrame, vpdq_value_format, vpdq_value_parse
from consortium_client.keys import private_key_load, public_key_pem
from consortium_client.video import VideoHashes, video_file_hashes
from consortium_client.vpdq import video_shares
from hashes.match_index import match_indexes
from hashes.models import Entry, HashList
from partners import services
from tests.conftest import ADMIN, PartnerClient, partner_client, problem, store_counts
from tests.factories import HashListFactory, PartnerFactory
from tests.test_erasure import _tables_holding
from tests.test_feedback import given
from tests.videos import video_transcode, video_write, vpdq_synthetic


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 20-second original, three edited copies of it, and a different video."""
    folder = tmp_path_factory.mktemp("videos")
    original = video_write(folder / "original.mp4", seed=1)
    return {
        "original": original,
        # Another codec and bit rate, smaller, the first and last seconds cut.
        "mpeg4-small-trimmed": video_transcode(
            original, folder / "copy.mkv", codec="mpeg4", size=(200, 150), bit_rate=200_000,
            trim_start=1, trim_end=1,
        ),
        # VP9 in WebM, larger, its first two seconds cut.
        "vp9-large-trimmed": video_transcode(
            original, folder / "copy.webm", codec="libvpx-vp9", size=(480, 360),
            bit_rate=150_000, trim_start=2,
        ),
        # H.264 at a low bit rate, no extension: told apart by its content.
        "h264-lowrate": video_transcode(
            original, folder / "copy-no-extension", codec="libx264", bit_rate=80_000,
            container_format="mp4",
        ),
        "different": video_write(folder / "different.mp4", seed=2),
    }  # fmt: skip


@pytest.fixture(scope="module")
def hashed(videos: dict[str, Path]) -> dict[str, VideoHashes]:
    return {name: video_file_hashes(path) for name, path in videos.items()}


def submit(client: PartnerClient, list_name: str, entries: list[dict[str, Any]]) -> list[int]:
    response = client.submit(list_name, entries)
    assert response.status_code == 201, response.content
    return [entry["id"] for entry in json.loads(response.content)["entries"]]


def match_response(client: PartnerClient, hashes: list[tuple[str, str]]) -> Any:
    body = {"hashes": [{"algorithm": a, "value": v} for a, v in hashes]}
    return client.post("/api/v1/match", json.dumps(body).encode())


def match(client: PartnerClient, hashes: list[tuple[str, str]]) -> list[dict[str, Any]]:
    response = match_response(client, hashes)
    assert response.status_code == 200, response.content
    return json.loads(response.content)["results"]


def vpdq(video: VideoHashes) -> tuple[str, str]:
    return ("vpdq", video.values["vpdq"])


COPIES = ("mpeg4-small-trimmed", "vp9-large-trimmed", "h264-lowrate")


@pytest.mark.django_db(transaction=True)
def test_a_video_submitted_with_the_cli_matches_its_edited_copies_and_not_another_video(
    live_server, tmp_path: Path, capsys, videos, hashed, make_partner
) -> None:
    hotline = PartnerFactory(name="hotline")
    HashListFactory(name="videos", owner=hotline, visibility=HashList.Visibility.ALL)
    _, api_key = services.apikey_create(partner=hotline, scopes=["submit", "read"], actor=ADMIN)
    assert cli.main(["keygen", "--out", str(tmp_path / "key")]) == 0
    public = public_key_pem(private_key_load((tmp_path / "key.pem").read_bytes()).public_key())
    services.signing_key_register(partner=hotline, public_key=public, actor=ADMIN)
    capsys.readouterr()

    code = cli.main(
        ["--url", live_server.url, "--api-key", api_key, "submit", "--images", "--ids",
         "--key", str(tmp_path / "key.pem"), "--list", "videos", str(videos["original"])]
    )  # fmt: skip
    assert code == 0
    ids = [int(line) for line in capsys.readouterr().out.split()]
    stored = {entry.algorithm: entry for entry in Entry.objects.filter(pk__in=ids)}
    assert sorted(stored) == ["md5", "sha256", "vpdq"]
    assert stored["vpdq"].value == hashed["original"].values["vpdq"]

    platform = make_partner("platform", scopes=["match"])
    results = match(
        platform,
        [vpdq(hashed[name]) for name in (*COPIES, "different")]
        + [("md5", hashed["original"].values["md5"]), ("md5", hashed["different"].values["md5"])],
    )
    for name, result in zip(COPIES, results, strict=False):
        (found,) = result["matches"]
        assert (found["entry"], found["rule"], found["list"]) == (
            stored["vpdq"].pk,
            "vpdq",
            "videos",
        )
        assert found["query_share"] >= 0.8, name
        assert found["stored_share"] >= 0.8, name
        weaker = min(found["query_share"], found["stored_share"])
        assert found["distance"] == 100 - int(weaker * 100 + 1e-9), name
    assert results[3]["matches"] == []
    # The file itself, byte for byte, matches by its md5; another file does not.
    assert [m["entry"] for m in results[4]["matches"]] == [stored["md5"].pk]
    assert results[4]["matches"][0]["query_share"] is None
    assert results[5]["matches"] == []

    # The partner's own mirror matches the same videos with the same rule (its defaults).
    checkpoint_sign()
    mirror = tmp_path / "mirror.db"
    assert (
        cli.main(["--url", live_server.url, "--api-key", api_key, "--mirror", str(mirror), "sync"])
        == 0
    )
    capsys.readouterr()
    for name in COPIES:
        assert cli.main(["--mirror", str(mirror), "match", "--json", str(videos[name])]) == 1
        (found,) = json.loads(capsys.readouterr().out)["matches"]
        assert (found["entry"], found["rule"]) == (stored["vpdq"].pk, "vpdq"), name
        assert min(found["query_share"], found["stored_share"]) >= 0.8
    assert cli.main(["--mirror", str(mirror), "match", str(videos["original"])]) == 1
    lines = capsys.readouterr().out
    assert f"match md5 distance 0 list videos entry {stored['md5'].pk}" in lines
    assert f"match vpdq distance 0 list videos entry {stored['vpdq'].pk}" in lines
    assert "frames 100% of the query, 100% stored rule vpdq" in lines
    assert cli.main(["--mirror", str(mirror), "match", str(videos["different"])]) == 0
    assert capsys.readouterr().out == f"{videos['different']}: no match\n"


def test_the_servers_shares_are_the_rules_on_every_pair_of_frames(
    alice, bob, shared_list, hashed
) -> None:
    (entry_id,) = submit(
        alice, "ncii", [{"algorithm": "vpdq", "value": hashed["original"].values["vpdq"]}]
    )
    stored = vpdq_value_parse(hashed["original"].values["vpdq"])
    for name in (*COPIES, "different"):
        query = vpdq_value_parse(hashed[name].values["vpdq"])
        expected = video_shares(query, stored)
        results = match(bob, [vpdq(hashed[name])])
        if not expected.matches():
            assert results[0]["matches"] == [], name
            continue
        (found,) = results[0]["matches"]
        assert (found["entry"], found["distance"]) == (entry_id, expected.distance)
        assert (found["query_share"], found["stored_share"]) == (
            expected.query_share,
            expected.stored_share,
        )


def test_a_lists_own_video_rule_decides(alice, bob, shared_list, hashed) -> None:
    submit(alice, "ncii", [{"algorithm": "vpdq", "value": hashed["original"].values["vpdq"]}])
    trimmed = vpdq(hashed["mpeg4-small-trimmed"])  # 18 of the original's 20 seconds
    assert len(match(bob, [trimmed])[0]["matches"]) == 1
    shared_list.video_stored_share = 95
    shared_list.save()
    assert match(bob, [trimmed])[0]["matches"] == []
    shared_list.video_stored_share = 80
    shared_list.match_distances = {"vpdq": 0}  # frames must be identical: a re-encode is not
    shared_list.save()
    assert match(bob, [trimmed])[0]["matches"] == []
    assert len(match(bob, [vpdq(hashed["original"])])[0]["matches"]) == 1
    shared_list.match_distances = {}
    shared_list.video_quality_floor = 100  # only frames of perfect quality are compared
    shared_list.save()
    expected = video_shares(
        vpdq_value_parse(trimmed[1]),
        vpdq_value_parse(hashed["original"].values["vpdq"]),
        quality_floor=100,
    )
    assert expected.query_compared < 18  # some frames are left out on the query's side
    found = match(bob, [trimmed])[0]["matches"]
    assert [(m["query_share"], m["stored_share"]) for m in found] == (
        [(expected.query_share, expected.stored_share)] if expected.matches() else []
    )


def test_a_video_in_a_list_the_caller_cannot_see_does_not_match_and_leaves_no_trace(
    alice, bob, shared_list, hashed
) -> None:
    HashListFactory(name="hidden", owner=bob.partner, visibility=HashList.Visibility.OWNER)
    submit(bob, "hidden", [{"algorithm": "vpdq", "value": hashed["original"].values["vpdq"]}])
    # Videos alice may see, so that her searches do real work to compare.
    submit(alice, "ncii", [{"algorithm": "vpdq", "value": hashed["different"].values["vpdq"]}])
    near_hidden = vpdq(hashed["mpeg4-small-trimmed"])
    absent = ("vpdq", vpdq_value_format(
        VideoFrame(f"{(int(f.pdq, 16) ^ (1 << 255) - 1):064x}", f.quality)
        for f in vpdq_value_parse(near_hidden[1])
    ))  # fmt: skip
    match(alice, [absent])  # the index loads and catches up outside the count

    measured = []
    for query in (near_hidden, absent, near_hidden, absent):
        examined = match_indexes.candidates_examined
        with CaptureQueriesContext(connection) as queries:
            response = match_response(alice, [query])
        assert response.status_code == 200
        measured.append((len(queries), match_indexes.candidates_examined - examined, response))
    assert len({(queries, examined) for queries, examined, _ in measured}) == 1
    bodies = [json.loads(response.content)["results"] for _, _, response in measured]
    for body in bodies:
        body[0]["query"].pop("value")
    assert all(body == bodies[0] for body in bodies)
    assert bodies[0][0]["matches"] == []
    assert bodies[0][0]["truncated"] is False
    # bob, who may see the list, gets the match, so the video really is there.
    assert len(match(bob, [near_hidden])[0]["matches"]) == 1


def test_a_revoked_video_stops_matching_and_an_erased_one_is_gone_everywhere(
    alice, bob, shared_list, hashed
) -> None:
    original, different = hashed["original"].values["vpdq"], hashed["different"].values["vpdq"]
    first, second = submit(
        alice, "ncii", [{"algorithm": "vpdq", "value": v} for v in (original, different)]
    )
    copy, other = vpdq(hashed["mpeg4-small-trimmed"]), vpdq(hashed["different"])
    assert [len(r["matches"]) for r in match(bob, [copy, other])] == [1, 1]
    assert alice.revoke([first]).status_code == 201
    assert [len(r["matches"]) for r in match(bob, [copy, other])] == [0, 1]

    assert _tables_holding(different) == ["hashes_entry"]
    call_command("erase_entry", str(second), "--reason", "court order", stdout=StringIO())
    assert _tables_holding(different) == []
    assert match(bob, [other])[0]["matches"] == []
    events, _ = bob.feed_all()
    assert different not in json.dumps(events)
    # A fresh process builds its index from the log: the same answers.
    match_indexes.reset()
    assert [len(r["matches"]) for r in match(bob, [copy, other])] == [0, 0]


def test_the_feed_carries_a_video_value_that_opens_its_commitment_and_the_log_verifies(
    alice, bob, shared_list, hashed
) -> None:
    value = hashed["original"].values["vpdq"]
    (entry_id,) = submit(alice, "ncii", [{"algorithm": "vpdq", "value": value}])
    events, _ = bob.feed_all()  # checks each opening against its leaf's commitment
    (added,) = [event for event in events if event.get("index") == entry_id]
    assert (added["algorithm"], added["value"]) == ("vpdq", value)
    out = StringIO()
    call_command("log_verify", "--no-progress", stdout=out)
    assert out.getvalue().startswith("log verified: ")
    assert " 1 entries, 1 submissions," in out.getvalue()


def test_the_same_video_twice_is_refused_and_a_replay_answers_as_before(
    alice, shared_list, hashed
) -> None:
    entry = {"algorithm": "vpdq", "value": hashed["original"].values["vpdq"]}
    body = alice.submission("ncii", [entry])
    first = alice.post("/api/v1/submissions", body)
    assert first.status_code == 201
    replay = alice.post("/api/v1/submissions", body)
    assert replay.status_code in (200, 201)
    assert json.loads(replay.content)["entries"] == json.loads(first.content)["entries"]
    before = store_counts()
    again = alice.submit("ncii", [entry])
    assert (again.status_code, problem(again)) == (409, "entry-exists")
    assert store_counts() == before


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "no frames"),
        ("ab" * 32, "66 hex characters"),
        ("f" * 64 + "65", "quality 101"),
        ("0" * 64 + "32," + "0" * 64 + "32", "out of order or repeats"),
        ("1" * 64 + "32," + "0" * 64 + "32", "out of order or repeats"),
        ("0" * 64 + "32,", "66 hex characters"),
        ("0" * 64 + "32 ", "66 hex characters"),
        ("g" * 66, "66 hex characters"),
    ],
)
def test_a_malformed_video_value_is_refused_in_a_submission_and_a_match(
    alice, bob, shared_list, value, message
) -> None:
    before = store_counts()
    # A signed vpdq entry whose opening (beside the envelope) is then spoiled: the value is
    # refused for what it is, before its commitment is checked.
    valid = vpdq_value_format([VideoFrame("0" * 64, 80)])
    body = json.loads(alice.submission("ncii", [{"algorithm": "vpdq", "value": valid}]))
    body["values"][0]["value"] = value
    response = alice.post("/api/v1/submissions", json.dumps(body).encode())
    assert (response.status_code, problem(response)) == (400, "invalid-hash-value")
    assert message in json.loads(response.content)["detail"]
    response = match_response(bob, [("vpdq", value)])
    assert (response.status_code, problem(response)) == (400, "invalid-hash-value")
    assert message in json.loads(response.content)["detail"]
    assert store_counts() == before


def test_a_match_request_over_the_frame_cap_is_refused(bob, shared_list, settings) -> None:
    settings.MATCH_MAX_FRAMES = 5
    frames = [VideoFrame(f"{i:064x}", 80) for i in range(1, 7)]
    response = match_response(bob, [("vpdq", vpdq_value_format(frames))])
    assert (response.status_code, problem(response)) == (400, "malformed-request")
    assert "6 frames" in json.loads(response.content)["detail"]


def test_videos_planted_around_a_query_are_capped_nearest_first_and_marked_truncated(
    make_partner, bob, shared_list, hashed, monkeypatch
) -> None:
    planter = make_partner("planter")
    original = vpdq_value_parse(hashed["original"].values["vpdq"])
    # Five copies of the original, each with one more frame of its own: all match it.
    planted = [
        vpdq_value_format([*original, VideoFrame(f"{(copy + 1) << 200:064x}", 90)])
        for copy in range(5)
    ]
    ids = submit(planter, "ncii", [{"algorithm": "vpdq", "value": v} for v in planted])
    query = vpdq(hashed["original"])
    response = match_response(bob, [query])
    body = json.loads(response.content)["results"][0]
    assert [m["entry"] for m in body["matches"]] == ids
    assert body["truncated"] is False
    limited = bob.post(
        "/api/v1/match",
        json.dumps({"hashes": [{"algorithm": "vpdq", "value": query[1]}], "limit": 2}).encode(),
    )
    body = json.loads(limited.content)["results"][0]
    assert ([m["entry"] for m in body["matches"]], body["truncated"]) == (ids[:2], True)
    # Each query frame keeps at most FRAME_HITS stored frames: past it, the answer says so.
    monkeypatch.setattr("hashes.match_index.FRAME_HITS", 3)
    body = match(bob, [query])[0]
    assert body["truncated"] is True
    assert len(body["matches"]) <= 5


# Review and quarantine -------------------------------------------------------------------


def match_found(
    client: PartnerClient, query: tuple[str, str], **options: Any
) -> list[tuple[int, bool]]:
    """(entry, pending) of each match of one video, with `options` (include_pending)."""
    body = {"hashes": [{"algorithm": query[0], "value": query[1]}], **options}
    response = client.post("/api/v1/match", json.dumps(body).encode())
    assert response.status_code == 200, response.content
    return [
        (m["entry"], m["pending"]) for m in json.loads(response.content)["results"][0]["matches"]
    ]


def shown(matches: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What a match says of how each video matched (not its feedback, which changes)."""
    keys = ("entry", "distance", "rule", "query_share", "stored_share", "pending")
    return [tuple(m[key] for key in keys) for m in matches]


def test_a_quarantined_video_stops_matching_until_restored_and_a_revoked_one_leaves(
    alice, bob, shared_list, hashed
) -> None:
    shared_list.quarantine_after = 1
    shared_list.save()
    original, different = hashed["original"].values["vpdq"], hashed["different"].values["vpdq"]
    video, other = submit(
        alice, "ncii", [{"algorithm": "vpdq", "value": v} for v in (original, different)]
    )
    copy = vpdq(hashed["mpeg4-small-trimmed"])
    before = shown(match(bob, [copy])[0]["matches"])
    assert [(m[0], m[-1]) for m in before] == [(video, False)]

    assert given(bob, video, "false_positive")["summary"]["quarantined"] is True
    assert match_found(bob, copy) == []
    # Its frames left the index (the match's row check would hide it anyway) and are parked.
    assert match_indexes.videos.keys() == {other}
    assert len(match_indexes.parked[video].frames) == len(vpdq_value_parse(original))
    assert match_found(bob, copy, include_pending=True) == []
    # The other video of the list still matches: only the quarantined one's frames left.
    assert match_found(bob, vpdq(hashed["different"])) == [(other, False)]
    match_indexes.reset()  # a fresh process parks it too
    assert match_found(bob, copy, include_pending=True) == []
    assert match_indexes.videos.keys() == {other}

    path = f"/api/v1/entries/{video}/quarantine/resolution"
    restored = alice.post(path, json.dumps({"reason": "checked again: it is abusive"}).encode())
    assert restored.status_code == 201, restored.content
    # The same entry, distance and shares as before its quarantine.
    assert shown(match(bob, [copy])[0]["matches"]) == before
    match_indexes.reset()
    assert shown(match(bob, [copy])[0]["matches"]) == before

    # Quarantined again, then revoked: it stays out, in this process and a fresh one.
    given(bob, video, "false_positive", reason="low_quality_hash")
    assert match_found(bob, copy) == []
    assert alice.revoke([video]).status_code == 201
    assert match_found(bob, copy, include_pending=True) == []
    assert match_indexes.videos.keys() == {other}
    assert video not in match_indexes.parked
    match_indexes.reset()
    assert match_found(bob, copy, include_pending=True) == []
    assert match_found(bob, vpdq(hashed["different"])) == [(other, False)]


def test_a_pending_video_matches_only_when_asked_until_confirmed(
    alice, bob, shared_list, hashed
) -> None:
    carol = partner_client("carol")
    shared_list.review_required = True
    shared_list.quarantine_after = 1
    shared_list.save()
    shared_list.reviewers.set([bob.partner])
    original, different = hashed["original"].values["vpdq"], hashed["different"].values["vpdq"]
    copy, near_other = vpdq(hashed["mpeg4-small-trimmed"]), vpdq(hashed["different"])
    # The index is loaded first: the videos below reach it as it catches up with the log.
    assert match_found(carol, copy, include_pending=True) == []
    video, other = submit(
        alice, "ncii", [{"algorithm": "vpdq", "value": v} for v in (original, different)]
    )

    assert match_found(carol, copy) == []
    asked = carol.post(
        "/api/v1/match",
        json.dumps(
            {"hashes": [{"algorithm": "vpdq", "value": copy[1]}], "include_pending": True}
        ).encode(),
    )
    (found,) = json.loads(asked.content)["results"][0]["matches"]
    assert (found["entry"], found["pending"], found["rule"]) == (video, True, "vpdq")
    expected = video_shares(vpdq_value_parse(copy[1]), vpdq_value_parse(original))
    assert (found["query_share"], found["stored_share"]) == (
        expected.query_share,
        expected.stored_share,
    )
    match_indexes.reset()  # a fresh process holds it pending too
    assert match_found(carol, copy) == []
    assert match_found(carol, copy, include_pending=True) == [(video, True)]

    # A pending video quarantined is out even when pending entries are asked for; restored,
    # it is pending again.
    given(carol, other, "false_positive")
    assert match_found(carol, near_other, include_pending=True) == []
    path = f"/api/v1/entries/{other}/quarantine/resolution"
    assert alice.post(path, json.dumps({"reason": "fine"}).encode()).status_code == 201
    assert match_found(carol, near_other) == []
    assert match_found(carol, near_other, include_pending=True) == [(other, True)]

    # carol is no designated reviewer; bob's agree confirms it.
    given(carol, video, "agree")
    assert match_found(carol, copy) == []
    assert given(bob, video, "agree")["summary"]["review"] == "confirmed"
    assert match_found(carol, copy) == [(video, False)]
    assert match_found(carol, copy, include_pending=True) == [(video, False)]
    match_indexes.reset()
    assert match_found(carol, copy) == [(video, False)]
    assert match_found(carol, near_other) == []
    assert match_found(carol, near_other, include_pending=True) == [(other, True)]


def test_a_feed_page_of_long_videos_stops_at_its_byte_cap_and_the_next_goes_on(
    alice, bob, shared_list, settings
) -> None:
    # A video's value is up to 241 KB: a page of 1,000 would be a quarter of a gigabyte.
    values = [vpdq_synthetic(seed, 60) for seed in range(1, 8)]
    entries = [
        {"algorithm": "vpdq", "value": values[0]},
        {"algorithm": "md5", "value": "1" * 32},
        {"algorithm": "vpdq", "value": values[1]},
        {"algorithm": "vpdq", "value": values[2]},
        {"algorithm": "md5", "value": "2" * 32},
        *({"algorithm": "vpdq", "value": value} for value in values[3:]),
    ]
    ids = submit(alice, "ncii", entries)
    assert alice.revoke([ids[2]]).status_code == 201
    whole, end = bob.feed_all()
    size = len(values[0])  # every video value here has the same length
    settings.FEED_PAGE_MAX_BYTES = 2 * size + size // 2

    pages, after = [], None
    while True:
        page = bob.feed(after)
        pages.append(page)
        after = page["next"]
        if not page["has_more"]:
            break
    # Two videos a page at most, and any value shorter than a video rides along with them.
    for page in pages:
        videos = [item for item in page["values"] if len(item.get("value", "")) == size]
        assert len(videos) <= 2
    assert len(pages) == 4
    assert pages[-1]["next"] == end
    # The pages together are the uncapped feed: each event once, in order, each opening kept.
    paged, _ = bob.feed_all()
    assert [e["index"] for e in paged] == [e["index"] for e in whole]
    assert paged == whole
    assert [e.get("value") for e in paged if e["type"] == "entry_added"] == [
        entry["value"] for entry in entries
    ]
    # A page's first video comes even when it alone passes the cap: the feed always moves.
    settings.FEED_PAGE_MAX_BYTES = 10
    first = bob.feed()
    assert [item["value"] for item in first["values"]] == [values[0]]
    assert first["has_more"] is True
    paged, _ = bob.feed_all()
    assert paged == whole


def test_a_cap_small_enough_for_short_values_cuts_their_pages_too(
    alice, bob, shared_list, settings
) -> None:
    entries = [{"algorithm": "pdq", "value": f"{i:064x}"} for i in range(1, 8)]
    submit(alice, "ncii", entries)
    whole, _ = bob.feed_all()
    settings.FEED_PAGE_MAX_BYTES = 3 * 64

    first = bob.feed()
    paged, _ = bob.feed_all()

    assert [item["value"] for item in first["values"]] == [e["value"] for e in entries[:3]]
    assert first["has_more"] is True
    assert paged == whole


def test_where_a_feed_page_ends_never_depends_on_videos_the_reader_cannot_see(
    alice, bob, shared_list, make_partner, settings
) -> None:
    carol = make_partner("carol")
    HashListFactory(name="hidden", owner=carol.partner, visibility=HashList.Visibility.OWNER)
    shared = [vpdq_synthetic(seed, 60) for seed in range(1, 7)]
    for seed, value in enumerate(shared, start=100):
        # Between each two of bob's videos, one of carol's as long, on a list he cannot see.
        submit(alice, "ncii", [{"algorithm": "vpdq", "value": value}])
        submit(carol, "hidden", [{"algorithm": "vpdq", "value": vpdq_synthetic(seed, 60)}])
    settings.FEED_PAGE_MAX_BYTES = len(shared[0]) * 5 // 2

    pages, after = [], None
    while True:
        page = bob.feed(after)
        pages.append([item["value"] for item in page["values"]])
        after = page["next"]
        if not page["has_more"]:
            break

    # Two and a half videos a page: two of bob's each, as if carol's did not exist.
    assert [values for values in pages if values] == [shared[0:2], shared[2:4], shared[4:6]]
