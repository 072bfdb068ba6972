"""Benchmark evaluation: loaders, batch runs in the paper's paradigms, reports (docs/evaluation.md).

* :mod:`inference.evaluation.benchmarks` — LVBench, Video-MME, LongVideoBench, MLVU and CG-Bench
  read from the files users download into QA records, with what could not be used reported;
* :mod:`inference.evaluation.batch` — resumable, shardable batch runs (native only, program only,
  adaptive, adaptive + refine) against served endpoints or an in-process checkpoint;
* :mod:`inference.evaluation.reports` — accuracy tables and breakdowns, the paper's Tables 2 and 5,
  Figures 2 and 4, both final-answer rules, all computed offline from the stored rounds;
* :mod:`inference.evaluation.cli` — ``videopro-eval records|run|merge|report``.
"""
