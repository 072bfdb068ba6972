"""``ReleaseConfig``: every setting of ``python -m training.release``, with its help text."""

from __future__ import annotations

from dataclasses import dataclass

from inference.config import config_field


@dataclass
class ReleaseConfig:
    """What to release, what the model card says, and where it is uploaded."""

    # --- what to release --------------------------------------------------------------------
    adapter: str = config_field("", "LoRA adapter folder to merge and release: an SFT or GRPO <output_dir>/final (or "
                                    "a checkpoint-* folder).")
    checkpoint: str = config_field("", "An already merged checkpoint folder to release instead of an adapter "
                                       "(training.merge_lora output, or an earlier release folder).")
    base: str = config_field("", "Base checkpoint the adapter is merged into; empty: the base recorded in the "
                                 "adapter's adapter_config.json. Its layers must match the adapter's.")
    output_dir: str = config_field("", "Release folder to write. Given alone (no --adapter/--checkpoint), an existing "
                                       "release folder to upload as it is.")
    overwrite: bool = config_field(False, "Replace output_dir when it exists.")
    dtype: str = config_field("bfloat16", "dtype of the merged weights: bfloat16 (the paper's checkpoints), float16 or "
                                          "float32. A --checkpoint is copied as it is.")
    max_shard_size: str = config_field("5GB", "Largest safetensors shard of the merged weights (e.g. 5GB, 500MB).")
    # --- model card -------------------------------------------------------------------------
    model_name: str = config_field("", "Title of the model card; empty: the repository name (or the folder's).")
    base_model_id: str = config_field("", "Hub id of the foundation model for the card (e.g. "
                                          "Qwen/Qwen3-VL-8B-Instruct); empty: taken from the base's path when it is "
                                          "a hub id or a hub-cache snapshot, else left out with a warning.")
    license: str = config_field("", "Licence identifier of the release (e.g. apache-2.0); empty: the base model's, "
                                    "read from its README.md metadata (a warning when it has none).")
    eval_report: list[str] = config_field(help="Evaluation reports whose tables go into the card: folders written "
                                               "by `videopro-eval report --out` or their report.json. None: the "
                                               "card has no evaluation table (with a warning).", factory=list)
    synthesis_dir: str = config_field("", "The data-synthesis output folder the training rows came from (stats.json, "
                                          "dataset/provenance.jsonl); empty: found from the training configs' "
                                          "train_file.")
    datasets: list[str] = config_field(help="Hub dataset ids of the training data, for the card's metadata.",
                                       factory=list)
    # --- upload -----------------------------------------------------------------------------
    repo_id: str = config_field("", "Hub model repository to upload to (namespace/name); empty: build the folder "
                                    "only.")
    revision: str = config_field("main", "Branch to upload to. A branch that does not exist yet is created from main "
                                         "and then holds exactly the release.")
    tag: str = config_field("", "Tag to create at the uploaded commit (e.g. v1.0); refused before uploading when it "
                                "exists.")
    private: bool = config_field(False, "Create the repository as private (an existing repository keeps its "
                                        "visibility).")
    replace_remote: bool = config_field(False, "Upload even when the revision holds other content; remote files that "
                                               "are not part of the release are deleted.")
    commit_message: str = config_field("", "Commit message; empty: 'VideoPro release <stage> <release id>'.")
    dry_run: bool = config_field(False, "Build the release folder, print every file that would be uploaded with its "
                                        "size and the rendered model card, and upload nothing (no token needed).")

    def __post_init__(self) -> None:
        if self.dtype not in ("bfloat16", "float16", "float32"):
            raise ValueError(f"dtype must be bfloat16, float16 or float32, got {self.dtype!r}")
        if self.adapter and self.checkpoint:
            raise ValueError("pass either --adapter (a LoRA adapter to merge) or --checkpoint (a merged "
                             "checkpoint), not both")
        if not self.output_dir:
            raise ValueError("--output_dir is required: the release folder to write (or to upload)")
        if self.repo_id and self.repo_id.count("/") != 1:
            raise ValueError(f"--repo_id must be namespace/name (e.g. your-name/videopro-qwen3vl), got "
                             f"{self.repo_id!r}")
