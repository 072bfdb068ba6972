"""The GRPO loop's reward call with the project's reward (``rewards.score_completions``) on the
quickstart synthesis output (``slow``): exported rows' verified target programs, executed in
the sandbox with their VLM calls answered by the policy (``reward_vlm: policy``, LoRA still zero
so the policy equals the model the synthesis ran), score 1 on every component; the answering
identity carries the optimiser step."""

from __future__ import annotations

import pytest
import yaml

from inference.video_sampling import FRAME_POLICY_FIELDS

pytestmark = pytest.mark.slow


def test_project_reward_runs_programs_with_the_policy_answering(quickstart_synthesis, tmp_path):
    from training.common.model import load_processor
    from training.common.video import spatial_factor
    from training.grpo.config import GRPOConfig
    from training.grpo.data import load_grpo_rows
    from training.grpo.engines import generation_model
    from training.grpo.policy import DistInfo, build_policy, rollout_mode
    from training.grpo.reward_adapter import LoopReward

    modules = yaml.safe_load(quickstart_synthesis.module_config.read_text())
    checkpoint = modules["vlm_checkpoint"]
    rows = load_grpo_rows(quickstart_synthesis.grpo_rows)
    rows = rows[:3]
    reward_yaml = tmp_path / "reward.yaml"
    reward_yaml.write_text("exec_workers: 2\nprogram_timeout_s: 120\n")
    cfg = GRPOConfig(model_name_or_path=checkpoint, torch_dtype="float32", attn_implementation="sdpa",
                     output_dir=str(tmp_path / "out"), reward_module_config=str(quickstart_synthesis.module_config),
                     reward_config=str(reward_yaml), gradient_checkpointing=False,
                     **{f: modules[f] for f in FRAME_POLICY_FIELDS if f in modules})
    processor = load_processor(checkpoint)
    engine, _ = build_policy(cfg, DistInfo(), total_steps=1)
    reward = LoopReward(cfg, generation_model(engine.module), processor, spatial_factor(processor))
    try:
        assert type(reward.config).__module__.startswith("rewards")  # the project's RewardConfig
        assert reward.config.answering_vlm == "policy"
        # The rows' verified targets, and a native-mode program for the first row (whose label is
        # program): query_native makes the policy answer from the whole video.
        native = ("<planning>Answer from the whole video.</planning>\n<code>\ndef execute_command(video, question):\n"
                  "    return query_native(video, question, choices)\n</code>")
        completions = [r["messages"][-1]["content"] for r in rows] + [native]
        rows = rows + [rows[0]]
        assert rows[-1]["mode_label"] == "program"
        with rollout_mode(engine):
            result = reward(rows, completions, [False] * len(rows))
        assert set(result.components) == {"accuracy", "format", "mode"}
        for name, values in result.components.items():  # the targets score 1, as in synthesis
            assert values[:-1] == [1.0] * (len(rows) - 1), (name, values, result.failures)
        assert result.total[:-1] == pytest.approx([1.0] * (len(rows) - 1))
        assert result.components["format"][-1] == 1.0 and result.components["mode"][-1] == 0.0
        assert result.components["accuracy"][-1] in (0.0, 1.0)
        assert result.timing.get("vlm_requests", 0) >= 1  # query_native asked the policy
        assert "@step0" in reward.runtime.identity()["vlm"]
        reward.set_weights_version(3)
        assert "@step3" in reward.runtime.identity()["vlm"]  # new weights: no stale cache hits
    finally:
        reward.close()
