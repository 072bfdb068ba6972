"""SFT rows -> model inputs: loading, chat rendering, label masking, truncation, batching.

An SFT row (DESIGN.md §2, the ms-swift messages format)::

    {"messages": [{"role": "user", "content": "<video>Question ..."},
                  {"role": "assistant", "content": "<planning>...</planning>\\n<code>...</code>"}],
     "videos": ["/path/to/video.mp4"], ...}

Each ``<video>`` tag in a message takes the next entry of ``videos``. The conversation is
rendered with the checkpoint's own chat template (what inference sends), the video
placeholders are expanded by the processor's own rules (Qwen3-VL: one ``<t seconds>`` block
per temporal patch) and the text is tokenised once. Labels are ``-100`` everywhere except
on assistant turns: the tokens from the first one after ``<|im_start|>assistant\\n`` through
the turn's ``<|im_end|>``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from training.common.rows import load_rows

IGNORE_INDEX = -100
VIDEO_TAG = "<video>"
TrainOn = Literal["all_assistant", "last_assistant"]


# ---------------------------------------------------------------------------------------------
# Loading and validation
# ---------------------------------------------------------------------------------------------

def validate_row(row: Any, where: str = "row") -> dict[str, Any]:
    """Check one SFT row and return it; raise ``ValueError`` naming ``where`` otherwise."""
    if not isinstance(row, dict) or not isinstance(row.get("messages"), list) or not row["messages"]:
        raise ValueError(f"{where}: an SFT row needs a non-empty 'messages' list")
    videos = row.get("videos") or []
    if not isinstance(videos, list) or not all(isinstance(v, str) for v in videos):
        raise ValueError(f"{where}: 'videos' must be a list of file paths")
    tags = 0
    for i, msg in enumerate(row["messages"]):
        if not isinstance(msg, dict) or msg.get("role") not in ("system", "user", "assistant"):
            raise ValueError(f"{where}: messages[{i}] needs a role of system/user/assistant")
        if not isinstance(msg.get("content"), str):
            raise ValueError(f"{where}: messages[{i}].content must be a string "
                             f"(put videos in the text as {VIDEO_TAG} tags)")
        tags += msg["content"].count(VIDEO_TAG)
        if msg["role"] == "assistant" and VIDEO_TAG in msg["content"]:
            raise ValueError(f"{where}: messages[{i}] is an assistant turn with a {VIDEO_TAG} tag")
    if tags != len(videos):
        raise ValueError(f"{where}: {tags} {VIDEO_TAG} tag(s) in the messages but {len(videos)} "
                         f"video path(s); each tag takes the next entry of 'videos'")
    if not any(m["role"] == "assistant" for m in row["messages"]):
        raise ValueError(f"{where}: no assistant turn, nothing to train on")
    return row


def load_sft_rows(path: str | Path) -> list[dict[str, Any]]:
    """Read SFT rows from a JSON-lines file (or a JSON list) and validate each."""
    return load_rows(path, validate_row, "SFT")


def resolve_video_paths(row: dict[str, Any], base_dir: str | Path | None) -> list[str]:
    """The row's video paths, relative ones resolved against ``base_dir``."""
    out = []
    for v in row.get("videos") or []:
        p = Path(v)
        if not p.is_absolute() and base_dir is not None:
            p = Path(base_dir) / p
        out.append(str(p))
    return out


