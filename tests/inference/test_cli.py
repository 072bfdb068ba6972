"""``videopro-run`` (inference/cli.py): the original ``src/run.py`` flags, the JSON result, and
clear errors for a missing video, an unreachable endpoint and too few choices."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from inference.cli import RunConfig, main
from inference.config import parse_configs
from inference.modules import ModuleConfig
from inference.runner import RunnerConfig

QUESTION = "What is the background colour of the screen at the start?"
PROGRAM = ("def execute_command(video, question):\n"
           "    frames = extract_frames(video, 4)\n"
           "    return query_mc(frames, question, choices)\n")
NATIVE = "def execute_command(video, question):\n    return query_native(video, question, choices)\n"
# Keep the tiny model's work small on a 2-core CPU, and its programs greedy (the same on every run).
FAST = ["--video_max_frames", "4",
        "--max_query_frames", "4",
        "--max_new_tokens", "16", "--temperature", "0", "--device", "cpu"]


def original_flags(video: str, clip_dir: Path, code_file: Path, out: Path) -> list[str]:
    """Every flag of the original release's ``src/run.py``, spelled as it spelled them."""
    return ["--video", video, "--question", QUESTION, "--choices", "red", "blue", "green",
            "--clip-save-folder", str(clip_dir), "--clip-duration", "10", "--workers", "1",
            "--confidence-threshold", "0.75", "--max-refine-rounds", "1", "--code-file", str(code_file),
            "--output", str(out), "--quiet"]


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_every_original_flag_parses(tmp_path: Path) -> None:
    argv = original_flags("v.mp4", tmp_path / "clips", tmp_path / "p.py", tmp_path / "o.json")
    argv += ["--model", "qwen3vl", "--api-base", "http://127.0.0.1:8007/v1"]
    run, runner, modules = parse_configs((RunConfig, RunnerConfig, ModuleConfig), argv)
    assert modules.clip_dir == str(tmp_path / "clips")           # --clip-save-folder
    assert modules.clip_duration == 10.0 and modules.workers == 1
    assert run.choices == ["red", "blue", "green"] and runner.confidence_threshold == 0.75
    assert runner.max_refine_rounds == 1 and run.code_file == str(tmp_path / "p.py")
    assert run.output == str(tmp_path / "o.json") and run.quiet is True
    assert run.model == "qwen3vl" and run.api_base == "http://127.0.0.1:8007/v1"
    run, runner, modules = parse_configs((RunConfig, RunnerConfig, ModuleConfig),
                                         ["--clip_save_folder=/x", "--video", "v"])
    assert modules.clip_dir == "/x"


PAPER = {  # VideoPro §3.5, §4, Fig. 7 and the release's FPS_MAX_FRAMES / VIDEO_MAX_PIXELS
    "confidence_threshold": 0.75, "max_refine_rounds": 1, "temperature": 0.7, "top_p": None, "top_k": None,
    "max_new_tokens": 4096, "final_answer_rule": "last", "fallback_native": False, "trust_program_confidence": False,
    "clip_duration": 10.0, "video_max_frames": 64, "video_max_pixels": 50176, "frame_max_pixels": 50176,
    # perception (§4: LanguageBind_Video clips, subtitles from FFmpeg and Whisper)
    "clip_retriever": "languagebind", "clip_model": "LanguageBind/LanguageBind_Video_FT", "frames_per_clip": 8,
    "asr_enabled": True, "asr_backend": "transformers", "asr_model": "openai/whisper-large-v3",
}


