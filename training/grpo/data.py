"""GRPO rows -> prompts, the prompt order of a run, and training micro-batches.

A GRPO row (``data_synthesis/export.py``, DESIGN.md §2) is an SFT row plus the columns the
reward reads::

    {"messages": [{"role": "user", "content": "<video>..."}, {"role": "assistant", "content": "..."}],
     "videos": ["/path.mp4"], "solution": "B", "choices": [...], "mode_label": "program",
     "kind": "R4", "duration": 40.0, "subtitles": "/path.srt", "question": "...", "id": ...}

The prompt is the conversation without its final assistant turn (ms-swift's GRPO does the
same), rendered with the checkpoint's chat template and the generation prompt; each
``<video>`` tag takes the next entry of ``videos``.

**One video, one set of frames.** ``encode_prompt_row`` samples a row's video once with the
project's frame policy (``VideoLoader.sample``: ``inference.video_sampling``) and derives
everything else from those frames: the ``(frames uint8 [T, H, W, 3], metadata)`` pair the
rollout engine receives, the processed pixels and grid of the training forward
(``training.common.video.process_video`` on the same frames) and the expanded prompt token ids
(``training.sft.data.encode_prompt``, the SFT stage's own expansion). The reward's programs
sample the same frames through a ``ModuleRuntime`` whose ``video_*`` fields are this run's.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.common.rows import load_rows
from training.common.video import process_video
from training.sft.data import VIDEO_TAG, encode_prompt, resolve_video_paths

REWARD_COLUMNS = ("solution", "choices", "mode_label")


# ---------------------------------------------------------------------------------------------
# Rows
# ---------------------------------------------------------------------------------------------

def prompt_messages(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The row's messages without a final assistant turn (the SFT target the policy now samples)."""
    messages = list(row["messages"])
    if messages and messages[-1]["role"] == "assistant":
        messages = messages[:-1]
    return messages


def validate_grpo_row(row: Any, where: str = "row", require_reward_columns: bool = True) -> dict[str, Any]:
    """Check one GRPO row and return it; raise ``ValueError`` naming ``where`` otherwise."""
    if not isinstance(row, dict) or not isinstance(row.get("messages"), list) or not row["messages"]:
        raise ValueError(f"{where}: a GRPO row needs a non-empty 'messages' list")
    for i, msg in enumerate(row["messages"]):
        if not isinstance(msg, dict) or msg.get("role") not in ("system", "user", "assistant") \
                or not isinstance(msg.get("content"), str):
            raise ValueError(f"{where}: messages[{i}] needs a role of system/user/assistant and string content")
    prompt = prompt_messages(row)
    if not prompt or prompt[-1]["role"] != "user":
        raise ValueError(f"{where}: the prompt (messages without the final assistant turn) must end with a "
                         f"user turn")
    videos = row.get("videos") or []
    if not isinstance(videos, list) or not all(isinstance(v, str) for v in videos):
        raise ValueError(f"{where}: 'videos' must be a list of file paths")
    tags = sum(m["content"].count(VIDEO_TAG) for m in prompt)
    if tags != len(videos):
        raise ValueError(f"{where}: {tags} {VIDEO_TAG} tag(s) in the prompt but {len(videos)} video path(s); "
                         f"each tag takes the next entry of 'videos'")
    if require_reward_columns:
        missing = [c for c in REWARD_COLUMNS if row.get(c) in (None, "", [])]
        if missing:
            raise ValueError(f"{where}: missing reward column(s) {missing}; export GRPO rows with "
                             f"data_synthesis (python -m data_synthesis ... export), which writes them")
    return row


def load_grpo_rows(path: str | Path, require_reward_columns: bool = True) -> list[dict[str, Any]]:
    """Read GRPO rows from a JSON-lines file (or a JSON list) and validate each."""
    return load_rows(path, lambda row, where: validate_grpo_row(row, where, require_reward_columns), "GRPO")


# ---------------------------------------------------------------------------------------------
# Prompt order: which rows each rollout batch uses (the same on every rank)
# ---------------------------------------------------------------------------------------------

