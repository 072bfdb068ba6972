"""The inference quickstart (``python -m inference.toy.demo``): every module and the runner on a
synthetic video, offline, and a rerun in the same folder that reuses what exists."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from inference.programs import MODULE_NAMES
from inference.toy import ToyAssets, demo

FAST = ["--max-new-tokens", "8"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory, toy_assets: ToyAssets) -> Path:
    """A demo folder whose models are the session's toy models (the demo builds the same ones
    with ``build_toy_assets``; linking them saves building them twice in one test session)."""
    root = tmp_path_factory.mktemp("quickstart")
    models = root / "models"
    models.mkdir()
    for path in (toy_assets.qwen3_vl, toy_assets.clip, toy_assets.grounding_dino):
        (models / path.name).symlink_to(path, target_is_directory=True)
    return root


@pytest.fixture(scope="module")
def first_run(workdir: Path) -> dict[str, Any]:
    """The full demo, run once for this file's tests."""
    stdout = io.StringIO()  # capsys is per test; this fixture serves the whole file
    with contextlib.redirect_stdout(stdout):
        rc = demo.main(["--workdir", str(workdir)] + FAST)
    return {"rc": rc, "stdout": stdout.getvalue()}


@pytest.mark.slow
def test_demo_calls_every_module_and_runs_the_runner(workdir: Path, first_run: dict[str, Any]) -> None:
    assert first_run["rc"] == 0, first_run["stdout"]
    modules = json.loads((workdir / "modules.json").read_text())
    assert [m["module"] for m in modules] == list(MODULE_NAMES)
    assert all(m["ok"] for m in modules), [m for m in modules if not m["ok"]]
    by_name = {m["module"]: m["summary"] for m in modules}
    assert by_name["extract_frames"].startswith("4 frames at t=")
    assert by_name["make_result"].startswith("answer='B' confidence=0.900")
    # The packaged EasyOCR weights read the burned-in text the synthetic video shows there.
    from inference.toy import TOY_VIDEO_DURATION_S, TOY_VIDEO_SEED
    from inference.toy.synthetic_video import generate_synthetic_video

    video = generate_synthetic_video(workdir / "videos", duration_s=TOY_VIDEO_DURATION_S, seed=TOY_VIDEO_SEED)
    frame_time = float(by_name["extract_frames"].split("[")[1].split(",")[1])
    assert video.content_at(frame_time).text.lower() in by_name["run_ocr"].lower()

    # b) the tiny model's own program: garbage -> bug fix -> fallback, every round recorded.
    record = video.qa_records[0]
    result = json.loads((workdir / "run_result.json").read_text())
    assert result["question_id"] == record.id and result["ground_truth"] == record.answer
    assert [r["kind"] for r in result["rounds"]] == ["initial", "bugfix", "fallback"]
    assert result["rounds"][0]["completion_tokens"] == 8 and result["rounds"][0]["prompt"]
    assert result["final_round"] == 2 and result["answer"] in "ABCD" and result["answer"]
    # a) the hand-written program ran in the sandbox; its answer survives the failed refinement.
    given = json.loads((workdir / "run_result_given.json").read_text())
    first = given["rounds"][0]
    assert first["kind"] == "given" and first["mode"] == "program" and first["execution"]["success"]
    calls = [c["name"] for c in first["execution"]["module_calls"]]
    assert calls[:3] == ["get_informative_subtitles", "trim_frames", "query_mc"]
    assert given["final_round"] == 0 and given["answer"] == first["execution"]["result"]["answer"]
    out = first_run["stdout"]
    assert "[4/4] Adaptive runner" in out and "final answer:" in out and "round 2 fallback" in out


def test_demo_rerun_reuses_models_and_video(workdir: Path, first_run: dict[str, Any]) -> None:
    assert first_run["rc"] == 0
    video = next((workdir / "videos").glob("*.mp4"))
    before = {p: p.stat().st_mtime_ns for p in [video, *(workdir / "models").rglob("*.safetensors")]}
    result_before = (workdir / "run_result.json").stat().st_mtime_ns
    assert demo.main(["--workdir", str(workdir), "--skip-modules"] + FAST) == 0
    assert {p: p.stat().st_mtime_ns for p in before} == before        # nothing rebuilt
    assert (workdir / "run_result.json").stat().st_mtime_ns > result_before
    rerun = json.loads((workdir / "run_result.json").read_text())
    assert [r["kind"] for r in rerun["rounds"]] == ["initial", "bugfix", "fallback"]
    assert not list(workdir.glob("*.tmp"))