def test_the_paper_settings_are_the_defaults_and_the_paper_recipe_changes_nothing(capsys) -> None:
    default = parse_configs((RunConfig, RunnerConfig, ModuleConfig), [])
    recipe = Path(__file__).resolve().parents[2] / "configs" / "inference" / "paper.yaml"
    paper = parse_configs((RunConfig, RunnerConfig, ModuleConfig), ["--config", str(recipe)])
    assert paper == default
    values = {**vars(default[1]), **vars(default[2])}
    assert {k: values[k] for k in PAPER} == PAPER
    assert set(yaml.safe_load(recipe.read_text())) <= set(values)  # the recipe names real settings
    # --help shows them (argparse's help entry of each flag ends with its default).
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in ("temperature", "max_new_tokens", "final_answer_rule", "fallback_native", "frame_max_pixels",
                 "confidence_threshold"):
        entry = re.search(rf" --{name} .*?\(default: ([^)]*)\)", text)
        assert entry and entry.group(1) == str(PAPER[name]), (name, entry and entry.group(0)[:200])


def test_cli_runs_a_code_file_with_the_tiny_model_and_writes_json(tiny_qwen3_vl, synthetic_video, tmp_path,
                                                                   capsys) -> None:
    code_file, out = tmp_path / "prog.py", tmp_path / "out" / "result.json"
    code_file.write_text(PROGRAM)
    clip_dir = tmp_path / "clips"
    argv = original_flags(str(synthetic_video.video_path), clip_dir, code_file, out)
    assert main(argv + ["--checkpoint", str(tiny_qwen3_vl)] + FAST) == 0

    data = json.loads(out.read_text())
    assert data["video"] == str(synthetic_video.video_path) and data["choices"] == ["red", "blue", "green"]
    assert data["confidence_threshold"] == 0.75 and data["answer"] in ("A", "B", "C")
    rounds = data["rounds"]
    assert rounds[0]["kind"] == "given" and rounds[0]["code"] == PROGRAM and rounds[0]["mode"] == "program"
    assert [c["name"] for c in rounds[0]["execution"]["module_calls"]] == ["extract_frames", "query_mc"]
    # The tiny model's answer is far below τ, so one program refinement was recorded.
    assert [r["kind"] for r in rounds] == ["given", "program_refine"] and data["refined"] is True
    assert rounds[1]["completion_tokens"] == 16 and rounds[1]["prompt"]
    for key in ("output", "execution", "generate_s", "execute_s", "planning", "problems", "format_ok"):
        assert key in rounds[1]
    captured = capsys.readouterr()
    assert captured.out.strip().startswith("Answer: ") and captured.err == ""   # --quiet


def test_cli_config_yaml_and_progress(tiny_qwen3_vl, synthetic_video, tmp_path, capsys) -> None:
    code_file, out = tmp_path / "prog.py", tmp_path / "result.json"
    code_file.write_text("def execute_command(video, question):\n    return make_result('B', 0.9)\n")
    recipe = tmp_path / "run.yaml"
    recipe.write_text(yaml.safe_dump({"clip_dir": str(tmp_path / "clips"), "confidence_threshold": 0.95,
                                      "max_refine_rounds": 0, "fallback_native": False}))
    argv = ["--config", str(recipe), "--video", str(synthetic_video.video_path), "--question", QUESTION,
            "--choices", "red", "blue", "--code-file", str(code_file), "--output", str(out),
            "--checkpoint", str(tiny_qwen3_vl), "--confidence-threshold", "0.8"] + FAST
    assert main(argv) == 0
    data = json.loads(out.read_text())
    assert data["confidence_threshold"] == 0.8                    # the flag beats the YAML
    assert data["answer"] == "B" and [r["kind"] for r in data["rounds"]] == ["given"]
    err = capsys.readouterr().err
    assert "[1/2] Using the given visual program" in err and "answer B" in err and "Saved the result" in err


def test_missing_video_names_the_file(tmp_path) -> None:
    missing = tmp_path / "no_such_video.mp4"
    with pytest.raises(SystemExit, match="no_such_video.mp4.*does not exist"):
        main(["--video", str(missing), "--question", QUESTION, "--choices", "a", "b"])


def test_unreadable_video_is_a_clear_error(tmp_path, tiny_qwen3_vl) -> None:
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(SystemExit, match="broken.mp4"):
        main(["--video", str(bad), "--question", QUESTION, "--choices", "a", "b",
              "--clip-save-folder", str(tmp_path / "clips"), "--checkpoint", str(tiny_qwen3_vl)])


