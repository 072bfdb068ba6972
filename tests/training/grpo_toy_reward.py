"""A real reward for a toy GRPO task, computed from the completion text alone: format (the
strict ``<planning>…</planning><code>…</code>`` layout, ``inference.programs.parse_model_output``)
and mode (a valid program whose AST mode, ``classify_mode``, equals the row's ``mode_label``),
weighted as in the paper (0.2 format, 0.3 mode; the accuracy term needs program execution and is
left out). It has ``rewards.score_completions``' signature and result fields, so the loop calls
it exactly as it calls the project's reward (``--reward_fn tests.training.grpo_toy_reward:score_completions``).

A row with ``"toy_unscorable": true`` scores ``None`` (a host error), to exercise that path.
"""

from __future__ import annotations

from typing import Any

from inference.programs import analyse_output
from training.grpo.reward_adapter import RewardResult

WEIGHTS = {"format": 0.2, "mode": 0.3}


def score_completions(rows: list[dict[str, Any]], completions: list[str], config: Any = None, *,
                      runtime: Any = None, vlm: Any = None, truncated: list[bool] | None = None) -> RewardResult:
    out = RewardResult(components={"format": [], "mode": []}, weights=dict(WEIGHTS), counters={"scored": 0})
    for row, text in zip(rows, completions):
        if row.get("toy_unscorable"):
            out.components["format"].append(None)
            out.components["mode"].append(None)
            out.total.append(None)
            out.failures.append("host_error: toy")
            out.records.append(None)
            continue
        analysis = analyse_output(text)
        fmt = 1.0 if analysis.parsed.format_ok else 0.0
        mode = 1.0 if analysis.runnable and analysis.mode == row["mode_label"] else 0.0
        out.components["format"].append(fmt)
        out.components["mode"].append(mode)
        out.total.append(WEIGHTS["format"] * fmt + WEIGHTS["mode"] * mode)
        out.failures.append(None if analysis.runnable else "format: no_valid_program")
        out.records.append({"mode": analysis.mode})
        out.counters["scored"] += 1
    return out


def score_brevity(rows: list[dict[str, Any]], completions: list[str], config: Any = None, *,
                  runtime: Any = None, vlm: Any = None, truncated: list[bool] | None = None) -> RewardResult:
    """A toy reward that varies even for a random model: ``1 - characters / 100`` (clipped at 0),
    so a group's samples differ and the loop has a learning signal from the first step."""
    scores = [max(0.0, 1.0 - len(text) / 100.0) for text in completions]
    return RewardResult(components={"brevity": list(scores)}, weights={"brevity": 1.0}, total=list(scores),
                        failures=[None] * len(scores), records=[None] * len(scores), counters={})
