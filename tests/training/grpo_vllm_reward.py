"""A toy GRPO reward for the colocated vLLM tests: ``score_brevity`` (a learning signal from the
first step), and once per call one module-style VLM request to the policy the loop passes, whose
identity and reply are appended to the JSON-lines file ``$VIDEOPRO_TEST_IDENTITIES``."""

from __future__ import annotations

import json
import os
from typing import Any

from tests.training.grpo_toy_reward import score_brevity


def score_brevity_asking_the_policy(rows: list[dict[str, Any]], completions: list[str], config: Any = None, *,
                                    runtime: Any = None, vlm: Any = None, truncated: list[bool] | None = None) -> Any:
    from inference.backends.vlm import GenerateRequest

    if vlm is None:
        raise ValueError("this reward needs the policy as its VLM (reward_vlm: policy)")
    reply = vlm.generate_batch([GenerateRequest(prompt="Is there a square? Answer yes or no.", max_new_tokens=3)])[0]
    path = os.environ.get("VIDEOPRO_TEST_IDENTITIES")
    if path:
        with open(path, "a") as fh:
            fh.write(json.dumps({"identity": vlm.identity(), "answered": reply.num_tokens > 0}) + "\n")
    return score_brevity(rows, completions, config, runtime=runtime, vlm=vlm, truncated=truncated)
