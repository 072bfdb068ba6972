"""Reward cases a careful researcher would call wrong before the hardening (issue: reward
robustness), pinned with the real parser, sandbox and module runtime (tiny Qwen3-VL, synthetic
video): end-of-turn tokens, entry-point parameter names, top-level code, row columns in other
spellings (solution, mode_label, choices, duration), a missing video, weights, and host errors
through the TRL-style functions and the ms-swift plugin (which sum rewards with ``nansum``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rewards import RewardConfig, score_completions

CHOICES = ["red", "blue", "green", "white"]
REPO = Path(__file__).resolve().parents[2]
SIX = ["red", "blue", "green", "white", "black", "pink"]
FORMAT_MODE = RewardConfig(reward_funcs=["format", "mode"], reward_weights=[0.4, 0.6])


def out(body: str, signature: str = "video, question", before: str = "") -> str:
    return (f"<planning>Decide.</planning>\n<code>\n{before}def execute_command({signature}):\n{body}</code>")


CORRECT = out("    return make_result('B', 0.9)\n")
NATIVE = out("    return query_native(video, question, choices)\n")


def row(video, **over) -> dict:
    base = {"id": "q", "videos": [str(video.video_path)], "question": "Which colour?", "choices": CHOICES,
            "solution": "B", "mode_label": "program", "duration": video.duration,
            "subtitles": str(video.subtitle_path)}
    return {**base, **over}


# -- format and mode (no execution) -------------------------------------------------------------

# (name, completion, format, format reason category or None)
FORMAT_TABLE = [
    ("renamed_parameters", out("    return make_result('B', 0.9)\n", "v, q"), 0.0, "bad_signature"),
    ("swapped_parameters", out("    return make_result('B', 0.9)\n", "video, question, duration, choices"),
     0.0, "bad_signature"),
    ("four_parameters", out("    return make_result('B', 0.9)\n", "video, question, choices, duration"), 1.0, None),
    ("top_level_module_call", out("    return make_result('B', 0.9)\n",
                                  before="hints = get_subtitle_hints('v.mp4', 'q', ['a', 'b'])\n"),
     0.0, "top_level_code"),
    ("top_level_print", out("    return make_result('B', 0.9)\n", before="print('loaded')\n"), 0.0, "top_level_code"),
    ("top_level_loop", out("    return make_result('B', 0.9)\n", before="for i in range(3):\n    pass\n"),
     0.0, "top_level_code"),
    ("top_level_constant", out("    return make_result(LETTER, 0.9)\n", before="LETTER = 'B'\nKEYS = ['a', 1]\n"),
     1.0, None),
    ("helper_function", out("    return helper()\n", before="def helper():\n    return make_result('B', 0.9)\n"),
     1.0, None),
]


@pytest.mark.parametrize("name, completion, fmt, category", FORMAT_TABLE, ids=[t[0] for t in FORMAT_TABLE])
def test_format_cases(synthetic_video, name, completion, fmt, category) -> None:
    batch = score_completions([row(synthetic_video)], [completion], FORMAT_MODE)
    assert batch.components["format"] == [fmt], (name, batch.reasons["format"])
    reason = batch.reasons["format"][0]
    assert (reason is None) if category is None else reason.startswith(category + ":"), reason


@pytest.mark.parametrize("weights, match", [
    ([0.5, -0.2, 0.3], "negative"), ([0.5, float("nan"), 0.3], "finite"), ([0, 0, 0], "all zero"),
    ([0.5, "x", 0.3], "numbers"),
])
def test_weights_are_validated(weights, match) -> None:
    with pytest.raises(ValueError, match=match):
        RewardConfig(reward_weights=weights)
    assert RewardConfig(reward_weights=[1, 1, 1]).weights == {"accuracy": 1.0, "format": 1.0, "mode": 1.0}


def test_weights_from_yaml_are_validated(tmp_path, monkeypatch) -> None:
    from rewards.trl import config_from_environment

    path = tmp_path / "reward.yaml"
    path.write_text(yaml.safe_dump({"reward_weights": [0.5, 0.2, -0.3]}))
    monkeypatch.setenv("VIDEOPRO_REWARD_CONFIG", str(path))
    with pytest.raises(ValueError, match="negative"):
        config_from_environment()
