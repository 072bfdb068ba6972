"""The GRPO reward (paper Eq. 3, A.3): R = 0.5 accuracy + 0.2 format + 0.3 mode.

- :mod:`rewards.functions` — the components, plain functions registered by name (``REWARDS``);
- :mod:`rewards.config` — ``RewardConfig`` (components, weights from YAML, execution settings);
- :mod:`rewards.scoring` — ``score_completions(rows, completions, config)`` -> ``RewardBatch``:
  parse, execute the programs concurrently in the sandbox, apply the components;
- :mod:`rewards.trl` — the same components as TRL-style functions ``(completions, **columns)``;
- :mod:`rewards.swift_plugin` — an ms-swift external plugin registering them (and ``coderm``);
- ``python -m rewards.score`` — score a file of completions offline, with a summary table.
"""

from rewards.config import PAPER_REWARD_FUNCS, PAPER_REWARD_WEIGHTS, RewardConfig
from rewards.functions import REWARDS, Sample, Score, reward
from rewards.scoring import RewardBatch, RewardScorer, score_completions

__all__ = ["PAPER_REWARD_FUNCS", "PAPER_REWARD_WEIGHTS", "REWARDS", "RewardBatch", "RewardConfig", "RewardScorer",
           "Sample", "Score", "reward", "score_completions"]
