"""Step metrics and sampled completions: JSON lines always, W&B when asked (rank 0 only).

- ``<output_dir>/logs/metrics.jsonl``: one object per optimiser step (see docs/training.md
  for the keys);
- ``<output_dir>/logs/completions.jsonl``: per step, the first ``num_completions_to_log``
  completions of rank 0 with their prompt id, reward components, total, advantage, failure
  reason, length and finish reason (also a W&B table ``completions``).

On resume, lines for steps after the checkpoint are dropped first, so the logs read as one
uninterrupted run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def _truncate_after(path: Path, step: int) -> None:
    if not path.is_file():
        return
    kept = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line).get("step", 0) <= step]
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(line + "\n" for line in kept))
    os.replace(tmp, path)


class RunLogger:
    """Writes metrics and completions on the main process; a no-op elsewhere."""

    def __init__(self, output_dir: str | Path, enabled: bool, report_to: str, project: str, run_name: str,
                 config: dict[str, Any], resumed_step: int | None = None):
        self.enabled = enabled
        self.dir = Path(output_dir) / "logs"
        self.metrics_path = self.dir / "metrics.jsonl"
        self.completions_path = self.dir / "completions.jsonl"
        self.wandb = None
        if not enabled:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        if resumed_step is not None:
            _truncate_after(self.metrics_path, resumed_step)
            _truncate_after(self.completions_path, resumed_step)
        trackers = {t.strip() for t in report_to.split(",") if t.strip() and t.strip() != "none"}
        unknown = trackers - {"wandb"}
        if unknown:
            raise ValueError(f"report_to: unknown tracker(s) {sorted(unknown)}; use wandb or none")
        if "wandb" in trackers:
            import wandb

            self.wandb = wandb.init(project=project, name=run_name, config=config, dir=str(Path(output_dir)))

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.metrics_path, "a") as fh:
            fh.write(json.dumps({"step": step, **metrics}, default=float) + "\n")
        if self.wandb is not None:
            self.wandb.log({k: v for k, v in metrics.items() if isinstance(v, (int, float))}, step=step)

    def log_completions(self, step: int, entries: list[dict[str, Any]]) -> None:
        if not self.enabled or not entries:
            return
        with open(self.completions_path, "a") as fh:
            for entry in entries:
                fh.write(json.dumps({"step": step, **entry}, default=str) + "\n")
        if self.wandb is not None:
            import wandb

            columns = sorted({k for e in entries for k in e})
            table = wandb.Table(columns=columns, data=[[json.dumps(e.get(c), default=str)
                                                        if isinstance(e.get(c), (dict, list)) else e.get(c)
                                                        for c in columns] for e in entries])
            self.wandb.log({"completions": table}, step=step)

    def close(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()
            self.wandb = None
