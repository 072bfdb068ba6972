"""Reading training rows: a JSON-lines file (the datasets data synthesis exports) or a JSON list."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def load_rows(path: str | Path, validate: Callable[[dict[str, Any], str], dict[str, Any]],
              kind: str) -> list[dict[str, Any]]:
    """Every row of ``path`` through ``validate(row, where)`` (``where`` names the file and line);
    ``kind`` ("SFT", "GRPO") names the data in errors. An empty file is an error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{kind} data file {str(path)!r} does not exist")
    text = path.read_text()
    if text.lstrip().startswith("["):
        rows = [validate(r, f"{path}[{i}]") for i, r in enumerate(json.loads(text))]
    else:
        rows = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
            rows.append(validate(row, f"{path}:{lineno}"))
    if not rows:
        raise ValueError(f"{kind} data file {str(path)!r} holds no rows")
    return rows
