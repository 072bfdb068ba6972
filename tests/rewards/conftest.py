"""Fixtures of the reward tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from inference.modules import ModuleRuntime
from rewards import RewardConfig
from rewards.scoring import RewardScorer


@pytest.fixture(scope="module")
def scorer(tiny_qwen3_vl, toy_assets, tmp_path_factory) -> Iterator[RewardScorer]:
    """A scorer over the real module runtime (tiny Qwen3-VL answering, toy CLIP, 4 frames), its
    VLM calls answered by the module library's model; one per test module."""
    runtime = ModuleRuntime(toy_assets.module_config(clip_dir=str(tmp_path_factory.mktemp("reward_clips")),
                                                     video_max_frames=4, max_query_frames=4))
    scorer = RewardScorer(RewardConfig(answering_vlm="module_config", program_timeout_s=8.0, exec_workers=2),
                          runtime=runtime)
    yield scorer
    scorer.close()