class PromptSchedule:
    """Rows of each rollout batch: every epoch a seeded permutation of the rows (or their order
    when ``shuffle`` is off), cut into batches of ``prompts_per_batch``; an incomplete last
    batch is dropped (ms-swift sets ``dataloader_drop_last`` for GRPO). ``batch(k)`` depends on
    ``k`` and the seed only, so a resumed run continues with the rows it would have seen."""

    def __init__(self, num_rows: int, prompts_per_batch: int, seed: int, shuffle: bool = True):
        if prompts_per_batch < 1:
            raise ValueError(f"prompts_per_batch must be positive, got {prompts_per_batch}")
        self.num_rows, self.prompts_per_batch, self.seed, self.shuffle = num_rows, prompts_per_batch, seed, shuffle
        self.batches_per_epoch = num_rows // prompts_per_batch
        if self.batches_per_epoch == 0:
            raise ValueError(f"{num_rows} rows cannot fill one rollout batch of {prompts_per_batch} prompts; "
                             f"add rows or lower the batch size")
        self._orders: dict[int, list[int]] = {}

    def _order(self, epoch: int) -> list[int]:
        if epoch not in self._orders:
            order = list(range(self.num_rows))
            if self.shuffle:
                random.Random(self.seed * 100003 + epoch).shuffle(order)
            self._orders = {epoch: order}
        return self._orders[epoch]

    def batch(self, index: int) -> tuple[int, list[int]]:
        """``(epoch, row indices)`` of rollout batch ``index`` (0-based, counted over epochs)."""
        epoch, k = divmod(index, self.batches_per_epoch)
        order = self._order(epoch)
        return epoch, order[k * self.prompts_per_batch:(k + 1) * self.prompts_per_batch]


def rank_slots(num_prompts: int, group_size: int, rank: int, world_size: int) -> list[tuple[int, int]]:
    """The ``(prompt position, sample index)`` pairs this rank generates and trains on: the
    generation batch (``num_prompts * group_size`` completions, a prompt's group adjacent) split
    into equal contiguous slices, one per rank (a group may span ranks; rewards are gathered
    before the advantages are computed)."""
    slots = [(p, g) for p in range(num_prompts) for g in range(group_size)]
    if len(slots) % world_size:
        raise ValueError(f"{len(slots)} completions do not split evenly over {world_size} ranks")
    n = len(slots) // world_size
    return slots[rank * n:(rank + 1) * n]


# ---------------------------------------------------------------------------------------------
# Prompts with their video
# ---------------------------------------------------------------------------------------------

@dataclass
class PromptInputs:
    """One row's prompt as both the rollout engine and the training forward take it.

    Attributes:
        row_index: position of the row in the data file.
        row: the row itself (passed to the reward).
        prompt_ids: rendered prompt with the generation prompt, video placeholders expanded.
        mm_token_type_ids: 0 text, 2 video, per prompt token.
        videos: ``(frames uint8 [T, H, W, 3], metadata)`` per video, as sampled by the frame policy.
        vision: the training forward's ``pixel_values_videos`` ``[P, D]``, ``video_grid_thw``
            ``[V, 3]`` and, for Qwen2.5-VL, ``second_per_grid_ts`` ``[V]``, computed from ``videos``.
    """

    row_index: int
    row: dict[str, Any]
    prompt_ids: list[int]
    mm_token_type_ids: list[int]
    videos: list[tuple[np.ndarray, dict[str, Any]]] = field(default_factory=list)
    vision: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def num_visual_tokens(self) -> int:
        """Video placeholder tokens in the prompt (what the vision tower's output fills)."""
        return int(sum(1 for t in self.mm_token_type_ids if t != 0))


def encode_prompt_row(processor: Any, row: dict[str, Any], row_index: int, sampler: Any,
                      video_dir: str | Path | None, pixel_dtype: torch.dtype = torch.float32,
                      max_prompt_length: int = 0) -> PromptInputs:
    """Sample the row's videos once (``sampler.sample(path)`` -> frames, metadata) and build the
    prompt for the rollout engine and the training forward from those frames."""
    videos = [sampler.sample(p) for p in resolve_video_paths(row, video_dir)]
    processed = [process_video(processor, frames, meta, pixel_dtype) for frames, meta in videos]
    enc = encode_prompt(processor, prompt_messages(row), processed)
    ids = enc["input_ids"][0].tolist()
    if max_prompt_length and len(ids) > max_prompt_length:
        raise ValueError(f"GRPO row {row_index} ({row.get('id', '?')}): the prompt has {len(ids)} tokens, more than "
                         f"max_prompt_length={max_prompt_length}; raise it or lower video_max_frames / "
                         f"video_max_pixels")
    vision = {k: enc[k] for k in ("pixel_values_videos", "video_grid_thw", "second_per_grid_ts") if k in enc}
    return PromptInputs(row_index, row, ids, enc["mm_token_type_ids"][0].tolist(), videos, vision)


