"""The vpdq value's canonical form, video hashing with its caps, and the matching rule."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consortium_client.hashfiles import FileHashed, FileRefused, file_hash
from consortium_client.hashvalues import (
    VPDQ_MAX_FRAMES,
    HashValueError,
    VideoFrame,
    hash_value_parse,
    vpdq_value_format,
    vpdq_value_parse,
)
from consortium_client.sniffing import video_container
from consortium_client.video import VideoRejected, video_file_hashes
from consortium_client.vpdq import VideoShares, video_shares
from tests.videos import video_transcode, video_write

frames_strategy = st.lists(
    st.builds(
        VideoFrame,
        st.binary(min_size=32, max_size=32).map(bytes.hex),
        st.integers(min_value=0, max_value=100),
    ),
    min_size=1,
    max_size=40,
)


@given(frames_strategy)
def test_a_value_round_trips_as_the_set_of_its_frames_at_their_best_quality(frames) -> None:
    value = vpdq_value_format(frames)
    parsed = vpdq_value_parse(value)
    best: dict[str, int] = {}
    for frame in frames:
        best[frame.pdq] = max(best.get(frame.pdq, 0), frame.quality)
    assert parsed == tuple(VideoFrame(pdq, quality) for pdq, quality in sorted(best.items()))
    assert vpdq_value_format(parsed) == value
    assert vpdq_value_format(reversed(frames)) == value  # order does not change the value
    assert hash_value_parse("vpdq", value.upper()) == value
    assert value == value.lower()


@given(frames_strategy, st.data())
def test_any_change_to_a_canonical_value_is_refused_or_is_another_canonical_value(
    frames, data
) -> None:
    value = vpdq_value_format(frames)
    position = data.draw(st.integers(min_value=0, max_value=len(value) - 1))
    replacement = data.draw(st.sampled_from("0123456789abcdef,g "))
    changed = value[:position] + replacement + value[position + 1 :]
    try:
        parsed = vpdq_value_parse(changed)
    except HashValueError:
        return
    assert vpdq_value_format(parsed) == changed


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "must be a string"),
        ("", "no frames"),
        ("0" * 64, "66 hex characters"),
        ("0" * 64 + "32,", "66 hex characters"),
        ("," + "0" * 64 + "32", "66 hex characters"),
        ("0" * 64 + "32;" + "1" * 64 + "32", "66 hex characters"),
        ("0x" + "0" * 64, "66 hex characters"),
        ("0" * 64 + "65", "quality 101"),
        ("0" * 64 + "ff", "quality 255"),
        ("1" * 64 + "32," + "0" * 64 + "32", "out of order"),
        ("0" * 64 + "32," + "0" * 64 + "40", "repeats a hash"),
    ],
)
def test_a_malformed_value_is_refused_with_its_reason(value, message) -> None:
    with pytest.raises(HashValueError, match=message):
        vpdq_value_parse(value)


def test_a_value_over_the_frame_cap_is_refused() -> None:
    frames = [VideoFrame(f"{i:064x}", 90) for i in range(VPDQ_MAX_FRAMES + 1)]
    with pytest.raises(HashValueError, match=f"at most {VPDQ_MAX_FRAMES}"):
        vpdq_value_format(frames)
    at_cap = vpdq_value_format(frames[:VPDQ_MAX_FRAMES])
    assert len(vpdq_value_parse(at_cap)) == VPDQ_MAX_FRAMES
    with pytest.raises(HashValueError, match="longer than"):
        vpdq_value_parse(at_cap + "," + f"{VPDQ_MAX_FRAMES + 1:064x}5a")


def test_shares_count_distinct_frames_each_way_and_skip_frames_under_the_floor() -> None:
    # At least 128 bits apart from each other.
    a, b, c = (VideoFrame(h, 90) for h in ("0" * 64, "f" * 32 + "0" * 32, "0" * 32 + "f" * 32))
    far = VideoFrame("f" * 64, 90)
    dark = VideoFrame("0" * 63 + "1", 10)  # under the floor: compared on neither side
    shares = video_shares([a, b, dark], [a, b, c, far])
    assert shares == VideoShares(2, 2, 2, 4)
    assert (shares.query_share, shares.stored_share, shares.distance) == (1.0, 0.5, 50)
    assert not shares.matches()
    assert shares.matches(query_share=100, stored_share=50)
    assert video_shares([dark], [a]).matches() is False
    assert video_shares([a, b, c, far], [a, b, c, far]).distance == 0
    near_a = VideoFrame("0" * 56 + "ffffffff", 90)  # 32 bits from a: one past the distance
    assert video_shares([near_a], [a]).query_matched == 0
    assert video_shares([near_a], [a], frame_distance=32).query_matched == 1


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return video_write(tmp_path_factory.mktemp("clip") / "clip.mp4", seed=3, seconds=6, fps=10)


def test_a_video_gets_md5_sha256_and_a_frame_a_second(clip: Path) -> None:
    import hashlib

    hashed = video_file_hashes(clip)
    data = clip.read_bytes()
    assert hashed.values["md5"] == hashlib.md5(data, usedforsecurity=False).hexdigest()
    assert hashed.values["sha256"] == hashlib.sha256(data).hexdigest()
    assert [time for time, _ in hashed.frames] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert (hashed.container, hashed.width, hashed.height) == ("mov", 320, 240)
    assert vpdq_value_parse(hashed.values["vpdq"]) == tuple(
        sorted({frame for _, frame in hashed.frames})
    )


def test_each_cap_refuses_a_video_in_one_line(clip: Path) -> None:
    for caps, reason in [
        ({"max_bytes": clip.stat().st_size - 1}, "too-large"),
        ({"max_duration": 3.0}, "too-long"),
        ({"max_frames": 20}, "too-many-frames"),
        ({"max_pixels": 320 * 240 - 1}, "too-many-pixels"),
    ]:
        with pytest.raises(VideoRejected) as refused:
            video_file_hashes(clip, **caps)
        assert refused.value.reason == reason
        assert "\n" not in str(refused.value)
    video_file_hashes(clip, max_bytes=clip.stat().st_size, max_duration=6.0, max_frames=60)


def test_a_cut_or_faked_video_is_refused(clip: Path, tmp_path: Path) -> None:
    matroska = video_transcode(clip, tmp_path / "clip.mkv", codec="mpeg4")
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(matroska.read_bytes()[: matroska.stat().st_size // 3])
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(range(256)) * 20)
    head_only = tmp_path / "head.mp4"
    head_only.write_bytes(clip.read_bytes()[:2000])
    for path, reason in [(cut, "truncated"), (fake, "corrupt"), (head_only, "corrupt")]:
        with pytest.raises(VideoRejected) as refused:
            video_file_hashes(path)
        assert refused.value.reason == reason, path


def test_files_are_told_apart_by_content_not_name(clip: Path, tmp_path: Path) -> None:
    unnamed = tmp_path / "holiday"
    unnamed.write_bytes(clip.read_bytes())
    posing = tmp_path / "notes.mp4"
    posing.write_text("not a video at all")
    hashed = file_hash(str(unnamed))
    assert isinstance(hashed, FileHashed)
    assert sorted(hashed.values) == ["md5", "sha256", "vpdq"]
    assert hashed.pdq_quality is None
    refused = file_hash(str(posing))
    assert isinstance(refused, FileRefused)
    assert refused.reason == "not-an-image"


@pytest.mark.parametrize(
    ("head", "container"),
    [
        (b"\x00\x00\x00\x20ftypisom", "mov,mp4,m4a,3gp,3g2,mj2"),
        (b"\x00\x00\x00\x20ftypqt  ", "mov,mp4,m4a,3gp,3g2,mj2"),
        (b"\x00\x00\x00\x1cftypheic", None),  # a HEIC photo
        (b"\x00\x00\x00\x1cftypavif", None),  # an AVIF photo
        (b"\x1a\x45\xdf\xa3\x01", "matroska,webm"),
        (b"RIFF" + struct.pack("<I", 100) + b"AVI LIST", "avi"),
        (b"RIFF" + struct.pack("<I", 100) + b"WEBPVP8 ", None),  # a WebP image
        (b"FLV\x01\x05", "flv"),
        (b"\x00\x00\x01\xba\x44", "mpeg"),
        ((b"\x47" + bytes(187)) * 3, "mpegts"),
        (b"\x89PNG\r\n\x1a\n", None),
        (b"#EXTM3U\n", None),  # a playlist, which FFmpeg would follow
        (b"ffconcat version 1.0\n", None),
        (b"", None),
    ],
)
def test_containers_are_sniffed_from_the_first_bytes(head: bytes, container: str | None) -> None:
    assert video_container(head) == container
