"""The colocated vLLM engine under ``torchrun``, run by ``test_grpo_vllm_distributed.py``.

    DS_ACCELERATOR=cpu VLLM_ENABLE_V1_MULTIPROCESSING=0 torchrun --nproc_per_node 2 \\
        tests/training/dist_grpo_vllm_scenarios.py SPEC.json OUT.json

In one process group of two CPU ranks:

1. ``lockstep``: ``training.grpo.vllm_engine.LockstepService`` over the world group (the protocol a
   tensor-parallel group's ranks use to serve the reward's VLM calls together), with uneven
   request counts per rank, several submitting threads and a rank that finishes early;
2. ``train``: the real stage (``training.grpo.train.train``) with ZeRO-3 and ``rollout_engine:
   vllm`` (one engine per rank, ``external_launcher``), ``SPEC["config"]`` overrides, uninterrupted;
3. ``resume``: the same run resumed from its ``checkpoint-{SPEC["resume_step"]}``;
4. after both engines are closed the trainer's process group still works (an all-reduce).

Rank 0 writes what each part recorded to ``OUT.json``.
"""

from __future__ import annotations

import gc
import json
import sys
import threading
from pathlib import Path


def lockstep_check() -> dict:
    import torch.distributed as dist

    from training.grpo.vllm_engine import LockstepService

    rank = dist.get_rank()
    service = LockstepService(lambda reqs: [f"{r}!" for r in reqs], dist.group.WORLD, window_s=0.01)

    def work() -> list[list[str]]:
        # rank 0: three threads with 1, 2 and 3 requests each; rank 1: one request, then done.
        counts = [1, 2, 3] if rank == 0 else [1]
        out: list[list[str]] = [[] for _ in counts]

        def submit(k: int) -> None:
            out[k] = service.submit([f"r{rank}t{k}q{i}" for i in range(counts[k])])

        threads = [threading.Thread(target=submit, args=(k,)) for k in range(len(counts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return out

    answered = service.run(work)
    ok = all(a == [f"r{rank}t{k}q{i}!" for i in range(len(a))] for k, a in enumerate(answered))
    results: list = [None] * dist.get_world_size()
    dist.all_gather_object(results, {"ok": ok, "answers": answered, "rounds": service.rounds,
                                     "requests": service.requests})
    return {"ranks": results}


def main() -> int:
    import logging

    import torch
    import torch.distributed as dist

    from training.grpo.config import GRPOConfig
    from training.grpo.train import train

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    spec = json.loads(Path(sys.argv[1]).read_text())
    # The trainer's process group first (as the training loop makes it); vLLM joins it.
    from training.grpo.policy import setup_distributed

    setup_distributed(needs_group=True)
    out: dict = {"lockstep": lockstep_check()}
    cfg = GRPOConfig(**spec["config"])
    full = train(cfg)
    gc.collect()
    k = int(spec["resume_step"])
    resumed = train(GRPOConfig(**{**spec["config"], "output_dir": cfg.output_dir + "_resumed",
                                  "resume_from_checkpoint": str(Path(cfg.output_dir) / f"checkpoint-{k}")}))
    gc.collect()
    strip = lambda h: {key: v for key, v in h.items() if not key.startswith("time/")}  # noqa: E731
    out["train"] = {"world_size": full["world_size"], "zero_stage": full["zero_stage"],
                    "history": [strip(h) for h in full["history"]]}
    out["resume"] = {"history": [strip(h) for h in resumed["history"]]}
    total = torch.tensor([float(dist.get_rank() + 1)])
    dist.all_reduce(total)  # the engines' shutdown left the trainer's group alone
    out["process_group_after_close"] = float(total)
    if dist.get_rank() == 0:
        Path(sys.argv[2]).write_text(json.dumps(out, indent=2, default=str))
    dist.barrier()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
