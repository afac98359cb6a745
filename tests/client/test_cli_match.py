import json
import secrets
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from consortium_client.cli_match import match_command
from consortium_client.config import Config
from consortium_client.imaging import image_file_hashes
from tests.client.mirrorrows import MirrorRows
from tests.client.test_mirror_index import flipped
from tests.test_matching import picture


def config_for(mirror: Path) -> Config:
    return Config(
        url="http://127.0.0.1:8000",
        api_key=None,
        signing_key=None,
        mirror=mirror,
        state=mirror.with_name("state.json"),
        timeout=5.0,
    )


def run(mirror: Path, *args: str, stdin: str | None = None):
    return CliRunner().invoke(match_command, list(args), obj=config_for(mirror), input=stdin)


@pytest.fixture
def rows(tmp_path):
    return MirrorRows(tmp_path / "mirror.db")


@pytest.fixture
def images(tmp_path, rows):
    """An original whose PDQ hash the mirror holds, a resized copy, and an unrelated image."""
    original, other = tmp_path / "original.png", tmp_path / "other.png"
    picture(seed=11).save(original)
    picture(seed=12).save(other)
    resized = tmp_path / "resized.jpg"
    Image.open(original).resize((128, 128)).save(resized, quality=40)
    entry = rows.add("pdq", image_file_hashes(original).values["pdq"], labels=("intimate",))
    return {"original": original, "resized": resized, "other": other, "entry": entry}


def test_a_resized_copy_matches_and_an_unrelated_image_does_not(rows, images):
    result = run(rows.path, str(images["resized"]))
    assert result.exit_code == 1, result.output
    [line] = result.output.splitlines()
    assert line.startswith(f"{images['resized']}: match pdq distance ")
    assert f"list ncii entry {images['entry']} partner hotline labels intimate" in line
    result = run(rows.path, str(images["other"]))
    assert (result.exit_code, result.output) == (0, f"{images['other']}: no match\n")


def test_json_lines_hold_one_object_per_input_with_provenance(rows, images):
    result = run(rows.path, "--json", str(images["resized"]), str(images["other"]))
    assert result.exit_code == 1
    resized, other = (json.loads(line) for line in result.output.splitlines())
    assert resized["input"] == str(images["resized"])
    as_it_is = [h["algorithm"] for h in resized["hashes"] if "transform" not in h]
    assert as_it_is == ["pdq", "phash", "dhash", "ahash", "whash", "md5", "sha256"]
    # Turned and mirrored by default: the PDQ hashes of the seven other orientations.
    turned = {h["transform"] for h in resized["hashes"] if "transform" in h}
    assert {"rotate-90", "rotate-180", "rotate-270", "flip-left-right"} <= {
        h.get("transform") for h in resized["hashes"]
    }
    assert all(h["algorithm"] == "pdq" for h in resized["hashes"] if "transform" in h)
    assert len(turned) >= 7
    assert isinstance(resized["quality"], int)
    [found] = resized["matches"]
    assert set(found) == {
        "entry",
        "list",
        "algorithm",
        "distance",
        "labels",
        "quality",
        "partner",
        "signing_key",
        "submission",
        "envelope_sha256",
        "log_index",
        "variant",
        "rule",
    }
    assert (found["variant"], found["rule"]) == (None, "pdq")
    assert (found["entry"], found["log_index"], found["labels"]) == (
        images["entry"],
        images["entry"],
        ["intimate"],
    )
    assert 0 < found["distance"] <= 31
    assert resized["truncated"] is False
    assert other["matches"] == []


def test_a_rotated_copy_matches_unless_no_dihedral_and_names_the_transform(tmp_path, rows, images):
    rotated = tmp_path / "rotated.png"
    Image.open(images["original"]).transpose(Image.Transpose.ROTATE_90).save(rotated)
    assert run(rows.path, "--no-dihedral", str(rotated)).exit_code == 0
    result = run(rows.path, "--json", str(rotated))
    assert result.exit_code == 1
    [found] = json.loads(result.output)["matches"]
    assert found["transform"] in {"rotate-90", "rotate-270"}


