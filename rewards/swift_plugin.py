"""ms-swift external plugin: the VideoPro reward for ``swift rlhf --rlhf_type grpo``.

The paper's training command names this plugin (``--external_plugins plugin.py --reward_funcs
coderm``); the original release never shipped it. With this file::

    VIDEOPRO_REWARD_CONFIG=configs/rewards/swift.yaml \\
    swift rlhf --rlhf_type grpo --external_plugins rewards/swift_plugin.py --reward_funcs coderm \\
        --dataset outputs/synthesis/dataset/grpo/train.jsonl ...

``coderm`` is the paper's weighted reward (0.5 accuracy + 0.2 format + 0.3 mode, or the weights
of ``$VIDEOPRO_REWARD_CONFIG``); ``videopro_accuracy``, ``videopro_format`` and ``videopro_mode``
are the components alone (``--reward_funcs videopro_accuracy videopro_format videopro_mode
--reward_weights 0.5 0.2 0.3`` is the same reward with ms-swift's own weighting and per-component
logging). ms-swift passes every dataset column of our GRPO rows (``solution``, ``choices``,
``mode_label``, ``videos``, ``question``, ``duration``, ``subtitles``) and ``is_truncated`` as
per-sample lists. The programs' VLM module calls go to the module library's configured VLM
(``module_config`` in ``$VIDEOPRO_REWARD_CONFIG``: e.g. a ``vllm serve`` endpoint), since
ms-swift does not hand its colocated engine to reward functions. An unscorable completion (a
host error: the endpoint down, the sandbox not starting) raises :class:`UnscorableCompletions`:
ms-swift turns ``None`` into NaN and adds the rewards with ``nansum``, so it would train on the
completion as a reward of 0 (it has no way to leave one out of the advantage).

The project must be importable (``pip install -e .`` or ``PYTHONPATH`` at the repository root).
"""

from __future__ import annotations

from typing import Any

from swift.rewards import ORM, orms

from rewards.trl import _LAST, config_from_environment, trl_reward_function


class UnscorableCompletions(RuntimeError):
    """Some completions could not be scored (host errors) and ms-swift cannot exclude them."""


class _VideoProReward(ORM):
    component = "videopro"

    def __init__(self, args: Any = None, **kwargs: Any) -> None:
        super().__init__(args, **kwargs)
        self.function = trl_reward_function(config_from_environment(), self.component)

    def __call__(self, completions: list[str], **kwargs: Any) -> list[float]:
        values = self.function(completions, **kwargs)
        unscorable = [i for i, v in enumerate(values) if v is None]
        if unscorable:
            # ms-swift adds the reward functions' values with nansum and has no way to leave a
            # completion out of the advantage: a None (NaN) would train as a reward of 0.
            batch = _LAST.batch
            errors = [batch.failures[i] for i in unscorable if batch is not None and i < len(batch)]
            raise UnscorableCompletions(
                f"{self.component}: {len(unscorable)} of {len(values)} completions could not be scored (host errors, "
                f"e.g. {errors[0] if errors else 'unknown'}); ms-swift would score them 0 (it sums rewards with "
                "nansum and cannot leave a completion out of the advantage), so the step is stopped. Fix the module "
                "backends (the answering endpoint in module_config) and resume from the last checkpoint.")
        return values


class CodeRM(_VideoProReward):
    """The paper's reward: the weighted sum of accuracy, format and mode."""

    component = "videopro"


class VideoProAccuracy(_VideoProReward):
    component = "accuracy"


class VideoProFormat(_VideoProReward):
    component = "format"


class VideoProMode(_VideoProReward):
    component = "mode"


orms["coderm"] = CodeRM
orms["videopro_accuracy"] = VideoProAccuracy
orms["videopro_format"] = VideoProFormat
orms["videopro_mode"] = VideoProMode
