"""Tiny Qwen-VL checkpoints: tokenizer, round trip, transformers forward/generate with video,
equal first-token log-probs in vLLM's offline engine, and the vLLM server fixture."""

from __future__ import annotations

import base64
import gc
import hashlib
import io
import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

from inference.toy.checkpoints import build_tiny_checkpoint, main
from inference.vlm_inputs import (
    hf_video_kwargs,
    reference_mrope_position_ids,
    video_metadata_for,
    vllm_multi_modal_data,
)
from tests.fixtures.checkpoints import make_tiny_video
from tests.fixtures.frames import gradient_frames

FAMILIES = ["qwen3_vl", "qwen2_5_vl"]
MODEL_CLASSES = {"qwen3_vl": "Qwen3VLForConditionalGeneration",
                 "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration"}
# vLLM and transformers run the same float32 maths; measured differences are 0 to 5e-7.
LOGPROB_ATOL = 1e-4


@pytest.fixture(params=FAMILIES)
def family_checkpoint(request: pytest.FixtureRequest) -> tuple[str, Path]:
    return request.param, request.getfixturevalue(f"tiny_{request.param}")


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _video_messages(text: str = "Which option? A or B.") -> list[dict]:
    return [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": text}]}]


@pytest.fixture(scope="module")
def loaded() -> dict:
    """Processor and model per checkpoint path, loaded once per module."""
    return {}


def _load(cache: dict, path: Path):
    if path not in cache:
        cache[path] = (AutoProcessor.from_pretrained(path),
                       AutoModelForImageTextToText.from_pretrained(path).eval())
    return cache[path]


# --- checkpoint contents -------------------------------------------------------------------


def test_tokenizer_specials_match_config_and_text_round_trips(family_checkpoint, loaded):
    family, path = family_checkpoint
    processor, model = _load(loaded, path)
    tok, cfg = processor.tokenizer, model.config
    assert cfg.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    assert cfg.video_token_id == tok.convert_tokens_to_ids("<|video_pad|>")
    assert cfg.vision_start_token_id == tok.convert_tokens_to_ids("<|vision_start|>")
    assert cfg.vision_end_token_id == tok.convert_tokens_to_ids("<|vision_end|>")
    assert processor.image_token_id == cfg.image_token_id and processor.video_token_id == cfg.video_token_id
    # Every id the model can emit decodes.
    assert cfg.text_config.vocab_size == len(tok)
    assert 300 <= len(tok) <= 340
    # Added tokens follow the base vocabulary in Qwen's order.
    order = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
             "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>"]
    ids = [tok.convert_tokens_to_ids(t) for t in order]
    assert ids == sorted(ids) and ids[0] == len(tok) - (26 if family == "qwen3_vl" else 22)
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert model.generation_config.eos_token_id == [tok.convert_tokens_to_ids("<|im_end|>"),
                                                    tok.convert_tokens_to_ids("<|endoftext|>")]
    # A single-letter answer is a single token (confidence = that token's probability).
    for ch in "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789":
        assert len(tok.encode(ch, add_special_tokens=False)) == 1, ch
    text = ("<planning> Use query_native. </planning>\n<code>\ndef execute_command(video, question):\n"
            "    return query_native(video, question, choices)\n</code> (B) ~!@#$%^&*_+{}|:\"<>? héllo ✓")
    enc = tok.encode(text, add_special_tokens=False)
    assert tok.decode(enc) == text
    assert len(enc) < len(text.encode("utf-8"))  # the merges do compress program text
    assert tok.encode("<|im_start|>user<|im_end|>", add_special_tokens=False)[0] == \
        tok.convert_tokens_to_ids("<|im_start|>")


def test_chat_template_renders_qwen_format(family_checkpoint, loaded):
    family, path = family_checkpoint
    processor, _ = _load(loaded, path)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "video"},
                                             {"type": "text", "text": "Q?"}]},
                {"role": "assistant", "content": "B"}]
    text = processor.apply_chat_template(messages, tokenize=False, add_vision_id=True)
    user = ("<|im_start|>user\nPicture 1: <|vision_start|><|image_pad|><|vision_end|>"
            "Video 1: <|vision_start|><|video_pad|><|vision_end|>Q?<|im_end|>\n"
            "<|im_start|>assistant\nB<|im_end|>\n")
    # Qwen2.5-VL adds a default system prompt; Qwen3-VL does not.
    system = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n" if family == "qwen2_5_vl" else ""
    assert text == system + user
    prompt = processor.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                           add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")


