"""The modules the runtime exposes are exactly the prompt's API, each documented for the model."""

import dataclasses
import inspect

from inference.config import parse_config
from inference.modules import ModuleConfig, ModuleRuntime, program_signature
from inference.programs import MODULE_NAMES


def test_functions_are_the_canonical_modules_with_model_facing_docstrings():
    funcs = ModuleRuntime(ModuleConfig()).functions()  # builds nothing: backends are lazy
    assert tuple(funcs) == MODULE_NAMES
    for name, fn in funcs.items():
        assert fn.__name__ == name
        first = inspect.getdoc(fn).split("\n\n")[0]
        assert 40 <= len(first) <= 500 and "Return" in first, name
        assert "self" not in inspect.signature(fn).parameters


def test_program_signatures_match_the_paper_listing():
    assert program_signature("trim_around") == "trim_around(video, timestamp, intervals=30, num_frames=64)"
    assert program_signature("get_informative_clips") == \
        "get_informative_clips(video, query, top_k=3, total_duration=None)"
    assert program_signature("query_mc") == "query_mc(frames, question, choices)"
    assert program_signature("make_result") == "make_result(answer, confidence, raw_output='', **metadata)"


def test_module_config_fields_have_help_and_parse_from_the_command_line():
    for f in dataclasses.fields(ModuleConfig):
        assert f.metadata.get("help"), f.name
    cfg = parse_config(ModuleConfig, ["--vlm_backend", "transformers", "--clip_duration", "5",
                                      "--ocr_languages", "en", "fr"])
    assert (cfg.vlm_backend, cfg.clip_duration, cfg.ocr_languages) == ("transformers", 5.0, ["en", "fr"])


def test_identity_names_every_backend_without_loading_weights(tmp_path):
    ckpt = tmp_path / "qwen3vl"
    ckpt.mkdir()
    cfg = dict(vlm_backend="transformers", vlm_checkpoint=str(ckpt))
    ident = ModuleRuntime(ModuleConfig(**cfg)).identity()
    assert set(ident) >= {"vlm", "retriever", "subtitle_embedder", "detector", "ocr", "asr", "weights_version",
                          "clip_dir"}
    assert "qwen3vl" in ident["vlm"]
    assert ModuleRuntime(ModuleConfig(frames_per_clip=4, **cfg)).identity()["retriever"] != ident["retriever"]
    # Results name files in the clip folder, and GRPO bumps the weights version every step.
    assert ModuleRuntime(ModuleConfig(clip_dir=str(tmp_path / "other"), **cfg)).identity()["clip_dir"] \
        != ident["clip_dir"]
    # A disk cache must not serve answers generated under other settings or prompt texts.
    for changed in (dict(answer_max_new_tokens=64), dict(open_max_new_tokens=7), dict(top_logprobs=5),
                    dict(subtitle_dir=str(tmp_path / "subs"))):
        assert ModuleRuntime(ModuleConfig(**changed, **cfg)).cache_identity() != \
            ModuleRuntime(ModuleConfig(**cfg)).cache_identity(), changed
    import inference.modules as modules

    before = ModuleRuntime(ModuleConfig(**cfg)).cache_identity()
    original = modules.ANSWER_PROMPT
    try:
        modules.ANSWER_PROMPT = original + " Think first."
        assert ModuleRuntime(ModuleConfig(**cfg)).cache_identity() != before
    finally:
        modules.ANSWER_PROMPT = original
    runtime = ModuleRuntime(ModuleConfig(**cfg))
    runtime.set_weights_version("step-7")
    assert runtime.identity()["weights_version"] == "step-7" and runtime.cache_identity() != \
        ModuleRuntime(ModuleConfig(**cfg)).cache_identity()


def test_identity_of_an_unloaded_checkpoint_changes_when_its_weights_change(tmp_path):
    """The call cache must not serve answers of the previous weights after retraining at the
    same path: the identity computed before loading includes a weights fingerprint, equal to
    the one the loaded backend reports."""
    from inference.backends.vlm import TransformersVLM

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "model.safetensors").write_bytes(b"v1")
    cfg = ModuleConfig(vlm_backend="transformers", vlm_checkpoint=str(ckpt))
    before = ModuleRuntime(cfg).identity()["vlm"]
    assert before == TransformersVLM(str(ckpt)).identity()
    (ckpt / "model.safetensors").write_bytes(b"version-2")
    assert ModuleRuntime(cfg).identity()["vlm"] != before


def test_frame_policy_mismatch_with_the_trained_checkpoint_is_reported(tmp_path, caplog):
    import json

    from inference.modules import warn_if_frame_policy_differs

    (tmp_path / "sft_config.json").write_text(json.dumps({"video_max_frames": 16, "video_fps": 2.0,
                                                          "video_frame_rule": "linspace", "learning_rate": 1e-4}))
    assert warn_if_frame_policy_differs(ModuleConfig(video_max_frames=16, video_fps=2.0), str(tmp_path)) == []
    with caplog.at_level("WARNING"):
        assert warn_if_frame_policy_differs(ModuleConfig(video_max_frames=64), str(tmp_path)) == ["video_max_frames"]
    assert "--video_max_frames 16" in caplog.text
    # A checkpoint trained before the frame rule existed took segment centres.
    (tmp_path / "sft_config.json").write_text(json.dumps({"video_max_frames": 64}))
    assert warn_if_frame_policy_differs(ModuleConfig(), str(tmp_path)) == ["video_frame_rule"]
    assert warn_if_frame_policy_differs(ModuleConfig(video_frame_rule="centres"), str(tmp_path)) == []
    assert warn_if_frame_policy_differs(ModuleConfig(), str(tmp_path / "no-such-dir")) == []
