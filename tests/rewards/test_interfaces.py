"""One reward through every interface: ``score_completions``, the TRL-style functions, the
``python -m rewards.score`` CLI and the ms-swift plugin (loaded by ms-swift's own plugin loader
and called through its reward path) give the same values on the quickstart synthesis rows; and
the rows' own verified targets score 1 on every component (self-consistency)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from inference.jsonl_io import read_jsonl
from inference.types import OPTION_LETTERS
from rewards import RewardConfig, score_completions
from rewards.score import main as score_main
from rewards.score import target_of
from rewards.trl import rows_from_columns, trl_reward_functions

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def program(body: str) -> str:
    return f"<planning>Answer.</planning>\n<code>\ndef execute_command(video, question):\n{body}</code>"


@pytest.fixture(scope="module")
def cases(quickstart_synthesis, tmp_path_factory):
    """Rows (two questions) x completions (target, right letter, wrong letter, native), and a
    shared on-disk call cache so every interface re-runs the same module calls cheaply."""
    rows = list(read_jsonl(quickstart_synthesis.grpo_rows))[:2]
    pairs = []
    for row in rows:
        wrong = next(c for c in OPTION_LETTERS[:len(row["choices"])] if c != row["solution"])
        for text in (target_of(row), program(f"    return make_result('{row['solution']}', 0.8)\n"),
                     program(f"    return make_result('{wrong}', 0.8)\n"),
                     program("    return query_native(video, question, choices)\n")):
            pairs.append((row, text))
    cache = tmp_path_factory.mktemp("reward_call_cache")
    config = dict(answering_vlm="module_config", module_config=str(quickstart_synthesis.module_config),
                  call_cache_dir=str(cache), exec_workers=4)
    return pairs, config


def test_the_targets_of_exported_rows_score_one_everywhere(quickstart_synthesis, tmp_path, capsys) -> None:
    rows = list(read_jsonl(quickstart_synthesis.grpo_rows))
    assert rows, "the quickstart exports GRPO rows"
    out = tmp_path / "scores.jsonl"
    assert score_main(["--rows", str(quickstart_synthesis.grpo_rows), "--targets", "--out", str(out),
                       "--module_config", str(quickstart_synthesis.module_config), "--exec_workers", "4"]) == 0
    summary = capsys.readouterr().out
    assert f"self-consistency: {len(rows)} of {len(rows)} targets score 1 on every component" in summary
    scores = [json.loads(line) for line in out.read_text().splitlines()]
    assert [s["id"] for s in scores] == [r["id"] for r in rows]
    assert all((s["accuracy"], s["format"], s["mode"], s["total"]) == (1.0, 1.0, 1.0, 1.0) for s in scores)


def test_library_trl_cli_and_swift_plugin_agree(cases, tmp_path, monkeypatch, capsys) -> None:
    pairs, config_values = cases
    rows, completions = [r for r, _ in pairs], [c for _, c in pairs]
    library = score_completions(rows, completions, RewardConfig(**config_values))
    assert {v for v in library.total} >= {1.0, 0.5}     # right and wrong letters were both scored

    # TRL-style: every column as a per-sample list, as GRPOTrainer passes them.
    columns = {k: [r.get(k) for r in rows] for k in rows[0]}
    assert rows_from_columns(len(rows), columns) == rows
    funcs = trl_reward_functions(RewardConfig(**config_values))
    for name in ("accuracy", "format", "mode"):
        assert funcs[name](completions, **columns) == library.components[name], name
    assert funcs["videopro"](completions, **columns) == library.total

    # The CLI on the same pairs.
    rows_file, completions_file, out = tmp_path / "rows.jsonl", tmp_path / "completions.jsonl", tmp_path / "s.jsonl"
    unique = {r["id"]: r for r in rows}
    rows_file.write_text("".join(json.dumps(r) + "\n" for r in unique.values()))
    completions_file.write_text("".join(json.dumps({"id": r["id"], "completion": c}) + "\n" for r, c in pairs))
    argv = ["--rows", str(rows_file), "--completions", str(completions_file), "--out", str(out)]
    for key in ("module_config", "call_cache_dir", "exec_workers"):
        argv += [f"--{key}", str(config_values[key])]
    assert score_main(argv) == 0
    assert [json.loads(line)["total"] for line in out.read_text().splitlines()] == library.total
    assert "| **total** |" in capsys.readouterr().out

    # ms-swift: its plugin loader imports our plugin; its reward path calls coderm and the components.
    from swift.rewards import orms
    from swift.rl_core.data import GRPOSample
    from swift.rl_core.grpo_algorithm import compute_rewards_per_func
    from swift.utils import import_external_file

    reward_yaml = tmp_path / "reward.yaml"
    reward_yaml.write_text(yaml.safe_dump(config_values))
    monkeypatch.setenv("VIDEOPRO_REWARD_CONFIG", str(reward_yaml))
    import_external_file(str(REPO / "rewards" / "swift_plugin.py"))
    names = ["coderm", "videopro_accuracy", "videopro_format", "videopro_mode"]
    funcs = [orms[name]() for name in names]
    samples = []
    for row, text in pairs:
        sample_row = {k: v for k, v in row.items() if k != "messages"}
        sample_row["messages"] = [m for m in row["messages"] if m["role"] != "assistant"] + [
            {"role": "assistant", "content": text}]
        samples.append(GRPOSample.from_row(sample_row))
    import torch

    rewards = compute_rewards_per_func(samples, funcs, None, torch.device("cpu"))
    assert rewards.shape == (len(pairs), 4)
    assert rewards[:, 0].tolist() == pytest.approx(library.total)
    for j, name in enumerate(("accuracy", "format", "mode"), start=1):
        assert rewards[:, j].tolist() == library.components[name]