def test_round_trip_config_and_processors(family_checkpoint, loaded):
    family, path = family_checkpoint
    processor, model = _load(loaded, path)
    assert type(model).__name__ == MODEL_CLASSES[family]
    text = model.config.text_config
    assert (text.hidden_size, text.num_hidden_layers, text.num_attention_heads) == (64, 2, 2)
    assert text.hidden_size // text.num_attention_heads == 32
    assert sum(text.rope_parameters["mrope_section"]) == 16
    assert next(model.parameters()).dtype == torch.float32
    # vLLM normalises video pixels with the image processor's values: they must agree.
    assert list(processor.image_processor.image_mean) == list(processor.video_processor.image_mean)
    assert list(processor.image_processor.image_std) == list(processor.video_processor.image_std)
    patch = 16 if family == "qwen3_vl" else 14
    assert processor.image_processor.patch_size == processor.video_processor.patch_size == patch
    assert model.config.vision_config.patch_size == patch


def test_same_seed_same_weights_other_seed_differs(tmp_path, tiny_qwen3_vl):
    again = build_tiny_checkpoint(tmp_path / "again", "qwen3_vl", seed=0)
    for name in ("model.safetensors", "tokenizer.json", "config.json", "processor_config.json"):
        assert _file_digest(again / name) == _file_digest(tiny_qwen3_vl / name), name
    other = build_tiny_checkpoint(tmp_path / "other", "qwen3_vl", seed=1)
    assert _file_digest(other / "model.safetensors") != _file_digest(tiny_qwen3_vl / "model.safetensors")
    assert _file_digest(other / "tokenizer.json") == _file_digest(tiny_qwen3_vl / "tokenizer.json")


@pytest.mark.parametrize("family", ["qwen3_vl", "qwen2_5_vl"])
def test_real_token_ids_put_the_specials_at_the_released_ids(family):
    """``real_token_ids``: the added tokens at the ids ms-swift hard-codes, text tokenised to the
    same pieces as by the compact tokenizer, every id below the vocabulary size decodable."""
    from inference.toy.checkpoints import build_tiny_tokenizer

    compact, real = build_tiny_tokenizer(family), build_tiny_tokenizer(family, real_token_ids=True)
    ids = real.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|image_pad|>", "<|video_pad|>"])
    assert ids == [151643, 151644, 151645, 151655, 151656]
    assert len(real) == (151669 if family == "qwen3_vl" else 151665)
    text = "<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>def execute_command(video):<|im_end|>\n"
    pieces = lambda tok: tok.convert_ids_to_tokens(tok(text)["input_ids"])  # noqa: E731
    assert pieces(real) == pieces(compact)
    assert real.decode(real(text)["input_ids"]) == text
    assert real.decode([len(real) - 27, 1000]) != ""  # fillers decode too


