"""Encode SFT rows with ms-swift's own code, in a process of its own (run by test_ms_swift_parity.py).

    python -m tests.training.ms_swift_encode OUT.json PIXEL_DTYPE -- SWIFT_SFT_ARGS...

Builds ``swift.pipelines.train.sft.SwiftSft(args)`` (what ``swift sft ARGS`` builds), loads the
``--dataset`` with ms-swift's loader and encodes every row with the pipeline's template
(``Qwen3VLTemplate`` for ``--model_type qwen3_vl``). ms-swift reads ``FPS_MAX_FRAMES``,
``VIDEO_MAX_PIXELS``, ``VIDEO_MIN_PIXELS``, ... from the environment when it loads the processor
and patches qwen-vl-utils' module constants once per process, so every pixel setting needs a
process of its own (the environment is the caller's). Writes one JSON object per row:
``messages`` (as ms-swift loaded them), ``input_ids``, ``labels``, ``video_grid_thw``,
``mm_token_type_ids`` and the SHA-256, shape and dtype of ``pixel_values_videos`` cast to
``PIXEL_DTYPE`` (the tensors themselves run to tens of MB per row).
"""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any


def pixel_digest(pixels: Any, dtype: Any) -> dict[str, Any]:
    """SHA-256, shape and dtype of ``pixels`` cast to ``dtype`` (compared across processes)."""
    import torch

    cast = torch.as_tensor(pixels).to(dtype).contiguous()
    raw = cast.view(torch.int16) if cast.dtype in (torch.bfloat16, torch.float16) else cast
    return {"sha256": hashlib.sha256(raw.numpy().tobytes()).hexdigest(), "shape": list(cast.shape),
            "dtype": str(cast.dtype)}


def _as_list(value: Any) -> list:
    return value.tolist() if hasattr(value, "tolist") else list(value)


def main(argv: list[str]) -> int:
    out_path, dtype_name, sep, *swift_args = argv
    if sep != "--":
        raise SystemExit("usage: python -m tests.training.ms_swift_encode OUT.json PIXEL_DTYPE -- ARGS...")
    import torch
    from swift.pipelines.train.sft import SwiftSft

    dtype = getattr(torch, dtype_name)
    pipe = SwiftSft(swift_args)
    train, _ = pipe._get_dataset()  # ms-swift's dataset loader and row preprocessing
    from qwen_vl_utils.vision_process import get_video_reader_backend

    rows = []
    for row in train:
        enc = pipe.template.encode(dict(row))
        rows.append({"messages": row["messages"], "videos": row.get("videos"),
                     "input_ids": _as_list(enc["input_ids"]), "labels": _as_list(enc["labels"]),
                     "video_grid_thw": _as_list(enc["video_grid_thw"]),
                     "mm_token_type_ids": _as_list(torch.as_tensor(enc["mm_token_type_ids"]).flatten()),
                     "pixel_values_videos": pixel_digest(enc["pixel_values_videos"], dtype)})
    result = {"rows": rows, "video_reader": get_video_reader_backend(),
              "template": type(pipe.template).__name__}
    with open(out_path, "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