# ---------------------------------------------------------------------------------------------
# Training micro-batches
# ---------------------------------------------------------------------------------------------

@dataclass
class MicroBatch:
    """Completions and their prompts laid out for one training forward.

    ``input_ids`` ``[B, Lp + C]``: each prompt left-padded to the longest prompt ``Lp``, then
    its completion right-padded to the longest completion ``C``, so the completions share
    columns and ``logits_to_keep = C + 1`` yields exactly the logits that predict them.

    Attributes:
        inputs: model keyword arguments (``input_ids``, ``attention_mask``,
            ``mm_token_type_ids`` and the vision tensors of every completion's prompt, in order).
        completion_ids: ``[B, C]`` (padding where ``completion_lengths`` ends).
        completion_lengths: ``[B]``.
        truncated: ``[B]`` bool, the completion hit the length limit without an end-of-turn token.
        advantages: ``[B]``.
        slots: index of each completion in this rank's slot list.
    """

    inputs: dict[str, torch.Tensor]
    completion_ids: torch.Tensor
    completion_lengths: torch.Tensor
    truncated: torch.Tensor
    advantages: torch.Tensor
    slots: list[int]

    @property
    def width(self) -> int:
        return int(self.completion_ids.shape[1])


def build_micro_batch(prompts: Sequence[PromptInputs], completions: Sequence[Sequence[int]],
                      truncated: Sequence[bool], advantages: Sequence[float], slots: Sequence[int],
                      pad_token_id: int) -> MicroBatch:
    """Lay out ``completions[i]`` (token ids, end-of-turn token included when generated) after
    ``prompts[i]`` (see :class:`MicroBatch`)."""
    if not (len(prompts) == len(completions) == len(truncated) == len(advantages) == len(slots)) or not prompts:
        raise ValueError("build_micro_batch: prompts, completions, truncated, advantages and slots must be "
                         "non-empty and of equal length")
    lp = max(len(p.prompt_ids) for p in prompts)
    c = max(1, max(len(x) for x in completions))
    b = len(prompts)
    input_ids = torch.full((b, lp + c), int(pad_token_id), dtype=torch.long)
    attention = torch.zeros((b, lp + c), dtype=torch.long)
    mm_types = torch.zeros((b, lp + c), dtype=torch.long)
    completion_ids = torch.full((b, c), int(pad_token_id), dtype=torch.long)
    for i, (p, comp) in enumerate(zip(prompts, completions)):
        start = lp - len(p.prompt_ids)
        input_ids[i, start:lp] = torch.tensor(p.prompt_ids)
        mm_types[i, start:lp] = torch.tensor(p.mm_token_type_ids)
        attention[i, start:lp + len(comp)] = 1
        if comp:
            input_ids[i, lp:lp + len(comp)] = torch.tensor(list(comp))
            completion_ids[i, :len(comp)] = torch.tensor(list(comp))
    inputs: dict[str, torch.Tensor] = {"input_ids": input_ids, "attention_mask": attention,
                                       "mm_token_type_ids": mm_types}
    for key in ("pixel_values_videos", "video_grid_thw", "second_per_grid_ts"):
        parts = [p.vision[key] for p in prompts if key in p.vision]
        if parts:
            inputs[key] = torch.cat(parts)
    return MicroBatch(inputs=inputs, completion_ids=completion_ids,
                      completion_lengths=torch.tensor([len(x) for x in completions], dtype=torch.long),
                      truncated=torch.tensor(list(truncated), dtype=torch.bool),
                      advantages=torch.tensor(list(advantages), dtype=torch.float32), slots=list(slots))
