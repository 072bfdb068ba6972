"""The data-synthesis stage config (one dataclass, parsed by ``inference.config.parse_config``).

Precedence: these defaults < a YAML recipe under ``configs/synthesis/`` (``--config``) < flags.
Every field has help text; ``launch/synthesize.sh --help`` prints it.
"""

from __future__ import annotations

from dataclasses import dataclass

from inference.confidence import CONFIDENCE_THRESHOLD, TRUST_PROGRAM_CONFIDENCE
from inference.config import config_field

STAGES = ("label", "programs", "r1", "r2", "r3", "r4", "export")
KINDS = ("R1", "R2", "R3", "R4")


@dataclass
class SynthesisConfig:
    # ---- input questions -------------------------------------------------------------------
    source: str = config_field("", "Where the questions come from: a QA JSONL path (DESIGN.md §2 records) or a "
                                   "registered source name such as 'cgbench' (see inference/qa_sources.py).")
    source_root: str = config_field("", "Root folder of a named source's download (e.g. the CG-Bench folder holding "
                                        "cgbench.json and cg_videos_720p/). Unused for a JSONL path.")
    split: str = config_field("train", "Split of the source to read. CG-Bench: 'train' (all questions not in the mini "
                                       "eval subset), 'mini', 'full'. A JSONL path has one split and ignores this.")
    limit: int = config_field(0, "Use only the first N questions (0 = all).")
    output_dir: str = config_field("outputs/synthesis", "Run folder: per-stage shard files, trajectories, the "
                                                        "exported datasets and reports.")
    stages: str = config_field("all", "Comma-separated stages to run, in pipeline order: label, programs, r1, r2, r3, "
                                      "r4, export; 'all' runs every stage. Each stage resumes: finished question ids "
                                      "are skipped.")
    shard: str = config_field("0/1", "Process shard i of n ('i/n'): questions whose stable id hash mod n equals i. "
                                     "Run the n shards anywhere, then run stage 'export' once to merge them.")

    # ---- oracle mode label -----------------------------------------------------------------
    confidence_threshold: float = config_field(
        CONFIDENCE_THRESHOLD, "Confidence threshold τ: the oracle mode label m* is 'native' iff the native answer is "
        "correct with confidence >= τ (paper A.3: 0.75); low-confidence native answers feed R4.", aliases=["--tau"])
    trust_program_confidence: bool = config_field(
        TRUST_PROGRAM_CONFIDENCE, "Count a confidence a program stated itself (make_result('B', 0.99), "
                                  "r['confidence'] = 1.0) in labels, R1-R4 checks and R4 candidates. Off (the paper: "
                                  "confidence comes from the model, Eq. 2): it counts as 0, so such a program is "
                                  "refined and never kept for its confidence.")

    # ---- teacher (GPT-5 or any OpenAI-compatible endpoint) ---------------------------------
    teacher_model: str = config_field("gpt-5", "Teacher model name sent to the API.")
    teacher_api_base: str = config_field("", "Base URL of an OpenAI-compatible endpoint; empty = $OPENAI_BASE_URL or "
                                             "api.openai.com.")
    teacher_api_key_env: str = config_field("OPENAI_API_KEY", "Environment variable holding the teacher API key (the "
                                                              "key itself never goes in a config).")
    teacher_mode: str = config_field("live", "'live': call the API (answers from the request cache first); 'replay': "
                                             "answer only from the request cache and fail on a miss; 'batch': submit "
                                             "cache misses through the OpenAI Batch API (half price, up to 24 h) and "
                                             "collect the results into the cache.")
    teacher_cache_dir: str = config_field("", "On-disk request cache (one JSON file per request, keyed by the full "
                                              "request body); empty = <output_dir>/teacher_cache. Reruns read from it "
                                              "and cost nothing.")
    teacher_reasoning: str = config_field("auto", "Whether the teacher is a reasoning model: 'auto' (gpt-5*, o1*, "
                                                  "o3*, o4* are), 'yes', 'no'. Reasoning models get reasoning_effort "
                                                  "and no temperature.")
    reasoning_effort: str = config_field("medium", "reasoning_effort for reasoning models: minimal, low, medium, high "
                                                   "('' = not sent).")
    teacher_temperature: float = config_field(-1.0, "Sampling temperature for non-reasoning teachers (< 0 = not sent; "
                                                    "never sent to reasoning models, which reject it).")
    max_completion_tokens: int = config_field(16384, "max_completion_tokens per teacher request (includes a reasoning "
                                                     "model's hidden tokens).")
    teacher_concurrency: int = config_field(8, "Most teacher requests in flight at once.")
    teacher_max_retries: int = config_field(6, "Retries per request on rate limits (429), server errors (5xx), "
                                               "timeouts and dropped connections, with exponential backoff and "
                                               "jitter; other errors fail at once.")
    teacher_backoff_s: float = config_field(2.0, "First backoff delay in seconds; doubles each retry (a Retry-After "
                                                 "header wins).")
    teacher_backoff_max_s: float = config_field(120.0, "Longest backoff delay (s).")
    teacher_timeout_s: float = config_field(600.0, "Per-request timeout (s).")
    price_input_per_mtok: float = config_field(1.25, "USD per million uncached input tokens (GPT-5 list price; set "
                                                     "for your model).")
    price_cached_input_per_mtok: float = config_field(0.125, "USD per million cached input tokens (provider-side "
                                                             "prompt cache).")
    price_output_per_mtok: float = config_field(10.0, "USD per million output tokens, reasoning tokens included.")
    batch_discount: float = config_field(0.5, "Price multiplier for requests answered through the Batch API.")
    batch_poll_s: float = config_field(60.0, "Batch API status poll interval (s).")
    batch_max_wait_s: float = config_field(26 * 3600.0, "Give up waiting for a batch after this long (s); rerunning "
                                                        "resumes the same batch.")
    num_few_shot: int = config_field(2, "Few-shot programs the teacher's system prompt adds to the paper's Fig. 8 "
                                        "example (0..2): a subtitle-retrieval and an OCR program.")

    # ---- native labelling ------------------------------------------------------------------
    native_backend: str = config_field("modules", "How native answers are obtained: 'modules' (the module library's "
                                                  "query_native, whose VLM backend is an OpenAI-compatible endpoint "
                                                  "or in-process transformers) or 'executor' (run the Fig. 10 native "
                                                  "program through the sandbox).")
    native_api_base: str = config_field("", "OpenAI-compatible endpoint serving the native VideoLLM (e.g. `vllm "
                                            "serve`); empty = the module library's default / $VIDEOPRO_API_BASE.")
    native_model: str = config_field("", "Native VideoLLM name at that endpoint, or a local checkpoint path for "
                                         "in-process use; empty = the module library's default / $VIDEOPRO_MODEL.")

    # ---- program execution -----------------------------------------------------------------
    clip_dir: str = config_field("", "Clip cache folder for the module library; empty = <output_dir>/clips.")
    clip_duration: float = config_field(10.0, "Clip length in seconds.")
    module_config: str = config_field("", "Optional YAML with module-library backend settings (retriever, detector, "
                                          "OCR, ...).")
    exec_workers: int = config_field(1, "Sandbox worker processes.")
    exec_timeout_s: float = config_field(600.0, "Wall-clock limit per program run (s).")
    call_cache_dir: str = config_field("", "Module-call cache shared by all stages; empty = <output_dir>/call_cache.")

    # ---- failures that are not data ---------------------------------------------------------
    max_host_failure_rate: float = config_field(0.1, "A question whose native model call or program run failed for "
                                                     "reasons outside the program (endpoint down, out of memory, "
                                                     "sandbox start failure: ExecutionRecord.host_error) gets no row, "
                                                     "so a rerun retries it. A stage stops with an error naming the "
                                                     "backend when more than this fraction of its questions fail that "
                                                     "way (judged once a chunk's worth has run), or when a whole "
                                                     "chunk fails; a stage with any such failure does not finish "
                                                     "(until the item reaches max_item_attempts).")
    max_item_attempts: int = config_field(3, "Runs in which one item (question or R1-R4 candidate) may fail outside "
                                             "the program before it stops being retried: counted per item across runs "
                                             "in <output_dir>/<stage>/<shard>.attempts.json (a run stopped early by "
                                             "max_host_failure_rate counts nothing); after that many the item gets a "
                                             "row with status host_error and the last error, is left out of every "
                                             "dataset and is counted in the statistics, and the stage can finish.")
    max_teacher_error_rate: float = config_field(0.1, "A teacher request the API refuses for its content (400 content "
                                                      "filter, 413, 422) is recorded as that question's outcome "
                                                      "(status teacher_error) and skipped on reruns. A stage stops "
                                                      "without recording them when more than this fraction of its "
                                                      "requests are refused (judged after 20 requests) or a whole "
                                                      "chunk of two or more is: that points at the request itself (a "
                                                      "parameter the model rejects), not at single questions.")

    # ---- trajectory rules ------------------------------------------------------------------
    program_questions: str = config_field("all", "Which questions the teacher writes a first program for: 'all' "
                                                 "(paper: concurrently with native labelling; failures feed R3/R4 "
                                                 "too) or 'program_label' (only m* = program).")
    r2_min_confidence: float = config_field(0.0, "R2 keeps a correct teacher program only if its answer confidence is "
                                                 "at least this.")
    refine_candidates_below: float = config_field(-1.0, "A successful program is an R4 candidate if it is wrong or "
                                                        "its confidence is below this; < 0 = use confidence_threshold.")
    max_repair_rounds: int = config_field(2, "R3/R4: teacher revisions tried per candidate; a revision that fails "
                                             "again is shown to the teacher with its own error log.")
    refine_min_confidence: float = config_field(0.0, "R3/R4 keep a verified revision only if its answer confidence is "
                                                     "at least this.")

    # ---- export ----------------------------------------------------------------------------
    sft_kinds: str = config_field("R1,R2", "Trajectory kinds exported to the SFT set. The release: SFT = reasoning "
                                           "samples (R1, R2), GRPO = refine samples (R3, R4); the paper's text mixes "
                                           "all four into SFT.")
    grpo_kinds: str = config_field("R3,R4", "Trajectory kinds exported to the GRPO set.")
    video_path_mode: str = config_field("absolute", "How rows name videos: 'absolute' paths, or 'relative' to "
                                                    "video_root.")
    quiet: bool = config_field(False, "No progress display (a bar on a terminal, periodic log lines otherwise).")
    video_root: str = config_field("", "Root for video_path_mode=relative.")

    def __post_init__(self) -> None:
        from data_synthesis.sharding import parse_shard

        parse_shard(self.shard)  # fails early with a clear message
        if not 0.0 <= self.confidence_threshold <= 1.0:
            raise ValueError(f"confidence_threshold must lie in [0, 1], got {self.confidence_threshold}")
        if self.teacher_mode not in ("live", "replay", "batch"):
            raise ValueError(f"teacher_mode must be live, replay or batch, got {self.teacher_mode!r}")
        if self.teacher_reasoning not in ("auto", "yes", "no"):
            raise ValueError(f"teacher_reasoning must be auto, yes or no, got {self.teacher_reasoning!r}")
        if self.native_backend not in ("modules", "executor"):
            raise ValueError(f"native_backend must be 'modules' or 'executor', got {self.native_backend!r}")
        if self.program_questions not in ("all", "program_label"):
            raise ValueError(f"program_questions must be 'all' or 'program_label', got {self.program_questions!r}")
        if self.video_path_mode not in ("absolute", "relative"):
            raise ValueError(f"video_path_mode must be 'absolute' or 'relative', got {self.video_path_mode!r}")
        if self.video_path_mode == "relative" and not self.video_root:
            raise ValueError("video_path_mode=relative needs video_root")
        for name in ("max_host_failure_rate", "max_teacher_error_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        if self.max_item_attempts < 1:
            raise ValueError(f"max_item_attempts must be at least 1, got {self.max_item_attempts}")
        if not 0 <= self.num_few_shot <= 2:
            raise ValueError(f"num_few_shot must be 0..2, got {self.num_few_shot}")
        self.stage_list()
        self.kind_list(self.sft_kinds)
        self.kind_list(self.grpo_kinds)

    def stage_list(self) -> list[str]:
        """The stages to run, in pipeline order."""
        if self.stages.strip() == "all":
            return list(STAGES)
        wanted = [s.strip() for s in self.stages.split(",") if s.strip()]
        unknown = sorted(set(wanted) - set(STAGES))
        if unknown or not wanted:
            raise ValueError(f"stages: unknown stage(s) {unknown or wanted}; choose from {list(STAGES)} or 'all'")
        return [s for s in STAGES if s in wanted]

    @staticmethod
    def kind_list(text: str) -> list[str]:
        kinds = [k.strip().upper() for k in text.split(",") if k.strip()]
        unknown = sorted(set(kinds) - set(KINDS))
        if unknown:
            raise ValueError(f"unknown trajectory kind(s) {unknown}; choose from {list(KINDS)}")
        return kinds

    @property
    def refine_candidate_threshold(self) -> float:
        """Confidence below which a successful program becomes an R4 candidate."""
        return self.confidence_threshold if self.refine_candidates_below < 0 else self.refine_candidates_below

    @property
    def chunk_size(self) -> int:
        """Questions a stage works on at once (teacher requests in flight x 4; at least 4)."""
        return max(4, self.teacher_concurrency * 4)