def test_refuses_to_overwrite_and_bad_family(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite"):
        build_tiny_checkpoint(tmp_path / "x")
    with pytest.raises(ValueError, match="qwen3_vl, qwen2_5_vl"):
        build_tiny_checkpoint(tmp_path / "y", family="llava")  # type: ignore[arg-type]


def test_cli(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0 and "--family" in capsys.readouterr().out
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "f").write_text("x")
    assert main([str(tmp_path / "ckpt")]) == 2
    assert "overwrite" in capsys.readouterr().err
    assert main([str(tmp_path / "ckpt"), "--family", "qwen2_5_vl", "--seed", "3", "--overwrite"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["family"] == "qwen2_5_vl" and Path(report["checkpoint"]).is_dir()
    assert json.loads((tmp_path / "ckpt" / "config.json").read_text())["model_type"] == "qwen2_5_vl"


# --- inputs shared by transformers and vLLM ------------------------------------------------


def test_video_metadata_for_validates_and_describes_sampling():
    meta = video_metadata_for(4, fps=2.0, indices=[0, 2, 4, 6], total_num_frames=10)
    assert meta == {"fps": 2.0, "duration": 5.0, "total_num_frames": 10, "frames_indices": [0, 2, 4, 6],
                    "video_backend": "pyav", "do_sample_frames": False}
    assert video_metadata_for(np.zeros((3, 8, 8, 3), np.uint8), fps=1.0)["frames_indices"] == [0, 1, 2]
    with pytest.raises(ValueError, match="one index per frame"):
        video_metadata_for(3, fps=1.0, indices=[0, 1])
    with pytest.raises(ValueError, match="fps"):
        video_metadata_for(3, fps=0)
    with pytest.raises(ValueError, match="total_num_frames"):
        video_metadata_for(2, fps=1.0, indices=[0, 5], total_num_frames=3)
    with pytest.raises(ValueError, match="uint8"):
        hf_video_kwargs([(np.zeros((2, 8, 8, 3), np.float32), video_metadata_for(2, fps=1.0))])
    frames = gradient_frames(4, 16, 24, seed=5)
    assert frames.shape == (4, 16, 24, 3) and frames.dtype == np.uint8
    assert np.array_equal(frames, gradient_frames(4, 16, 24, seed=5))
    assert not np.array_equal(frames[0], frames[1])
    data = vllm_multi_modal_data(videos=[(frames, video_metadata_for(frames, fps=1.0))])
    assert set(data) == {"video"} and data["video"][0][1]["do_sample_frames"] is False


# --- transformers forward and generate with a video ----------------------------------------


def test_forward_and_generate_with_video(family_checkpoint, loaded, tiny_video):
    family, path = family_checkpoint
    processor, model = _load(loaded, path)
    frames, meta = tiny_video
    prompt = processor.apply_chat_template(_video_messages(), add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[prompt], **hf_video_kwargs([tiny_video]), return_tensors="pt")
    # 8 frames of 64x64 -> 4 temporal patches of (64/patch)^2 / 4 merged tokens.
    grid = inputs["video_grid_thw"][0].tolist()
    assert grid[0] == 4
    n_video = int((inputs["input_ids"] == model.config.video_token_id).sum())
    assert n_video == grid[0] * grid[1] * grid[2] // 4
    rendered = processor.tokenizer.decode(inputs["input_ids"][0])
    if family == "qwen3_vl":
        # Timestamps come from the metadata: frames 0,4,...,28 of a 4-fps video, averaged per
        # temporal patch of 2 frames -> 0.5 s, 2.5 s, 4.5 s, 6.5 s.
        for stamp in ("<0.5 seconds>", "<2.5 seconds>", "<4.5 seconds>", "<6.5 seconds>"):
            assert stamp in rendered
    else:
        # 8 of 32 frames at 4 fps = 1 sampled fps; 2 frames per temporal patch -> 2 s.
        assert inputs["second_per_grid_ts"].tolist() == [2.0]
    with torch.no_grad():
        logits = model(**inputs).logits
        assert logits.shape == (1, inputs["input_ids"].shape[1], len(processor.tokenizer))
        assert torch.isfinite(logits).all()
        out = model.generate(**inputs, max_new_tokens=4, do_sample=False, repetition_penalty=1.0)
    new = out[0, inputs["input_ids"].shape[1]:]
    assert 1 <= len(new) <= 4
    assert int(new[0]) == int(logits[0, -1].argmax())  # greedy generate agrees with forward
    assert isinstance(processor.decode(new), str)


def test_reference_mrope_positions_continue_after_video(tiny_qwen2_5_vl, tiny_qwen3_vl, loaded, tiny_video):
    # Qwen3-VL: one temporal patch per block -> transformers' own positions are the reference.
    processor, model = _load(loaded, tiny_qwen3_vl)
    prompt = processor.apply_chat_template(_video_messages(), add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[prompt], **hf_video_kwargs([tiny_video]), return_tensors="pt")
    own, _ = model.model.get_rope_index(inputs["input_ids"], inputs["mm_token_type_ids"],
                                        video_grid_thw=inputs["video_grid_thw"],
                                        attention_mask=inputs["attention_mask"])
    assert torch.equal(reference_mrope_position_ids(model, inputs), own)
    # Qwen2.5-VL: text after a 4-patch video continues after the largest vision position.
    processor, model = _load(loaded, tiny_qwen2_5_vl)
    prompt = processor.apply_chat_template(_video_messages(), add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[prompt], **hf_video_kwargs([tiny_video]), return_tensors="pt")
    pos = reference_mrope_position_ids(model, inputs)[:, 0]
    is_video = inputs["input_ids"][0] == model.config.video_token_id
    end = int(is_video.nonzero().max()) + 1
    assert int(pos[0, end]) == int(pos[:, :end].max()) + 1
    assert torch.equal(pos[:, end:] - pos[:, end:end + 1], torch.arange(pos.shape[1] - end).expand(3, -1))


# --- vLLM offline engine -------------------------------------------------------------------


def test_vllm_server_command(tiny_qwen3_vl):
    from inference.vllm_utils import build_vllm_server_command

    cmd = build_vllm_server_command(tiny_qwen3_vl, port=8123, served_model_name="m",
                                    limit_mm_per_prompt={"image": 16, "video": 1})
    assert cmd[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    flags = dict(zip(cmd[3::2], cmd[4::2]))
    assert flags["--model"] == str(tiny_qwen3_vl) and flags["--port"] == "8123"
    assert flags["--host"] == "127.0.0.1" and flags["--served-model-name"] == "m"
    assert json.loads(flags["--limit-mm-per-prompt"]) == {"image": 16, "video": 1}
    if not torch.cuda.is_available():
        assert flags["--dtype"] == "float32" and "--enforce-eager" in cmd
    with pytest.raises(FileNotFoundError, match="config.json"):
        build_vllm_server_command(tiny_qwen3_vl / "missing", port=8000)
    with pytest.raises(ValueError, match="port"):
        build_vllm_server_command(tiny_qwen3_vl, port=0)


@pytest.fixture(scope="module")
def offline_llms():
    """One in-process vLLM engine per checkpoint path, shut down after the module."""
    engines: dict = {}
    yield engines
    engines.clear()
    gc.collect()


@pytest.mark.vllm
def test_vllm_first_token_logprobs_equal_transformers(family_checkpoint, loaded, offline_llms):
    from vllm import SamplingParams

    from inference.vllm_utils import make_offline_llm

    family, path = family_checkpoint
    processor, model = _load(loaded, path)
    for other in [p for p in offline_llms if p != path]:  # one engine alive at a time
        del offline_llms[other]
        gc.collect()
    if path not in offline_llms:
        set_num_threads = torch.set_num_threads
        offline_llms[path] = make_offline_llm(path, max_model_len=4096,
                                              limit_mm_per_prompt={"image": 1, "video": 1})
        assert torch.set_num_threads is set_num_threads  # vLLM's CPU worker patches it
    llm = offline_llms[path]
    video = make_tiny_video(seed=1)
    image = gradient_frames(1, 96, 128, seed=2)[0]
    cases = [
        (_video_messages(), {"videos": [video]}),
        ([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Colour?"}]}],
         {"images": [image]}),
    ]
    params = SamplingParams(max_tokens=1, temperature=0.0, logprobs=5)
    for messages, media in cases:
        prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        inputs = processor(text=[prompt], images=media.get("images"),
                           **hf_video_kwargs(media.get("videos", [])), return_tensors="pt")
        with torch.no_grad():
            logits = model(**inputs, position_ids=reference_mrope_position_ids(model, inputs)).logits
        hf_logprobs = torch.log_softmax(logits[0, -1].float(), dim=-1)
        request = {"prompt": prompt,
                   "multi_modal_data": vllm_multi_modal_data(images=media.get("images"),
                                                             videos=media.get("videos"))}
        out = llm.generate([request], params, use_tqdm=False)[0]
        assert out.prompt_token_ids == inputs["input_ids"][0].tolist()
        top = out.outputs[0].logprobs[0]
        assert len(top) >= 5
        assert set(top) >= set(torch.topk(hf_logprobs, 3).indices.tolist())
        for token_id, lp in top.items():
            assert abs(lp.logprob - float(hf_logprobs[token_id])) < LOGPROB_ATOL, (family, token_id)


# --- vLLM OpenAI-compatible server ---------------------------------------------------------


@pytest.mark.vllm
def test_vllm_server_answers_chat_with_image_and_logprobs(vllm_server):
    buf = io.BytesIO()
    from PIL import Image

    Image.fromarray(gradient_frames(1, 64, 64, seed=4)[0]).save(buf, format="PNG")
    image_url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    body = {"model": vllm_server.model, "max_tokens": 3, "temperature": 0.0, "logprobs": True,
            "top_logprobs": 2,
            "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": image_url}},
                {"type": "text", "text": "Answer with a letter."}]}]}
    request = urllib.request.Request(f"{vllm_server.base_url}/chat/completions",
                                     data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as resp:
        reply = json.load(resp)
    assert reply["model"] == "tiny-qwen3-vl"
    assert vllm_server.base_url.startswith("http://127.0.0.1:") and vllm_server.base_url.endswith("/v1")
    choice = reply["choices"][0]
    content = choice["logprobs"]["content"]
    assert 1 <= len(content) <= 3 and all(item["logprob"] <= 0.0 for item in content)
    assert len(content[0]["top_logprobs"]) == 2
    assert reply["usage"]["prompt_tokens"] > 10  # the image's placeholder tokens were counted