def test_unreachable_endpoint(synthetic_video, tmp_path) -> None:
    base = f"http://127.0.0.1:{closed_port()}/v1"
    with pytest.raises(SystemExit, match=r"cannot reach the VLM endpoint .*127\.0\.0\.1") as info:
        main(["--video", str(synthetic_video.video_path), "--question", QUESTION, "--choices", "a", "b",
              "--api-base", base, "--model", "m", "--clip-save-folder", str(tmp_path / "clips")])
    assert base in str(info.value) and "--checkpoint" in str(info.value)


@pytest.mark.parametrize("choices", [["only"], []])
def test_fewer_than_two_choices(synthetic_video, choices: list[str]) -> None:
    argv = ["--video", str(synthetic_video.video_path), "--question", QUESTION, "--choices", *choices]
    with pytest.raises(SystemExit) as info:
        main(argv)
    if choices:
        assert "at least two options" in str(info.value)
    else:
        assert info.value.code == 2  # argparse: --choices expects at least one argument


def test_missing_required_flags() -> None:
    with pytest.raises(SystemExit, match="--video.*--question.*--choices"):
        main([])


@pytest.mark.vllm
def test_cli_against_the_vllm_server(vllm_server: Any, synthetic_video, tmp_path, capsys) -> None:
    """The served path: module calls and the refinement go to the OpenAI-compatible server."""
    code_file, out = tmp_path / "native.py", tmp_path / "result.json"
    code_file.write_text(NATIVE)
    argv = ["--video", str(synthetic_video.video_path), "--question", QUESTION, "--choices", "red", "blue",
            "green", "--clip-save-folder", str(tmp_path / "clips"), "--api-base", vllm_server.base_url,
            "--model", vllm_server.model, "--code-file", str(code_file), "--confidence-threshold", "1.0",
            "--max-refine-rounds", "1", "--output", str(out), "--quiet"] + FAST
    assert main(argv) == 0
    data = json.loads(out.read_text())
    assert [r["kind"] for r in data["rounds"]] == ["given", "native_refine"]
    first = data["rounds"][0]
    assert first["mode"] == "native" and first["execution"]["success"]
    assert first["execution"]["result"]["metadata"]["backend"].startswith("openai")
    assert data["rounds"][1]["completion_tokens"] > 0
    assert data["answer"] in ("A", "B", "C")


def test_cli_host_error_exits_non_zero_and_still_writes_json(tiny_qwen3_vl, synthetic_video, tmp_path,
                                                              monkeypatch, capsys) -> None:
    """The VLM backend fails (endpoint down): no bug fix, exit status 1, a clear stderr line."""
    from inference.modules import ModuleRuntime

    def down(self, video: str, question: str, choices: list[str]) -> dict:
        raise ConnectionError("endpoint http://vlm:8000 refused the connection")

    monkeypatch.setattr(ModuleRuntime, "query_native", down)
    code_file, out = tmp_path / "native.py", tmp_path / "result.json"
    code_file.write_text(NATIVE)
    argv = ["--video", str(synthetic_video.video_path), "--question", QUESTION, "--choices", "red", "blue",
            "--clip-save-folder", str(tmp_path / "clips"), "--checkpoint", str(tiny_qwen3_vl),
            "--code-file", str(code_file), "--max-refine-rounds", "1", "--output", str(out), "--quiet",
            "--fallback_native"] + FAST
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert captured.out.strip() == "Answer: (none) (confidence=0.00)"
    assert "error: no answer" in captured.err and "ConnectionError" in captured.err
    data = json.loads(out.read_text())                             # written although it failed
    assert [r["kind"] for r in data["rounds"]] == ["given", "fallback"]   # no bug-fix round
    assert data["answer"] == "" and data["stopped_reason"].startswith("host_error: query_native(): ConnectionError")
    assert data["host_error"] == data["rounds"][0]["execution"]["host_error"]
    assert data["rounds"][1]["execution"]["host_error"].startswith("query_native(): ConnectionError")
