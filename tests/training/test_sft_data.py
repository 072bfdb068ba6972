"""SFT rows -> model inputs: validation, exact label masking, HF-equivalent video expansion,
truncation that never cuts vision tokens, collation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from inference.vlm_inputs import video_metadata_for
from tests.fixtures.frames import gradient_frames
from training.common.video import frame_size, process_video, resize_frames, spatial_factor
from training.sft.data import (
    IGNORE_INDEX,
    SFTCollator,
    encode_conversation,
    encode_prompt,
    load_sft_rows,
    split_rows,
    validate_row,
)

A1 = "<planning>native</planning>\n<code>\ndef execute_command(video, question):\n    return 1\n</code>"
A2 = "<planning>fixed</planning>\n<code>\ndef execute_command(video, question):\n    return 2\n</code>"
ROW = [{"role": "user", "content": "<video>Which colour?"}, {"role": "assistant", "content": A1},
       {"role": "user", "content": "The program failed. Fix it."}, {"role": "assistant", "content": A2}]


@pytest.fixture(scope="module", params=["qwen3_vl", "qwen2_5_vl"])
def family_processor(request, tiny_qwen3_vl, tiny_qwen2_5_vl):
    from transformers import AutoProcessor

    path = tiny_qwen3_vl if request.param == "qwen3_vl" else tiny_qwen2_5_vl
    return request.param, AutoProcessor.from_pretrained(path)


def _video(processor, num_frames=8, fps=4.0, stride=4):
    frames = gradient_frames(num_frames, 100, 150, seed=1)
    h, w = frame_size(100, 150, spatial_factor(processor), 1024, 4096)
    frames = resize_frames(frames, h, w)
    meta = video_metadata_for(frames, fps=fps, indices=[i * stride for i in range(num_frames)],
                              total_num_frames=num_frames * stride)
    return frames, meta, process_video(processor, frames, meta)


def test_label_masking_is_exact_on_a_hand_checked_row(family_processor):
    family, proc = family_processor
    _, _, video = _video(proc)
    enc = encode_conversation(proc, ROW, [video])
    ids, labels = enc["input_ids"], enc["labels"]
    tok = proc.tokenizer
    n_video = int(video["video_grid_thw"].prod()) // 4
    assert int((ids == tok.convert_tokens_to_ids("<|video_pad|>")).sum()) == n_video

    # Exactly two labelled runs: each assistant reply with its "<|im_end|>\n" (what ms-swift
    # labels), nothing else.
    pos = (labels != IGNORE_INDEX).nonzero().flatten().tolist()
    runs = np.split(np.array(pos), np.where(np.diff(pos) != 1)[0] + 1)
    assert len(runs) == 2
    for run, reply in zip(runs, (A1, A2)):
        assert tok.decode(ids[run[0]: run[-1] + 1]) == reply + "<|im_end|>\n"
        assert tok.decode(ids[: run[0]]).endswith("<|im_start|>assistant\n")
        assert torch.equal(labels[run[0]: run[-1] + 1], ids[run[0]: run[-1] + 1])
    assert tok.decode(ids[runs[0][-1] + 1: runs[0][-1] + 2]) == "<|im_start|>"
    assert runs[1][-1] == len(ids) - 1
    expected = len(tok(A1 + "<|im_end|>\n", add_special_tokens=False)["input_ids"]) \
        + len(tok(A2 + "<|im_end|>\n", add_special_tokens=False)["input_ids"])
    assert len(pos) == expected

    # Loss on the last assistant turn only.
    last = encode_conversation(proc, ROW, [video], train_on="last_assistant")
    assert torch.equal(last["input_ids"], ids)
    assert tok.decode(ids[last["labels"] != IGNORE_INDEX]) == A2 + "<|im_end|>\n"


def test_tokens_and_pixels_equal_the_processor_call(family_processor):
    """The cached path (video processed once, placeholders expanded from the cached grid and
    metadata) gives exactly what ``processor(text=..., videos=...)`` gives."""
    family, proc = family_processor
    frames, meta, video = _video(proc)
    enc = encode_conversation(proc, ROW[:2], [video])
    chat = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Which colour?"}]},
            {"role": "assistant", "content": A1}]
    text = proc.apply_chat_template(chat, tokenize=False)
    hf_meta = {k: v for k, v in meta.items() if k != "do_sample_frames"}
    ref = proc(text=[text], videos=[frames], video_metadata=[hf_meta],
               do_sample_frames=False, do_resize=False, return_tensors="pt")
    assert torch.equal(enc["input_ids"], ref["input_ids"][0])
    assert torch.equal(enc["mm_token_type_ids"], ref["mm_token_type_ids"][0])
    assert torch.equal(enc["pixel_values_videos"], ref["pixel_values_videos"])
    assert torch.equal(enc["video_grid_thw"], ref["video_grid_thw"])
    if family == "qwen2_5_vl":
        want = torch.as_tensor(ref["second_per_grid_ts"], dtype=torch.float32)
        assert torch.allclose(enc["second_per_grid_ts"], want)
    else:  # timestamps from the metadata: frames 0,4 / 8,12 / ... at 4 fps -> 0.5 s, 2.5 s, ...
        decoded = proc.tokenizer.decode(enc["input_ids"])
        assert "<0.5 seconds>" in decoded and "<6.5 seconds>" in decoded

    prompt = encode_prompt(proc, ROW[:1], [video])
    n = prompt["input_ids"].shape[1]
    assert torch.equal(prompt["input_ids"][0], enc["input_ids"][:n])
    assert proc.tokenizer.decode(prompt["input_ids"][0]).endswith("<|im_start|>assistant\n")


def test_truncation_cuts_text_but_never_vision_tokens(family_processor):
    _, proc = family_processor
    _, _, video = _video(proc)
    full = encode_conversation(proc, ROW[:2], [video])
    n = len(full["input_ids"])
    vision_end = int(full["mm_token_type_ids"].nonzero().max()) + 2  # last pad + <|vision_end|>
    cut = encode_conversation(proc, ROW[:2], [video], max_length=n - 5)
    assert torch.equal(cut["input_ids"], full["input_ids"][: n - 5])
    assert torch.equal(cut["labels"], full["labels"][: n - 5])
    with pytest.raises(ValueError, match="cut through the video tokens"):
        encode_conversation(proc, ROW[:2], [video], max_length=vision_end - 1)
    with pytest.raises(ValueError, match="no assistant token"):
        encode_conversation(proc, ROW[:2], [video], max_length=vision_end + 1)


def test_collator_pads_and_concatenates(family_processor):
    _, proc = family_processor
    _, _, video = _video(proc)
    a = encode_conversation(proc, ROW, [video])
    b = encode_conversation(proc, ROW[:2], [video])
    batch = SFTCollator(proc.tokenizer.pad_token_id)([a, b])
    n = len(a["input_ids"])
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape == (2, n)
    assert batch["attention_mask"][1].sum() == len(b["input_ids"])
    assert (batch["labels"][1, len(b["input_ids"]):] == IGNORE_INDEX).all()
    assert (batch["input_ids"][1, len(b["input_ids"]):] == proc.tokenizer.pad_token_id).all()
    assert batch["pixel_values_videos"].shape[0] == 2 * video["pixel_values_videos"].shape[0]
    assert batch["video_grid_thw"].shape == (2, 3)


def test_rows_are_validated_with_their_line_numbers(tmp_path: Path):
    good = {"messages": ROW[:2], "videos": ["v.mp4"], "extra": 1}
    assert validate_row(good) is good
    f = tmp_path / "rows.jsonl"
    f.write_text(json.dumps(good) + "\n\n" + json.dumps({**good, "videos": []}) + "\n")
    with pytest.raises(ValueError, match=r"rows.jsonl:3: 1 <video> tag"):
        load_sft_rows(f)
    f.write_text(json.dumps({"messages": ROW[:1], "videos": ["v.mp4"]}) + "\n")
    with pytest.raises(ValueError, match="no assistant turn"):
        load_sft_rows(f)
    f.write_text("{not json\n")
    with pytest.raises(ValueError, match=r"rows.jsonl:1: not valid JSON"):
        load_sft_rows(f)
    f.write_text(json.dumps([good, good]))
    assert len(load_sft_rows(f)) == 2


def test_eval_split_is_deterministic_and_disjoint():
    rows = [{"id": i} for i in range(20)]
    train, held = split_rows(rows, 0.1, seed=3)
    assert len(held) == 2 and len(train) == 18
    assert split_rows(rows, 0.1, seed=3) == (train, held)
    assert {r["id"] for r in train}.isdisjoint({r["id"] for r in held})
    assert split_rows(rows, 0.0, seed=3) == (rows, [])


def test_fixture_trajectories_are_valid_programs():
    """Every SFT fixture reply is a well-formed ``<planning>``/``<code>`` reply whose program
    passes the runner's static checks (what the trained model is taught to write)."""
    from inference.programs import parse_model_output, validate_program
    from tests.training.conftest import TRAJECTORIES

    for text in TRAJECTORIES:
        parsed = parse_model_output(text)
        assert parsed.format_ok, (text, parsed.problems)
        result = validate_program(parsed.code)
        assert result.ok, (parsed.code, result.problems)
    # get_informative_clips returns (intervals, clip_paths): the clip program unpacks it.
    assert "intervals, clip_paths = get_informative_clips(" in TRAJECTORIES[1]
