"""Score completions offline: ``python -m rewards.score``.

    python -m rewards.score --rows grpo.jsonl --completions completions.jsonl --out scores.jsonl \\
        --module_config modules.yaml
    python -m rewards.score --rows grpo.jsonl --targets --out scores.jsonl --module_config modules.yaml

``--rows`` are GRPO rows as data synthesis exports them. ``--completions`` is JSON lines of
``{"id": <row id>, "completion": "<planning>...</code>"}`` (optionally ``"truncated": true``), any
number per row; ``--targets`` scores each row's own target (its assistant turn) instead: the
**self-consistency check** — every exported row's verified target must score accuracy 1,
format 1 and mode 1, and the summary says which do not (a mismatch is a bug in synthesis or in
the reward). One score line per completion goes to ``--out``; a summary table to stdout.

The programs' VLM module calls are answered by the module library's configured VLM
(``--module_config``: an OpenAI-compatible endpoint or an in-process checkpoint).
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference.config import config_field, parse_configs
from inference.jsonl_io import read_jsonl
from rewards.config import RewardConfig
from rewards.scoring import RewardBatch, score_completions


@dataclass
class ScoreArgs:
    """What to score and where the scores go."""

    rows: str = config_field("", "GRPO rows (JSON lines, as data_synthesis exports them).")
    completions: str = config_field("", "Completions to score: JSON lines of {id, completion[, truncated]}.")
    targets: bool = config_field(False, "Score each row's own target program (the self-consistency check) "
                                        "instead of --completions.")
    out: str = config_field("", "Write one JSON line of scores per completion here.")
    quiet: bool = config_field(False, "Print only the summary's totals line.")


@dataclass
class OfflineRewardConfig(RewardConfig):
    """RewardConfig whose VLM module calls go to the module library's VLM (no policy offline)."""

    answering_vlm: str = config_field("module_config", "Who answers the programs' VLM module calls: "
                                                       "'module_config' (the module library's vlm_backend).")


def target_of(row: dict[str, Any]) -> str:
    """A row's target: its last assistant message."""
    for message in reversed(row.get("messages") or []):
        if message.get("role") == "assistant":
            return str(message.get("content", ""))
    raise ValueError(f"row {row.get('id')!r} has no assistant message to score as its target; --targets needs "
                     "rows with their target program (data_synthesis exports them so)")


def pair_completions(rows: list[dict[str, Any]], completions: list[dict[str, Any]],
                     source: str) -> tuple[list[dict[str, Any]], list[str], list[bool]]:
    """(row, completion, truncated) triples for completion lines that name their row by ``id``."""
    by_id = {str(r.get("id")): r for r in rows}
    paired_rows, texts, truncated = [], [], []
    for number, line in enumerate(completions, start=1):
        row = by_id.get(str(line.get("id")))
        if row is None:
            raise ValueError(f"{source}:{number}: id {line.get('id')!r} is not a row of --rows; each completion "
                             "line names the row it answers")
        if not isinstance(line.get("completion"), str):
            raise ValueError(f"{source}:{number}: 'completion' must be the completion text")
        paired_rows.append(row)
        texts.append(line["completion"])
        truncated.append(bool(line.get("truncated", False)))
    return paired_rows, texts, truncated


def _stats(values: Sequence[float | None]) -> tuple[int, float | None, float | None]:
    scored = [v for v in values if v is not None]
    if not scored:
        return 0, None, None
    mean = sum(scored) / len(scored)
    return len(scored), mean, math.sqrt(sum((v - mean) ** 2 for v in scored) / len(scored))


def summary_table(batch: RewardBatch, rows: Sequence[dict[str, Any]], *, targets: bool) -> str:
    """Markdown summary: per-component mean/std, failure reasons, and the self-consistency line."""
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    lines = ["| reward | weight | scored | mean | std |", "|---|---|---|---|---|"]
    for name, values in batch.components.items():
        n, mean, std = _stats(values)
        lines.append(f"| {name} | {batch.weights[name]:g} | {n} | {fmt(mean)} | {fmt(std)} |")
    n, mean, std = _stats(batch.total)
    lines.append(f"| **total** | | {n} | {fmt(mean)} | {fmt(std)} |")
    reasons = Counter({k: v for k, v in batch.counters.items() if v and k != "unscorable"})
    if reasons:
        lines += ["", "| reason | count |", "|---|---|"] + [f"| {k} | {v} |" for k, v in reasons.most_common()]
    lines.append("")
    lines.append(f"completions: {len(batch)}; unscorable (host errors): {batch.counters.get('unscorable', 0)}")
    if targets:
        bad = [str(r.get("id")) for i, r in enumerate(rows)
               if any(batch.components[c][i] != 1.0 for c in batch.components)]
        lines.append(f"self-consistency: {len(rows) - len(bad)} of {len(rows)} targets score 1 on every component"
                     + (f"; mismatches (a bug in synthesis or the reward): {', '.join(bad)}" if bad else ""))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # 1. Configuration: what to score; the reward and its execution settings.
    args, config = parse_configs((ScoreArgs, OfflineRewardConfig), argv)
    if not args.rows or not Path(args.rows).is_file():
        raise SystemExit(f"error: --rows {args.rows!r} is not a file; pass the GRPO rows (JSON lines)")
    if args.targets == bool(args.completions):
        raise SystemExit("error: pass exactly one of --completions FILE or --targets")
    rows = list(read_jsonl(args.rows))

    # 2. Pair completions with their rows.
    if args.targets:
        paired, texts, truncated = rows, [target_of(r) for r in rows], [False] * len(rows)
    else:
        if not Path(args.completions).is_file():
            raise SystemExit(f"error: --completions {args.completions!r} is not a file")
        paired, texts, truncated = pair_completions(rows, list(read_jsonl(args.completions)), args.completions)

    # 3. Score (programs executed in the sandbox).
    batch = score_completions(paired, texts, config, truncated=truncated)

    # 4. Write the scores and the summary.
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            for row, line in zip(paired, batch.rows()):
                fh.write(json.dumps({"id": row.get("id"), **line}, ensure_ascii=False, allow_nan=False) + "\n")
        os.replace(tmp, out)
    table = summary_table(batch, paired, targets=args.targets)
    print(table if not args.quiet else table.splitlines()[-1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
