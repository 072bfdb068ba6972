"""SFT entry point: ``python -m training.sft.train --config configs/sft/paper.yaml [--flag value ...]``.

Launched once per GPU by ``launch/sft.sh`` (torchrun); also runs as a single process. The
phases below are the whole stage; the logic lives in ``training.sft.trainer``.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from inference.config import config_to_dict, parse_config
from training.common.distributed import teardown_distributed
from training.common.model import load_processor, trainable_summary
from training.sft.config import SFTConfig
from training.sft.trainer import (
    build_datasets,
    build_model,
    build_trainer,
    resolve_resume,
    save_final,
    training_arguments,
)

logger = logging.getLogger("videopro.sft")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    # 1. Configuration: dataclass defaults < --config YAML < command-line flags.
    cfg = parse_config(SFTConfig, argv)
    if not cfg.model_name_or_path:
        raise SystemExit("error: --model_name_or_path is required")

    # 2. Data: rows, held-out split, video loader with the shared tensor cache.
    processor = load_processor(cfg.model_name_or_path)
    train_ds, eval_ds = build_datasets(cfg, processor)

    # 3. Trainer arguments first (under ZeRO-3 they make the model load partitioned), then the
    #    model: base weights frozen (vision tower included), LoRA on the language model.
    args = training_arguments(cfg, has_eval=eval_ds is not None)
    model = build_model(cfg)
    if args.process_index == 0:
        logger.info("rows: %d train, %d eval; %s", len(train_ds), len(eval_ds or []),
                    json.dumps(trainable_summary(model)))

    # 4. Train, resuming model, optimizer, scheduler, data position and RNG when asked.
    trainer = build_trainer(cfg, args, model, processor, train_ds, eval_ds)
    result = trainer.train(resume_from_checkpoint=resolve_resume(cfg))

    # 5. Final evaluation loss on the held-out rows.
    metrics = dict(result.metrics)
    if eval_ds is not None:
        metrics.update(trainer.evaluate())

    # 6. Save the adapter, processor and config; merge with `python -m training.merge_lora`.
    final = save_final(trainer, cfg, processor)
    if trainer.is_world_process_zero():
        (Path(cfg.output_dir) / "train_summary.json").write_text(json.dumps(
            {"metrics": metrics, "config": config_to_dict(cfg), "final_adapter": str(final),
             "log_history": trainer.state.log_history}, indent=2, default=str))
        logger.info("done: adapter in %s", final)

    # 7. Leave the process group cleanly (background communication threads otherwise abort
    #    the interpreter at exit).
    teardown_distributed()
    return 0


if __name__ == "__main__":
    sys.exit(main())