def test_hash_lines_from_stdin_a_file_and_options(tmp_path, rows):
    value, md5 = secrets.token_hex(32), secrets.token_hex(16)
    pdq_id, md5_id = rows.add("pdq", value), rows.add("md5", md5)
    lines = tmp_path / "hashes.txt"
    lines.write_text(f"# from a hotline\npdq {flipped(value, 12)}\n\nmd5:{md5.upper()}\n")
    result = run(rows.path, "--json", "--hashes", str(lines))
    assert result.exit_code == 1
    found = [json.loads(line) for line in result.output.splitlines()]
    assert [(f["input"], [m["entry"] for m in f["matches"]]) for f in found] == [
        (f"pdq:{flipped(value, 12)}", [pdq_id]),
        (f"md5:{md5}", [md5_id]),
    ]
    # JSON lines as 'hash' prints them: algorithm names as keys, and the file they came from.
    stdin = json.dumps({"path": "upload.jpg", "pdq": flipped(value, 12), "md5": "00" * 16})
    result = run(rows.path, "-", "--radius", "pdq=11", stdin=stdin + "\n")
    assert (result.exit_code, result.output) == (0, "upload.jpg: no match\n")
    result = run(rows.path, "--hash", f"pdq:{flipped(value, 12)}", "--radius", "12")
    assert result.exit_code == 1


def test_revoked_and_erased_entries_never_match_from_the_command(rows):
    revoked, erased = secrets.token_hex(32), secrets.token_hex(32)
    rows.revoke(rows.add("pdq", revoked))
    rows.erase(rows.add("pdq", erased))
    result = run(rows.path, "--hash", f"pdq:{revoked}", "--hash", f"pdq:{erased}")
    assert result.exit_code == 0
    assert result.output.count("no match") == 2


def test_unreadable_inputs_are_reported_one_line_each_and_the_rest_matched(tmp_path, rows, images):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(images["resized"].read_bytes()[:200])
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    result = run(
        rows.path, str(broken), str(text), str(images["resized"]), str(tmp_path / "missing.png")
    )
    # An error outranks a match: not everything was checked.
    assert result.exit_code == 2
    errors = result.stderr.splitlines()
    assert len(errors) == 3
    assert all(line.startswith("consortium: ") for line in errors)
    assert "Traceback" not in result.stderr
    assert f"{images['resized']}: match pdq" in result.stdout


def test_a_directory_is_matched_recursively(tmp_path, rows, images):
    folder = tmp_path / "uploads" / "2025"
    folder.mkdir(parents=True)
    (folder / "a.jpg").write_bytes(images["resized"].read_bytes())
    (folder.parent / "b.png").write_bytes(images["other"].read_bytes())
    result = run(rows.path, str(tmp_path / "uploads"))
    assert result.exit_code == 1
    assert result.output.splitlines()[0].startswith(f"{folder / 'a.jpg'}: match")
    assert result.output.splitlines()[1] == f"{folder.parent / 'b.png'}: no match"


def test_errors_are_one_line_with_status_2(tmp_path, rows):
    rows.add("pdq", secrets.token_hex(32))
    cases = [
        (tmp_path / "none.db", ["--hash", "pdq:" + "0" * 64], "run 'consortium sync' first"),
        (rows.path, ["--hash", "pdq:abc"], "64 hex characters"),
        (rows.path, ["--hash", "md5:" + "0" * 32, "--radius", "md5=2"], "exact hash"),
        (rows.path, ["--hashes", str(tmp_path / "no.txt")], "No such file"),
        (rows.path, [], "nothing to match"),
        (
            rows.path,
            ["--hash", "pdq:" + "0" * 64, "--server", str(tmp_path / "no.sock")],
            "cannot reach the match server",
        ),
    ]
    for mirror, args, message in cases:
        result = run(mirror, *args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
        assert "Traceback" not in result.output