def split_rows(rows: Sequence[dict[str, Any]], eval_ratio: float, seed: int
               ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Deterministic held-out split: ``round(len * eval_ratio)`` rows (at least one when the
    ratio is positive) chosen by a seeded shuffle go to eval; the rest keep their order."""
    if eval_ratio <= 0:
        return list(rows), []
    n_eval = max(1, round(len(rows) * eval_ratio))
    if n_eval >= len(rows):
        raise ValueError(f"eval split of {eval_ratio} leaves no training rows out of {len(rows)}")
    held = set(random.Random(seed).sample(range(len(rows)), n_eval))
    return ([r for i, r in enumerate(rows) if i not in held], [r for i, r in enumerate(rows) if i in held])


# ---------------------------------------------------------------------------------------------
# Rendering and label masking
# ---------------------------------------------------------------------------------------------

def to_chat_messages(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """ms-swift messages (``<video>`` tags in strings) -> the content-list form chat templates
    render (``{"type": "video"}`` parts). Assistant turns stay plain strings."""
    out = []
    for msg in messages:
        if msg["role"] == "assistant" or VIDEO_TAG not in msg["content"]:
            out.append({"role": msg["role"], "content": msg["content"]})
            continue
        parts: list[dict[str, Any]] = []
        for i, piece in enumerate(msg["content"].split(VIDEO_TAG)):
            if i > 0:
                parts.append({"type": "video"})
            if piece:
                parts.append({"type": "text", "text": piece})
        out.append({"role": msg["role"], "content": parts})
    return out


def render_with_spans(processor: Any, messages: Sequence[dict[str, Any]], train_on: TrainOn
                      ) -> tuple[str, list[tuple[int, int]]]:
    """Render the conversation and find the character spans that carry loss.

    Each assistant turn ``i`` spans from the end of ``messages[:i]`` rendered with the
    generation prompt to the end of ``messages[:i+1]`` rendered: the reply, ``<|im_end|>``
    and the newline the template puts after it (ms-swift labels that newline too). The
    template must render prefixes consistently (Qwen's do); a template that rewrites earlier
    turns raises ``ValueError``.
    """
    chat = to_chat_messages(messages)
    render = lambda msgs, gen: processor.apply_chat_template(  # noqa: E731
        msgs, tokenize=False, add_generation_prompt=gen)
    full = render(chat, False)
    turns = [i for i, m in enumerate(chat) if m["role"] == "assistant"]
    if train_on == "last_assistant":
        turns = turns[-1:]
    elif train_on != "all_assistant":
        raise ValueError(f"train_on must be 'all_assistant' or 'last_assistant', got {train_on!r}")
    spans = []
    for i in turns:
        prefix, through = render(chat[:i], True), render(chat[: i + 1], False)
        if not (through.startswith(prefix) and full.startswith(through)):
            raise ValueError("the chat template does not render conversation prefixes as prefixes "
                             "of the whole conversation; assistant tokens cannot be located")
        spans.append((len(prefix), len(through)))
    return full, spans


def _shift_spans(spans: list[tuple[int, int]], replacements: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """Map character spans of the unexpanded text into the text with placeholders expanded."""
    def shift(pos: int) -> int:
        delta = 0
        for rep in replacements:
            if rep["span"][1] <= pos:
                delta += (rep["new_span"][1] - rep["new_span"][0]) - (rep["span"][1] - rep["span"][0])
        return pos + delta
    return [(shift(a), shift(b)) for a, b in spans]


def _vision_inputs(processor: Any, videos: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Model inputs of the videos: patches, grids and (Qwen2.5-VL) seconds per temporal patch."""
    from transformers.video_utils import VideoMetadata

    if not videos:
        return {}
    out = {"pixel_values_videos": torch.cat([v["pixel_values_videos"] for v in videos]),
           "video_grid_thw": torch.cat([v["video_grid_thw"] for v in videos])}
    if "second_per_grid_ts" in processor.model_input_names:
        tps = processor.video_processor.temporal_patch_size
        out["second_per_grid_ts"] = torch.tensor(
            [tps / VideoMetadata(**v["video_metadata"]).sampled_fps for v in videos], dtype=torch.float32)
    return out


def _expand_and_tokenize(processor: Any, text: str, videos: Sequence[dict[str, Any]]
                         ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Expand each video placeholder the way the processor's ``__call__`` does (Qwen3-VL: one
    ``<t seconds>`` block per temporal patch, from the video metadata) and tokenise once.
    Returns the tokenizer output (with offsets) and the replacements made."""
    from transformers.video_utils import VideoMetadata

    replacements: list[dict[str, Any]] = []
    if videos:
        inputs = {"video_grid_thw": torch.cat([v["video_grid_thw"] for v in videos]),
                  "video_metadata": [VideoMetadata(**v["video_metadata"]) for v in videos]}
        expansions = [processor.replace_video_token(inputs, video_idx=i) for i in range(len(videos))]
        (text,), (replacements,) = processor.get_text_with_replacements([text], videos_replacements=expansions)
        if len(replacements) != len(videos):
            raise ValueError(f"the rendered conversation holds {len(replacements)} video placeholders "
                             f"for {len(videos)} videos")
    enc = processor.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return enc, replacements


def encode_prompt(processor: Any, messages: Sequence[dict[str, Any]], videos: Sequence[dict[str, Any]]
                  ) -> dict[str, torch.Tensor]:
    """Batch-of-one generation inputs: ``messages`` (ms-swift style, ending with a user turn)
    rendered with the assistant generation prompt, videos expanded as in training."""
    text = processor.apply_chat_template(to_chat_messages(messages), tokenize=False, add_generation_prompt=True)
    enc, _ = _expand_and_tokenize(processor, text, videos)
    ids = torch.tensor([enc["input_ids"]], dtype=torch.long)
    out = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
           "mm_token_type_ids": torch.tensor(processor.create_mm_token_type_ids([enc["input_ids"]]),
                                             dtype=torch.long)}
    out.update(_vision_inputs(processor, videos))
    return out


def encode_conversation(processor: Any, messages: Sequence[dict[str, Any]],
                        videos: Sequence[dict[str, Any]], max_length: int | None = None,
                        train_on: TrainOn = "all_assistant") -> dict[str, Any]:
    """Token ids, labels and vision inputs of one conversation.

    Args:
        processor: the checkpoint's Qwen-VL processor.
        messages: ms-swift style messages with ``<video>`` tags.
        videos: ``process_video`` outputs, one per tag, in order.
        max_length: cut the sequence to this many tokens from the right. The cut never goes
            through vision tokens: a conversation whose vision tokens do not fit raises
            ``ValueError`` instead, as does one left without an assistant token.
        train_on: loss on every assistant turn or on the last one only.

    Returns:
        ``input_ids``, ``labels``, ``mm_token_type_ids`` (1-D long tensors) and, with videos,
        ``pixel_values_videos``, ``video_grid_thw`` and for Qwen2.5-VL ``second_per_grid_ts``.
    """
    text, spans = render_with_spans(processor, messages, train_on)
    enc, replacements = _expand_and_tokenize(processor, text, videos)
    spans = _shift_spans(spans, replacements)
    ids = torch.tensor(enc["input_ids"], dtype=torch.long)
    starts = torch.tensor([s for s, _ in enc["offset_mapping"]], dtype=torch.long)
    in_span = torch.zeros(len(ids), dtype=torch.bool)
    for a, b in spans:
        in_span |= (starts >= a) & (starts < b)
    labels = torch.where(in_span, ids, torch.full_like(ids, IGNORE_INDEX))
    mm_types = torch.tensor(processor.create_mm_token_type_ids([ids.tolist()])[0], dtype=torch.long)

    if max_length is not None and len(ids) > max_length:
        keep = 0  # tokens up to and including the last video's closing <|vision_end|>
        if bool(mm_types.any()):
            keep = int(mm_types.nonzero().max()) + 1
            end_id = processor.tokenizer.convert_tokens_to_ids("<|vision_end|>")
            keep += int(keep < len(ids) and int(ids[keep]) == end_id)
        if max_length < keep:
            raise ValueError(f"max_length={max_length} would cut through the video tokens (they end at "
                             f"token {keep} of {len(ids)}); raise max_length or lower "
                             f"video_max_frames / video_max_pixels")
        ids, labels, mm_types = ids[:max_length], labels[:max_length], mm_types[:max_length]
    if not bool((labels != IGNORE_INDEX).any()):
        raise ValueError(f"no assistant token is left to train on ({len(ids)} tokens after truncation "
                         f"to max_length={max_length}); raise max_length")
    out: dict[str, Any] = {"input_ids": ids, "labels": labels, "mm_token_type_ids": mm_types}
    out.update(_vision_inputs(processor, videos))
    return out


# ---------------------------------------------------------------------------------------------
# Dataset and collator
# ---------------------------------------------------------------------------------------------

class SFTDataset(torch.utils.data.Dataset):
    """SFT rows as model inputs; videos come from ``video_loader`` (a ``VideoLoader``, or any
    callable mapping a path to ``process_video`` output)."""

    def __init__(self, rows: Sequence[dict[str, Any]], processor: Any,
                 video_loader: Callable[[str], dict[str, Any]], max_length: int | None = None,
                 train_on: TrainOn = "all_assistant", video_dir: str | Path | None = None):
        self.rows = [validate_row(r, f"row {i}") for i, r in enumerate(rows)]
        self.processor = processor
        self.video_loader = video_loader
        self.max_length = max_length
        self.train_on = train_on
        self.video_dir = video_dir

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.rows[index]
        videos = [self.video_loader(p) for p in resolve_video_paths(row, self.video_dir)]
        try:
            return encode_conversation(self.processor, row["messages"], videos, self.max_length, self.train_on)
        except ValueError as exc:
            raise ValueError(f"SFT row {index}: {exc}") from None


class SFTCollator:
    """Right-pads a list of ``encode_conversation`` outputs into one batch."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = int(pad_token_id)

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        length = max(len(it["input_ids"]) for it in items)

        def pad(key: str, value: int) -> torch.Tensor:
            out = torch.full((len(items), length), value, dtype=torch.long)
            for i, it in enumerate(items):
                out[i, : len(it[key])] = it[key]
            return out

        batch = {"input_ids": pad("input_ids", self.pad_token_id), "labels": pad("labels", IGNORE_INDEX),
                 "mm_token_type_ids": pad("mm_token_type_ids", 0)}
        batch["attention_mask"] = torch.zeros((len(items), length), dtype=torch.long)
        for i, it in enumerate(items):
            batch["attention_mask"][i, : len(it["input_ids"])] = 1
        for key in ("pixel_values_videos", "video_grid_thw", "second_per_grid_ts"):
            parts = [it[key] for it in items if key in it]
            if parts:
                batch[key] = torch.cat(parts)
        return batch
