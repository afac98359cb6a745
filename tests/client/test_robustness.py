"""The robustness harness's small run: the chosen method on real photographs and evasions.

Needs the photographs of `scripts/fetch-test-images --small` (two Debian packages, fetched
once into the image cache by the fixture below; hashes are computed afresh every run).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]


def harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "bench_robustness", REPOSITORY / "bench" / "robustness.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered so that worker processes can unpickle the harness's dataclasses.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModuleType, object, dict]:
    images = os.environ.get("CONSORTIUM_IMAGE_CACHE", str(REPOSITORY / ".data" / "images"))
    fetch = [REPOSITORY / "scripts" / "fetch-test-images", "--small", images]
    subprocess.run(fetch, check=True)  # noqa: S603 - our own script, fixed arguments
    module = harness()
    # A fresh hash cache, so that the test measures the code as it is, never old results.
    fresh = tmp_path_factory.mktemp("image-cache")
    (fresh / "root").symlink_to(Path(images) / "root")
    previous = os.environ.get("CONSORTIUM_IMAGE_CACHE")
    os.environ["CONSORTIUM_IMAGE_CACHE"] = str(fresh)
    try:
        result = module.run(small=True, jobs=2, descriptors=True)
    finally:
        if previous is None:
            del os.environ["CONSORTIUM_IMAGE_CACHE"]
        else:
            os.environ["CONSORTIUM_IMAGE_CACHE"] = previous
    methods = module.evaluate(result.stored, result.queries, result.distractors, result.evasions)
    methods |= module.evaluate_descriptors(result)
    return module, result, methods


@pytest.mark.slow
def test_chosen_method_recovers_evasions_on_real_photographs(
    small_run: tuple[ModuleType, object, dict],
) -> None:
    module, result, methods = small_run
    chosen = methods[module.CHOSEN]
    assert len(result.stored) == 6
    assert len(result.distractors) >= 200
    assert chosen.mean_recall >= 0.9, chosen.recall
    # Each border and geometry evasion in the subset is caught for most originals.
    assert min(chosen.recall.values()) >= 0.8, chosen.recall


@pytest.mark.slow
def test_chosen_method_makes_no_false_match_on_the_subset(
    small_run: tuple[ModuleType, object, dict],
) -> None:
    module, _, methods = small_run
    chosen = methods[module.CHOSEN]
    assert chosen.distractor_pairs > 1000
    assert chosen.distractor_false == 0
    assert chosen.cross_false == 0


@pytest.mark.slow
def test_plain_pdq_misses_what_the_chosen_method_catches(
    small_run: tuple[ModuleType, object, dict],
) -> None:
    _, _, methods = small_run
    plain = methods["PDQ"].recall
    assert plain["caption bar top 15% white"] == 0
    assert plain["padded canvas 20% white"] == 0
    assert plain["rotate -5 expand"] == 0
    assert plain["JPEG q30"] == 1


@pytest.mark.slow
def test_local_descriptors_recover_crops_and_rotations_without_false_matches(
    small_run: tuple[ModuleType, object, dict],
) -> None:
    _, _, methods = small_run
    orb = methods["ORB, mirrored query too"]
    assert orb.recall["crop 5% each side"] >= 0.8, orb.recall
    assert orb.recall["rotate -3"] >= 0.8, orb.recall
    assert orb.recall["mirror"] >= 0.8, orb.recall
    assert orb.distractor_pairs > 1000
    assert orb.distractor_false == 0
    assert orb.cross_false == 0
    # The stage is a fallback: with the chosen PDQ method it misses nothing either catches.
    combined = methods["chosen PDQ method, then ORB"]
    assert combined.mean_recall >= max(orb.mean_recall, methods["PDQ"].mean_recall)
    assert combined.distractor_false == 0
    assert combined.cross_false == 0
