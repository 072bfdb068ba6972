"""LanguageBind's video and text towers (``LanguageBind/LanguageBind_Video_FT``), natively on torch.

The ``languagebind`` package pins ``transformers<5``; this module is our own implementation of
the same network so that the paper's clip retriever runs in-process on this project's
transformers 5 stack. It reads the published checkpoint layout unchanged: ``config.json``
(``model_type: LanguageBindVideo`` with ``text_config`` / ``vision_config`` and the legacy
``*_config_dict`` overrides), ``pytorch_model.bin`` or ``model.safetensors`` with the published
parameter names (loaded with strict key matching), and the CLIP tokenizer files.

The network (LanguageBind's ``modeling_video.py``):

- text tower: CLIP's text transformer (causal self-attention, pre-norm blocks), pooled at the
  position of the highest token id (the end-of-text token closes the vocabulary), then
  ``text_projection``;
- video tower: a CLIP ViT whose every block first runs *temporal* attention: a per-block
  learnt frame embedding (``temporal_embedding`` ``[1, num_frames, D]``) is added, then each
  spatial token position attends over the frames (``temporal_layer_norm1`` →
  ``temporal_attn``, residual), then the usual spatial attention and MLP. The CLS output of
  every frame is layer-normed, the frames are averaged, then ``visual_projection``.

Preprocessing follows LanguageBind's video transform (``processing_video.py``, decord
backend): ``num_frames`` frames at ``linspace(0, n - 1, num_frames)`` of the clip, ``/255``,
OpenAI-CLIP mean/std, short side bilinearly scaled to 224 (``floor`` of the long side),
centre crop 224. LanguageBind's transform ends with a random horizontal flip (p=0.5) even at
inference; it is left out here so that embeddings are deterministic (docs/inference.md).

``bench/languagebind_parity.py`` checks this implementation against the package.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CROP_SIZE = 224
CONTEXT_LENGTH = 77

# Buffers LanguageBind's checkpoints may carry (transformers 4.x saved ``position_ids``); they
# hold ``arange`` and are recomputed here, so they are accepted and ignored.
_IGNORED_CHECKPOINT_KEYS = ("text_model.embeddings.position_ids", "vision_model.embeddings.position_ids")


class LanguageBindCheckpointError(ValueError):
    """A checkpoint folder that is not a LanguageBind video checkpoint this module can load."""


# ----------------------------------------------------------------------------- configuration

@dataclass
class LanguageBindTextConfig:
    """The text tower (``text_config``); defaults are LanguageBind's ``CLIPTextConfig``."""

    vocab_size: int = 49408
    hidden_size: int = 512
    intermediate_size: int = 2048
    num_hidden_layers: int = 12
    num_attention_heads: int = 8
    max_position_embeddings: int = 77
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5
    pad_token_id: int = 1
    bos_token_id: int = 49406
    eos_token_id: int = 49407


@dataclass
class LanguageBindVisionConfig:
    """The video tower (``vision_config``); defaults are LanguageBind's ``CLIPVisionConfig``
    (``lora_r`` defaults to 2 there: a config that does not say ``lora_r: 0`` describes a LoRA
    model)."""

    hidden_size: int = 768
    intermediate_size: int = 3072
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    num_channels: int = 3
    image_size: int = 224
    patch_size: int = 32
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5
    add_time_attn: bool = False
    num_frames: int = 1
    clip_type: str = "vl"          # "vl": per-frame 2-D patches; "vl_new": Conv3d patches
    tube_size: int = 1
    lora_r: int = 2
    force_patch_dropout: float = 0.0  # training only
    video_decode_backend: str = "decord"


def _pick(cls: type, values: dict[str, Any]) -> Any:
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in names})


