"""Reward cases a careful researcher would call wrong before the hardening (issue: reward
robustness), pinned with the real parser, sandbox and module runtime (tiny Qwen3-VL, synthetic
video): end-of-turn tokens, entry-point parameter names, top-level code, row columns in other
spellings (solution, mode_label, choices, duration), a missing video, weights, and host errors
through the TRL-style functions and the ms-swift plugin (which sum rewards with ``nansum``)."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest
import torch
import yaml

from inference.modules import ModuleConfig, ModuleRuntime
from rewards import RewardConfig, score_completions
from rewards.scoring import completion_text
from rewards.trl import trl_reward_functions

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
    ("im_end", CORRECT + "<|im_end|>", 1.0, None),
    ("endoftext_and_newlines", CORRECT + "\n<|im_end|>\n<|endoftext|>\n", 1.0, None),
    ("end_token_inside_code", CORRECT.replace("</code>", "<|im_end|></code>"), 0.0, "syntax_error"),
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


def test_end_tokens_are_stripped_from_every_completion_shape() -> None:
    assert completion_text("x</code><|im_end|>") == "x</code>"
    assert completion_text("x</code>\n") == "x</code>\n"           # nothing stripped, text unchanged
    assert completion_text([{"role": "assistant", "content": [{"type": "text", "text": "a"},
                                                              {"type": "text", "text": "b<|im_end|>"}]}]) == "ab"
    assert completion_text({"role": "assistant", "content": "y<|endoftext|>"}) == "y"
    with pytest.raises(TypeError, match="assistant message"):
        completion_text([{"role": "user", "content": "q"}])


@pytest.mark.parametrize("label, program, mode", [
    ("Native", NATIVE, 1.0), (" NATIVE\n", NATIVE, 1.0), ("Program", CORRECT, 1.0), ("PROGRAM", NATIVE, 0.0),
])
def test_mode_label_spellings(synthetic_video, label, program, mode) -> None:
    batch = score_completions([row(synthetic_video, mode_label=label)], [program], FORMAT_MODE)
    assert batch.components["mode"] == [mode], batch.reasons["mode"]


@pytest.mark.parametrize("label", ["visual_program", 1, True])
def test_an_unknown_mode_label_is_an_error_naming_the_column(synthetic_video, label) -> None:
    with pytest.raises(ValueError, match=r"row 0 \('q'\): column 'mode_label' is .*one of \('native', 'program'\)"):
        score_completions([row(synthetic_video, mode_label=label)], [CORRECT], FORMAT_MODE)


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


# -- accuracy (executed) --------------------------------------------------------------------------


# (name, completion, row overrides, accuracy)
ACCURACY_TABLE = [
    ("solution_in_parentheses", CORRECT, {"solution": "(B)"}, 1.0),
    ("solution_lower_case", CORRECT, {"solution": "b"}, 1.0),
    ("solution_as_option_text", CORRECT, {"solution": "Blue"}, 1.0),
    ("solution_as_option_text_wrong", CORRECT, {"solution": "green"}, 0.0),
    ("choices_as_letter_dict", out("    return make_result('B' if choices[1] == 'blue' else 'A', 0.9)\n"),
     {"choices": dict(zip("ABCD", CHOICES))}, 1.0),
    ("duration_missing_is_probed", out("    return make_result('B' if duration and duration > 1 else 'A', 0.9)\n"),
     {"duration": None}, 1.0),
    ("duration_as_text", out("    return make_result('B' if duration > 1 else 'A', 0.9)\n"),
     {"duration": "12.5"}, 1.0),
    ("six_choices_letter_e", out("    return 'E'\n"), {"choices": SIX, "solution": "E"}, 1.0),
    ("four_choices_letter_e", out("    return 'E'\n"), {}, 0.0),
    ("im_end_after_program", CORRECT + "<|im_end|>", {}, 1.0),
]


@pytest.mark.parametrize("name, completion, over, accuracy", ACCURACY_TABLE, ids=[t[0] for t in ACCURACY_TABLE])
def test_accuracy_cases(scorer, synthetic_video, name, completion, over, accuracy) -> None:
    batch = scorer.score([row(synthetic_video, **over)], [completion])
    assert batch.components["accuracy"] == [accuracy], (name, batch.reasons["accuracy"])
    if name == "im_end_after_program":
        assert batch.total == [1.0]


@pytest.mark.parametrize("over, column", [
    ({"solution": 1}, "solution"), ({"solution": "1"}, "solution"), ({"solution": "E"}, "solution"),
    ({"solution": "a bowl"}, "solution"), ({"choices": "red, blue"}, "choices"),
    ({"choices": {"x": "red", "y": "blue"}}, "choices"), ({"duration": -3}, "duration"),
    ({"duration": "long"}, "duration"), ({"videos": ["/nonexistent/video.mp4"]}, "videos"),
])
def test_unusable_columns_are_errors_naming_the_column(scorer, synthetic_video, over, column) -> None:
    with pytest.raises(ValueError, match=rf"row 0 \('q'\): column '{column}'"):
        scorer.score([row(synthetic_video, **over)], [CORRECT])


# -- host errors through the trainers' interfaces --------------------------------------------------


@pytest.fixture()
def dead_endpoint_fields(toy_assets, tmp_path):
    with socket.socket() as s:  # a port nothing listens on: the answering endpoint is down
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return toy_assets.module_fields(vlm_backend="openai", vlm_base_url=f"http://127.0.0.1:{port}/v1",
                                    vlm_model="tiny", clip_dir=str(tmp_path / "clips"), vlm_timeout=5.0,
                                    video_max_frames=4)


def test_trl_component_functions_are_all_none_for_an_unscorable_completion(synthetic_video, dead_endpoint_fields):
    # TRL adds the functions' values with nansum and excludes a completion only when every
    # function returned None: a None accuracy beside format 1 and mode 0 would train as accuracy 0.
    runtime = ModuleRuntime(ModuleConfig(**dead_endpoint_fields))
    config = RewardConfig(answering_vlm="module_config", program_timeout_s=30.0, exec_workers=2)
    rows = [row(synthetic_video)] * 2
    columns = {k: [r[k] for r in rows] for k in rows[0]}
    funcs = trl_reward_functions(config, runtime=runtime)
    logged = []
    values = {name: fn([NATIVE, CORRECT], **columns, log_metric=lambda k, v: logged.append((k, v)))
              for name, fn in funcs.items()}
    assert values == {"accuracy": [None, 1.0], "format": [None, 1.0], "mode": [None, 1.0], "videopro": [None, 1.0]}
    assert ("videopro/unscorable", 1.0) in logged


def test_swift_plugin_refuses_to_let_an_unscorable_completion_train_as_zero(synthetic_video, dead_endpoint_fields,
                                                                           tmp_path, monkeypatch) -> None:
    from swift.rewards import orms
    from swift.rl_core.data import GRPOSample
    from swift.rl_core.grpo_algorithm import compute_rewards_per_func
    from swift.utils import import_external_file

    modules_yaml = tmp_path / "modules.yaml"
    modules_yaml.write_text(yaml.safe_dump(dead_endpoint_fields))
    reward_yaml = tmp_path / "reward.yaml"
    reward_yaml.write_text(yaml.safe_dump({"module_config": str(modules_yaml), "program_timeout_s": 30.0,
                                           "exec_workers": 2}))
    monkeypatch.setenv("VIDEOPRO_REWARD_CONFIG", str(reward_yaml))
    import_external_file(str(REPO / "rewards" / "swift_plugin.py"))
    base = row(synthetic_video)
    samples = [GRPOSample.from_row({**base, "messages": [{"role": "user", "content": "<video>Which colour?"},
                                                         {"role": "assistant", "content": text}]})
               for text in (CORRECT, CORRECT.replace("'B'", "'A'"))]
    rewards = compute_rewards_per_func(samples, [orms["coderm"]()], None, torch.device("cpu"))
    assert rewards[:, 0].tolist() == pytest.approx([1.0, 0.5])   # scorable: the weighted reward
    samples.append(GRPOSample.from_row({**base, "messages": [{"role": "user", "content": "<video>Which colour?"},
                                                             {"role": "assistant", "content": NATIVE}]}))
    for name in ("coderm", "videopro_accuracy", "videopro_format", "videopro_mode"):
        with pytest.raises(RuntimeError, match=r"1 of 3 completions could not be scored \(host errors"):
            compute_rewards_per_func(samples, [orms[name]()], None, torch.device("cpu"))


def test_subtitle_results_follow_each_rows_subtitles_through_the_cache(scorer, synthetic_video, tmp_path) -> None:
    # Two rows on one video, one with subtitles and one without (Video-MME's two settings), share
    # the call cache: the second must neither inherit the first row's registration nor be served
    # its cached subtitle windows.
    video = tmp_path / "bare.mp4"   # no sidecar subtitle file beside this copy
    shutil.copyfile(synthetic_video.video_path, video)
    reads = out("    s = get_informative_subtitles(video, question)\n    return make_result('B' if s else 'A', 0.9)\n")
    with_subs = row(synthetic_video, videos=[str(video)])
    without = row(synthetic_video, videos=[str(video)], subtitles=None)
    batch = scorer.score([with_subs], [reads])
    assert batch.components["accuracy"] == [1.0], batch.reasons["accuracy"]   # windows found
    batch = scorer.score([without], [reads])
    assert batch.components["accuracy"] == [0.0], batch.reasons["accuracy"]
    batch = scorer.score([with_subs], [reads])
    assert batch.components["accuracy"] == [1.0] and batch.records[0]["cache_hits"] >= 1  # still cached
    # Within one step (programs run concurrently) the rows of a video must agree on its subtitles.
    with pytest.raises(ValueError, match="row 1 .*subtitles.*same video"):
        scorer.score([with_subs, without], [reads, reads])