@dataclass
class LanguageBindVideoConfig:
    """``config.json`` of a LanguageBind video checkpoint."""

    text: LanguageBindTextConfig = field(default_factory=LanguageBindTextConfig)
    vision: LanguageBindVisionConfig = field(default_factory=LanguageBindVisionConfig)
    projection_dim: int = 512
    logit_scale_init_value: float = 2.6592

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LanguageBindVideoConfig:
        """Parse the published layout. As in LanguageBind's config class, the legacy
        ``text_config_dict`` / ``vision_config_dict`` entries override ``text_config`` /
        ``vision_config`` key by key."""
        text = dict(data.get("text_config") or {})
        text.update(data.get("text_config_dict") or {})
        vision = dict(data.get("vision_config") or {})
        vision.update(data.get("vision_config_dict") or {})
        return cls(text=_pick(LanguageBindTextConfig, text), vision=_pick(LanguageBindVisionConfig, vision),
                   projection_dim=int(data.get("projection_dim", 512)),
                   logit_scale_init_value=float(data.get("logit_scale_init_value", 2.6592)))

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> LanguageBindVideoConfig:
        path = Path(folder) / "config.json"
        if not path.is_file():
            raise LanguageBindCheckpointError(
                f"{str(folder)!r} has no config.json: pass the folder of a LanguageBind video checkpoint "
                "(e.g. a download of LanguageBind/LanguageBind_Video_FT)")
        data = json.loads(path.read_text())
        if data.get("model_type") != "LanguageBindVideo":
            raise LanguageBindCheckpointError(
                f"{str(path)!r} has model_type {data.get('model_type')!r}, not 'LanguageBindVideo': this is not a "
                "LanguageBind video checkpoint; for a CLIP-style model set clip_retriever='clip'")
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        """The published layout (``model_type`` ``LanguageBindVideo``, nested tower configs)."""
        text = {f.name: getattr(self.text, f.name) for f in fields(self.text)}
        vision = {f.name: getattr(self.vision, f.name) for f in fields(self.vision)}
        text.update(model_type="clip_text_model", add_time_attn=False, projection_dim=self.projection_dim)
        vision.update(model_type="clip_vision_model", projection_dim=self.projection_dim)
        return {"architectures": ["CLIPModel"], "model_type": "LanguageBindVideo",
                "projection_dim": self.projection_dim, "logit_scale_init_value": self.logit_scale_init_value,
                "initializer_factor": 1.0, "text_config": text, "vision_config": vision}

    def check_supported(self) -> None:
        v = self.vision
        if v.lora_r:
            raise LanguageBindCheckpointError(
                f"vision_config.lora_r is {v.lora_r}: a LoRA-form LanguageBind checkpoint (e.g. "
                "LanguageBind/LanguageBind_Video) is not supported natively; use the fully fine-tuned "
                "LanguageBind/LanguageBind_Video_FT, or clip_retriever='languagebind_package'")
        if not v.add_time_attn:
            raise LanguageBindCheckpointError(
                "vision_config.add_time_attn is false: LanguageBind's video tower is built only with temporal "
                "attention (an image tower is a different checkpoint)")
        if v.clip_type not in ("vl", "vl_new"):
            raise LanguageBindCheckpointError(f"vision_config.clip_type {v.clip_type!r}: expected 'vl' or 'vl_new'")
        if v.clip_type == "vl_new" and v.tube_size != 1:
            raise LanguageBindCheckpointError(f"vision_config.tube_size {v.tube_size}: only 1 is supported")


# ----------------------------------------------------------------------------- network

def _activation(name: str) -> nn.Module:
    from transformers.activations import ACT2FN

    if name not in ACT2FN:
        raise LanguageBindCheckpointError(f"unknown hidden_act {name!r}")
    return ACT2FN[name]


class LanguageBindAttention(nn.Module):
    """Multi-head attention with CLIP's parameter names (``q_proj``/``k_proj``/``v_proj``/``out_proj``)."""

    def __init__(self, hidden_size: int, num_heads: int) -> None:
        super().__init__()
        if hidden_size % num_heads:
            raise LanguageBindCheckpointError(f"hidden_size {hidden_size} is not a multiple of {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.q_proj = nn.Linear(hidden_size, hidden_size)
        self.k_proj = nn.Linear(hidden_size, hidden_size)
        self.v_proj = nn.Linear(hidden_size, hidden_size)
        self.out_proj = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` ``[B, L, D]``; ``mask`` boolean ``[B, 1, L, L]`` (True: may attend) or None."""
        b, n, d = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, self.num_heads, self.head_dim).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x)),
                                             attn_mask=mask)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, d))


class LanguageBindMLP(nn.Module):
    def __init__(self, hidden_size: int, intermediate_size: int, act: str) -> None:
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, intermediate_size)
        self.activation_fn = _activation(act)
        self.fc2 = nn.Linear(intermediate_size, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation_fn(self.fc1(x)))


class LanguageBindEncoderLayer(nn.Module):
    """One pre-norm block; with ``num_frames`` set, LanguageBind's temporal attention first."""

    def __init__(self, hidden_size: int, intermediate_size: int, num_heads: int, act: str, eps: float,
                 num_frames: int | None = None) -> None:
        super().__init__()
        self.num_frames = num_frames
        if num_frames is not None:
            self.temporal_embedding = nn.Parameter(torch.zeros(1, num_frames, hidden_size))
            self.temporal_attn = LanguageBindAttention(hidden_size, num_heads)
            self.temporal_layer_norm1 = nn.LayerNorm(hidden_size, eps=eps)
        self.self_attn = LanguageBindAttention(hidden_size, num_heads)
        self.layer_norm1 = nn.LayerNorm(hidden_size, eps=eps)
        self.mlp = LanguageBindMLP(hidden_size, intermediate_size, act)
        self.layer_norm2 = nn.LayerNorm(hidden_size, eps=eps)

    def _temporal(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[B*T, N, D]`` (frames of a clip contiguous): frame embedding, then every token
        position attends over the ``T`` frames."""
        t = self.num_frames
        bt, n, d = x.shape
        b = bt // t
        x = x.view(b, t, n, d)
        if t != 1:  # as LanguageBind: no frame embedding for a single frame
            x = x + self.temporal_embedding[:, :t, None, :]
        per_token = x.permute(0, 2, 1, 3).reshape(b * n, t, d)
        attended = self.temporal_attn(self.temporal_layer_norm1(per_token))
        x = x + attended.view(b, n, t, d).permute(0, 2, 1, 3)
        return x.reshape(bt, n, d)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.num_frames is not None:
            x = self._temporal(x)
        x = x + self.self_attn(self.layer_norm1(x), mask)
        return x + self.mlp(self.layer_norm2(x))


class LanguageBindEncoder(nn.Module):
    def __init__(self, num_layers: int, **layer_kwargs: Any) -> None:
        super().__init__()
        self.layers = nn.ModuleList([LanguageBindEncoderLayer(**layer_kwargs) for _ in range(num_layers)])

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, mask)
        return x


class LanguageBindTextEmbeddings(nn.Module):
    def __init__(self, config: LanguageBindTextConfig) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position_embedding = nn.Embedding(config.max_position_embeddings, config.hidden_size)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        return self.token_embedding(input_ids) + self.position_embedding(positions)[None]


class LanguageBindTextTransformer(nn.Module):
    def __init__(self, config: LanguageBindTextConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = LanguageBindTextEmbeddings(config)
        self.encoder = LanguageBindEncoder(
            config.num_hidden_layers, hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
            num_heads=config.num_attention_heads, act=config.hidden_act, eps=config.layer_norm_eps)
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Pooled text features ``[B, D_text]`` for ``input_ids`` ``[B, L]``."""
        b, n = input_ids.shape
        if n > self.config.max_position_embeddings:
            raise ValueError(f"text of {n} tokens exceeds the model's {self.config.max_position_embeddings} positions")
        x = self.embeddings(input_ids)
        mask = torch.ones(n, n, dtype=torch.bool, device=x.device).tril()[None, None].expand(b, 1, n, n)
        if attention_mask is not None:
            mask = mask & attention_mask.bool()[:, None, None, :]
        x = self.final_layer_norm(self.encoder(x, mask))
        # LanguageBind (like OpenAI CLIP) pools at the highest id: the end-of-text token.
        return x[torch.arange(b, device=x.device), input_ids.argmax(dim=-1)]


class LanguageBindVisionEmbeddings(nn.Module):
    """Patch + class + position embeddings. ``vl``: a 2-D patch convolution per frame and one
    class embedding ``[D]``; ``vl_new``: LanguageBind's ``CLIPVisionEmbeddings3D`` (a Conv3d over
    ``tube_size`` frames, one class embedding per frame ``[T, D]``)."""

    def __init__(self, config: LanguageBindVisionConfig) -> None:
        super().__init__()
        self.config = config
        d, p = config.hidden_size, config.patch_size
        self.is_3d = config.clip_type == "vl_new"
        if self.is_3d:
            self.class_embedding = nn.Parameter(torch.zeros(config.num_frames // config.tube_size, d))
            self.patch_embedding = nn.Conv3d(config.num_channels, d, kernel_size=(config.tube_size, p, p),
                                             stride=(config.tube_size, p, p), bias=False)
        else:
            self.class_embedding = nn.Parameter(torch.zeros(d))
            self.patch_embedding = nn.Conv2d(config.num_channels, d, kernel_size=p, stride=p, bias=False)
        self.num_patches = (config.image_size // p) ** 2
        self.position_embedding = nn.Embedding(self.num_patches + 1, d)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """``pixels`` ``[B, C, T, H, W]`` -> tokens ``[B*T, 1 + patches, D]``."""
        b, c, t, h, w = pixels.shape
        if self.is_3d:
            patches = self.patch_embedding(pixels).flatten(3).permute(0, 2, 3, 1)  # B, T, HW, D
            cls = self.class_embedding[None, :, None, :].expand(b, -1, -1, -1)
            tokens = torch.cat([cls, patches], dim=2).reshape(b * t, -1, patches.shape[-1])
        else:
            frames = pixels.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
            patches = self.patch_embedding(frames).flatten(2).transpose(1, 2)  # B*T, HW, D
            cls = self.class_embedding[None, None, :].expand(b * t, 1, -1)
            tokens = torch.cat([cls, patches], dim=1)
        return tokens + self.position_embedding.weight[None]


class LanguageBindVisionTransformer(nn.Module):
    def __init__(self, config: LanguageBindVisionConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = LanguageBindVisionEmbeddings(config)
        self.pre_layrnorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)  # sic: CLIP's name
        self.encoder = LanguageBindEncoder(
            config.num_hidden_layers, hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
            num_heads=config.num_attention_heads, act=config.hidden_act, eps=config.layer_norm_eps,
            num_frames=config.num_frames)
        self.post_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pooled clip features ``[B, D_vision]`` for ``pixels`` ``[B, C, T, H, W]``."""
        b, _, t, h, w = pixels.shape
        size = self.config.image_size
        if t != self.config.num_frames or (h, w) != (size, size):
            raise ValueError(f"the video tower takes {self.config.num_frames} frames of {size}x{size}, got {t} "
                             f"frames of {h}x{w} (preprocess with preprocess_frames)")
        x = self.encoder(self.pre_layrnorm(self.embeddings(pixels)))
        return self.post_layernorm(x[:, 0]).view(b, t, -1).mean(dim=1)


class LanguageBindVideoModel(nn.Module):
    """LanguageBind's ``LanguageBindVideo`` with the published parameter names: ``text_model``,
    ``vision_model``, ``text_projection``, ``visual_projection``, ``logit_scale``."""

    def __init__(self, config: LanguageBindVideoConfig) -> None:
        super().__init__()
        config.check_supported()
        self.config = config
        self.text_model = LanguageBindTextTransformer(config.text)
        self.vision_model = LanguageBindVisionTransformer(config.vision)
        self.visual_projection = nn.Linear(config.vision.hidden_size, config.projection_dim, bias=False)
        self.text_projection = nn.Linear(config.text.hidden_size, config.projection_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(config.logit_scale_init_value))

    def get_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Projected (not normalised) text embeddings ``[B, projection_dim]``."""
        return self.text_projection(self.text_model(input_ids, attention_mask))

    def get_video_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Projected (not normalised) clip embeddings ``[B, projection_dim]`` for
        ``pixel_values`` ``[B, 3, num_frames, 224, 224]`` (``preprocess_frames`` output, batched)."""
        return self.visual_projection(self.vision_model(pixel_values))

    def init_random(self, seed: int = 0) -> LanguageBindVideoModel:
        """Initialise the weights as LanguageBind's ``_init_weights`` does (normal, scaled by
        width and depth; temporal embeddings ``N(0, D^-1/2)``), from a private generator."""
        gen = torch.Generator().manual_seed(seed)

        def normal_(t: torch.Tensor, std: float) -> None:
            with torch.no_grad():
                t.copy_(torch.randn(t.shape, generator=gen) * std)

        for tower, cfg in ((self.text_model, self.config.text), (self.vision_model, self.config.vision)):
            d, layers = cfg.hidden_size, cfg.num_hidden_layers
            for module in tower.modules():
                if isinstance(module, LanguageBindAttention):
                    for proj in (module.q_proj, module.k_proj, module.v_proj):
                        normal_(proj.weight, d ** -0.5 * (2 * layers) ** -0.5)
                    normal_(module.out_proj.weight, d ** -0.5)
                elif isinstance(module, LanguageBindMLP):
                    normal_(module.fc1.weight, (2 * d) ** -0.5)
                    normal_(module.fc2.weight, d ** -0.5 * (2 * layers) ** -0.5)
                elif isinstance(module, LanguageBindEncoderLayer) and module.num_frames is not None:
                    normal_(module.temporal_embedding, d ** -0.5)
                elif isinstance(module, nn.Embedding):
                    normal_(module.weight, 0.02)
                if isinstance(module, nn.Linear) and module.bias is not None:
                    nn.init.zeros_(module.bias)
                if isinstance(module, nn.LayerNorm):
                    nn.init.ones_(module.weight)
                    nn.init.zeros_(module.bias)
        emb = self.vision_model.embeddings
        normal_(emb.class_embedding, self.config.vision.hidden_size ** -0.5)
        normal_(emb.patch_embedding.weight, 0.02)
        normal_(self.text_projection.weight, self.config.text.hidden_size ** -0.5)
        normal_(self.visual_projection.weight, self.config.vision.hidden_size ** -0.5)
        return self


# ----------------------------------------------------------------------------- loading

def _read_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    single = [folder / "model.safetensors", folder / "pytorch_model.bin"]
    index = [folder / "model.safetensors.index.json", folder / "pytorch_model.bin.index.json"]
    files: list[Path] = []
    for path in single:
        if path.is_file():
            files = [path]
            break
    else:
        for path in index:
            if path.is_file():
                shards = sorted(set(json.loads(path.read_text())["weight_map"].values()))
                files = [folder / s for s in shards]
                break
    if not files:
        raise LanguageBindCheckpointError(
            f"{str(folder)!r} holds no weights (model.safetensors, pytorch_model.bin or a sharded index); "
            "download the whole checkpoint folder")
    state: dict[str, torch.Tensor] = {}
    for path in files:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state.update(load_file(str(path)))
        else:
            state.update(torch.load(str(path), map_location="cpu", weights_only=True, mmap=True))
    return state


def load_state_dict_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``model`` requiring exactly its parameter names and shapes (the
    saved ``position_ids`` buffers excepted); anything else raises naming the keys."""
    state = {k: v for k, v in state.items() if k not in _IGNORED_CHECKPOINT_KEYS}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
                        for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or mismatched:
        def show(keys: list[str]) -> str:
            return ", ".join(keys[:8]) + (f" (+{len(keys) - 8} more)" if len(keys) > 8 else "")

        parts = [f"missing keys: {show(missing)}" if missing else "",
                 f"unexpected keys: {show(unexpected)}" if unexpected else "",
                 f"shape mismatches: {show(mismatched)}" if mismatched else ""]
        hint = ""
        if any("lora_" in k or "base_model.model" in k for k in unexpected):
            hint = " The checkpoint holds LoRA weights: use the fully fine-tuned LanguageBind/LanguageBind_Video_FT."
        raise LanguageBindCheckpointError(
            f"weights in {source!r} do not match LanguageBind's video model built from its config.json: "
            + "; ".join(p for p in parts if p) + "." + hint)
    model.load_state_dict(state, strict=True)


def load_languagebind_video(folder: str | Path, device: str = "cpu",
                            dtype: torch.dtype = torch.float32) -> LanguageBindVideoModel:
    """The model of a local checkpoint folder in eval mode on ``device``."""
    folder = Path(folder)
    config = LanguageBindVideoConfig.from_pretrained(folder)
    with torch.device("meta"):
        model = LanguageBindVideoModel(config)
    model = model.to_empty(device="cpu")
    load_state_dict_strict(model, _read_state_dict(folder), str(folder))
    return model.to(device=device, dtype=dtype).eval()


def load_languagebind_tokenizer(folder: str | Path) -> Any:
    """LanguageBind's tokenizer is CLIP's (``vocab.json`` + ``merges.txt``, end-of-text as the
    padding token); loaded with transformers' ``CLIPTokenizer`` whatever ``tokenizer_class``
    the folder names (the published one names the package's ``LanguageBindVideoTokenizer``)."""
    from transformers import CLIPTokenizer

    folder = Path(folder)
    if not (folder / "vocab.json").is_file() or not (folder / "merges.txt").is_file():
        raise LanguageBindCheckpointError(f"{str(folder)!r} lacks the tokenizer files vocab.json and merges.txt")
    return CLIPTokenizer.from_pretrained(str(folder), pad_token="<|endoftext|>", model_max_length=CONTEXT_LENGTH)


# ----------------------------------------------------------------------------- preprocessing

def frame_indices(total_frames: int, num_frames: int) -> list[int]:
    """LanguageBind's frame choice for a clip of ``total_frames`` frames (decord backend):
    ``linspace(0, total - 1, num_frames)`` truncated to integers (repeats for short clips)."""
    if total_frames < 1:
        raise ValueError("a clip needs at least one frame")
    return [int(i) for i in np.linspace(0, total_frames - 1, num_frames, dtype=int)]


def preprocess_frames(frames: np.ndarray | Sequence[np.ndarray], size: int = CROP_SIZE) -> torch.Tensor:
    """uint8 RGB frames ``[T, H, W, 3]`` -> float32 ``[3, T, size, size]`` as LanguageBind's video
    transform makes them (minus its random flip): ``/255``, OpenAI-CLIP normalisation, short
    side bilinearly scaled to ``size`` (long side ``floor``), centre crop."""
    x = torch.from_numpy(np.ascontiguousarray(np.stack(list(frames)) if not isinstance(frames, np.ndarray)
                                              else frames))
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"frames must be [T, H, W, 3] uint8 RGB, got shape {tuple(x.shape)}")
    x = x.permute(3, 0, 1, 2).float() / 255.0  # C, T, H, W
    mean = torch.tensor(OPENAI_CLIP_MEAN)[:, None, None, None]
    std = torch.tensor(OPENAI_CLIP_STD)[:, None, None, None]
    x = (x - mean) / std
    _, _, h, w = x.shape
    if w < h:
        new_h, new_w = int(math.floor(h / w * size)), size
    else:
        new_h, new_w = size, int(math.floor(w / h * size))
    x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False)
    top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
    return x[..., top:top + size, left:left + size].contiguous()
