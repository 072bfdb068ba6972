"""The adaptive runner: generate -> execute -> refine (paper §3.4-3.5, Figs. 9-13).

One question goes through rounds:

1. **initial** — the policy VideoLLM watches the video and answers the adaptive reasoning
   prompt (Fig. 9) with ``<planning>`` + ``<code>``; the program runs in the sandbox.
2. **refinement** — while rounds remain (``max_refine_rounds``), the last round decides:

   - the program could not be parsed or failed at run time -> **bug fix** (Fig. 11) with the
     runtime error log (unless the failure was a host error — a module backend that failed
     for reasons outside the program, ``ExecutionRecord.host_error`` — which no rewrite can
     fix: the run stops and ``RunResult.stopped_reason``/``host_error`` say why);
   - it succeeded with confidence < τ in native mode -> **native refinement** (Fig. 12);
   - it succeeded with confidence < τ in program mode -> **program refinement** (Fig. 13);
   - otherwise stop.

**Confidence** is the model's (paper Eq. 2), read through
:func:`inference.confidence.effective_confidence`: a confidence the program stated itself
(``ExecutionRecord.confidence_source == "program"``) counts as missing (0: refine, never
confident, never the most confident) unless ``trust_program_confidence`` is on, in every
decision below and in the replays.

**Final answer rule** (``final_answer_rule``). ``last`` (the paper, §3.5: the refined program
is re-executed and its answer returned): the latest round whose program executed and returned
a valid option letter; a refinement that fails therefore never discards a valid earlier answer.
``max_confidence`` (an option): among the valid rounds, the most confident; ties go to the
later round. When no round produced a valid answer and ``fallback_native`` is on (an option;
the paper has no fallback), ``query_native`` is called directly (trusted code, no program) and
recorded as a ``fallback`` round.

Every round is recorded (prompt, output, parsed code, execution record, timings, token
counts) so that the final answer under either rule and the threshold sweep of the paper's
Figure 4 can be recomputed from the record without re-running anything
(:func:`choose_final`, :func:`final_answer_at_threshold`).

:class:`RunnerConfig` holds the runner's settings; its defaults are the paper's (program
sampling at temperature 0.7 with the checkpoint's own top-p/top-k, up to 4,096 new tokens, τ =
0.75, one refinement round, rule ``last``, no fallback). docs/inference.md lists each setting
with the paper's value and why an alternative exists.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

from inference.confidence import CONFIDENCE_THRESHOLD, TRUST_PROGRAM_CONFIDENCE, effective_confidence
from inference.config import config_field
from inference.programs import classify_mode, parse_model_output, validate_program
from inference.prompts import (
    render_adaptive_prompt,
    render_bugfix_prompt,
    render_native_refine_prompt,
    render_program_refine_prompt,
)
from inference.sandbox.host import is_program_fault
from inference.types import OPTION_LETTERS, AnswerResult, ExecutionRecord

RoundKind = Literal["initial", "bugfix", "native_refine", "program_refine", "given", "fallback"]
FinalAnswerRule = Literal["last", "max_confidence"]
FINAL_ANSWER_RULES: tuple[str, ...] = ("last", "max_confidence")


@dataclass
class RunnerConfig:
    """The adaptive runner's settings; the defaults are the paper's (docs/inference.md)."""

    confidence_threshold: float = config_field(
        CONFIDENCE_THRESHOLD, "τ: a successful answer below this confidence is refined (paper §4: 0.75).",
        aliases=["--tau"])
    max_refine_rounds: int = config_field(1, "Most refinement rounds after the first program (paper: 1).")
    temperature: float = config_field(0.7, "Sampling temperature of the programs the policy writes (paper §4: "
                                           "0.7); 0 decodes greedily.")
    top_p: float | None = config_field(None, "Nucleus sampling of the programs; None: the checkpoint's own "
                                             "(generation_config.json).")
    top_k: int | None = config_field(None, "Top-k sampling of the programs; None: the checkpoint's own "
                                           "(generation_config.json).")
    max_new_tokens: int = config_field(4096, "Token budget of one generated program (the paper's GRPO command: "
                                             "4,096; its programs average ~1,500 tokens).")
    final_answer_rule: str = config_field(
        "last", "Which valid round answers: 'last' (paper §3.5: the refined, re-executed program's answer) or "
                "'max_confidence' (the most confident valid round).")
    fallback_native: bool = config_field(False, "When no round yields a valid answer, answer with query_native "
                                                "directly (not in the paper).")
    seed: int | None = config_field(None, "Seed of program sampling (None: unseeded).")
    trust_program_confidence: bool = config_field(
        TRUST_PROGRAM_CONFIDENCE, "Count a confidence the program stated itself (make_result('B', 0.99), "
                                  "r['confidence'] = 1.0) as the answer's confidence. Off (the paper: confidence "
                                  "comes from the model, Eq. 2): such an answer is treated as unconfident and refined.")

    def __post_init__(self) -> None:
        if not 0.0 <= self.confidence_threshold <= 1.0:
            raise ValueError(f"confidence_threshold must be in [0, 1], got {self.confidence_threshold}")
        if self.max_refine_rounds < 0:
            raise ValueError(f"max_refine_rounds must be >= 0, got {self.max_refine_rounds}")
        if self.final_answer_rule not in FINAL_ANSWER_RULES:
            raise ValueError(f"final_answer_rule must be one of {FINAL_ANSWER_RULES}, got {self.final_answer_rule!r}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")


@dataclass
class Round:
    """One generate (or given program) -> execute step."""

    index: int
    kind: RoundKind
    prompt: str
    output: str
    planning: str
    code: str
    format_ok: bool
    problems: list[str]
    execution: ExecutionRecord
    mode: str | None
    generate_s: float = 0.0
    execute_s: float = 0.0
    completion_tokens: int = 0

    @property
    def answer(self) -> AnswerResult | None:
        """The round's answer if its program executed and returned an option letter."""
        ex = self.execution
        return ex.result if ex.success and ex.result is not None and ex.result.answer else None

    def confidence(self, trust_program_confidence: bool = TRUST_PROGRAM_CONFIDENCE) -> float:
        """The answer's confidence as the runner decides with it: 0 when there is no answer or its
        confidence counts as missing (:func:`inference.confidence.effective_confidence`)."""
        if self.answer is None:
            return 0.0
        value = effective_confidence(self.execution, trust_program_confidence)
        return 0.0 if value is None else value

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["execution"] = self.execution.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Round:
        """Inverse of :meth:`to_dict` (a round read back from a result JSON, e.g. for the
        threshold replay of :func:`final_answer_at_threshold`)."""
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        values["execution"] = ExecutionRecord.from_dict(data["execution"])
        values["problems"] = list(data.get("problems") or [])
        return cls(**values)


@dataclass
class RunResult:
    """Everything one question went through, and the chosen answer."""

    video: str
    question: str
    choices: list[str]
    answer: str
    confidence: float
    final_round: int | None
    mode: str | None
    rounds: list[Round] = field(default_factory=list)
    confidence_threshold: float = CONFIDENCE_THRESHOLD
    final_answer_rule: str = "last"
    #: Whether program-stated confidences counted (``RunnerConfig.trust_program_confidence``);
    #: ``confidence`` is the final round's effective confidence under it.
    trust_program_confidence: bool = TRUST_PROGRAM_CONFIDENCE
    #: ``ExecutionRecord.confidence_source`` of the final round's answer.
    confidence_source: str | None = None
    wall_time_s: float = 0.0
    question_id: str | None = None
    ground_truth: str | None = None
    #: Why the run ended: ``"confident"`` (the last round reached τ), ``"max_refine_rounds"``
    #: (rounds ran out, incl. ``max_refine_rounds=0``, while the last round still called for
    #: refinement), ``"host_error: <message>"`` (a module backend failed outside the program,
    #: e.g. an endpoint down: nothing for the model to fix, so no further round), or
    #: ``"no_valid_answer"`` (no round and no fallback produced an answer, for other reasons).
    stopped_reason: str | None = None
    #: The host failure that stopped the run (or that the ``query_native`` fallback hit), else None.
    host_error: str | None = None

    @property
    def refined(self) -> bool:
        return any(r.kind in ("bugfix", "native_refine", "program_refine") for r in self.rounds)

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if k != "rounds"}
        data["refined"] = self.refined
        data["rounds"] = [r.to_dict() for r in self.rounds]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunResult:
        """Inverse of :meth:`to_dict` (derived keys such as ``refined`` are recomputed)."""
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        if "threshold" in data:  # results written before the field was named confidence_threshold
            values.setdefault("confidence_threshold", data["threshold"])
        values["rounds"] = [Round.from_dict(r) for r in data.get("rounds") or []]
        return cls(**values)


def next_round_kind(last: Round, confidence_threshold: float,
                    trust_program_confidence: bool = TRUST_PROGRAM_CONFIDENCE) -> RoundKind | None:
    """Which refinement the last round calls for, or ``None`` to stop (module docstring). A
    confidence the program stated itself counts as missing unless ``trust_program_confidence``."""
    if last.kind == "fallback":
        return None
    if last.execution.host_error and not last.execution.success:
        return None  # a backend failed (endpoint down, OOM): nothing for the model to fix
    if not last.code or not last.execution.success or last.answer is None:
        return "bugfix"
    if last.confidence(trust_program_confidence) < confidence_threshold:
        return "native_refine" if last.mode == "native" else "program_refine"
    return None


def choose_final(rounds: Sequence[Round], rule: str = "last",
                 trust_program_confidence: bool = TRUST_PROGRAM_CONFIDENCE) -> Round | None:
    """The round whose answer is final under ``rule`` (module docstring), among the rounds that
    executed and returned a valid option letter; ``None`` when there is none. A ``fallback``
    round counts only when no other round is valid (it is recorded only then). Under
    ``max_confidence`` a program-stated confidence counts as 0 unless ``trust_program_confidence``."""
    if rule not in FINAL_ANSWER_RULES:
        raise ValueError(f"final answer rule must be one of {FINAL_ANSWER_RULES}, got {rule!r}")
    valid = [r for r in rounds if r.answer is not None]
    programs = [r for r in valid if r.kind != "fallback"]
    valid = programs or valid
    if not valid:
        return None
    if rule == "last":
        return valid[-1]
    best = valid[0]
    for r in valid[1:]:
        if r.confidence(trust_program_confidence) >= best.confidence(trust_program_confidence):
            best = r
    return best


def final_answer_at_threshold(rounds: Sequence[Round], confidence_threshold: float,
                              rule: str = "last",
                              trust_program_confidence: bool = TRUST_PROGRAM_CONFIDENCE) -> AnswerResult | None:
    """Replay the refinement decisions of recorded ``rounds`` at another τ (Fig. 4) under ``rule``.

    Refinement happens only while the previous round calls for it, so with a lower threshold
    the run stops earlier: the rounds kept are the prefix up to the first round that would
    not have been refined. (A higher threshold than the recorded one cannot be replayed past
    the last recorded round.) A recorded ``fallback`` round answers when no kept round is valid.
    The returned answer's ``confidence`` is as recorded; use :meth:`Round.confidence` for the
    effective one.
    """
    kept: list[Round] = []
    for r in rounds:
        if r.kind == "fallback":
            break
        kept.append(r)
        if next_round_kind(r, confidence_threshold, trust_program_confidence) is None:
            break
    chosen = choose_final(kept, rule, trust_program_confidence)
    if chosen is None:
        fallback = next((r for r in rounds if r.kind == "fallback"), None)
        return fallback.answer if fallback is not None else None
    return chosen.answer


class AdaptiveRunner:
    """generate -> execute -> refine for one question at a time.

    Args:
        policy: the VideoLLM that writes programs (a :class:`~inference.backends.vlm.VLMBackend`).
        executor: a :class:`~inference.sandbox.ProgramExecutor` over ``runtime.functions()``.
        runtime: the :class:`~inference.modules.ModuleRuntime` (video store, video inputs,
            ``query_native`` for the fallback).
        config: the :class:`RunnerConfig` (default: the paper's settings).
        progress: called with short status lines (``[1/3] Generating visual program ...``).
        **overrides: ``RunnerConfig`` fields that replace ``config``'s (e.g. ``max_refine_rounds=0``).
    """

    def __init__(self, policy: Any, executor: Any, runtime: Any, config: RunnerConfig | None = None, *,
                 progress: Callable[[str], None] | None = None, **overrides: Any) -> None:
        self.config = replace(config or RunnerConfig(), **overrides)  # validated by __post_init__
        self.policy, self.executor, self.runtime = policy, executor, runtime
        self.progress = progress or (lambda message: None)

    # -- one question ------------------------------------------------------------------------
    def run(self, video: str, question: str, choices: Sequence[str], *, duration: float | None = None,
            code: str | None = None, question_id: str | None = None,
            ground_truth: str | None = None) -> RunResult:
        """Answer one question. With ``code`` the given program is executed instead of
        generating one (the original ``--code-file``); refinement still applies."""
        choices = list(choices)
        if len(choices) < 2:
            raise ValueError(f"a multiple-choice question needs at least two choices, got {choices!r}")
        if len(choices) > len(OPTION_LETTERS):
            raise ValueError(f"at most {len(OPTION_LETTERS)} choices are supported, got {len(choices)}")
        start = time.perf_counter()
        store = self.runtime.store
        info = store.probe(video)  # raises VideoInputError naming a missing or bad file
        duration = float(info.duration) if duration is None else float(duration)
        cfg = self.config
        total_steps = 2 + cfg.max_refine_rounds
        rounds: list[Round] = []

        if code is not None:
            self.progress(f"[1/{total_steps}] Using the given visual program ...")
            rounds.append(self._execute_round(0, "given", "", code, video, question, choices, duration))
        else:
            self.progress(f"[1/{total_steps}] Generating visual program ...")
            prompt = render_adaptive_prompt(question, choices)
            rounds.append(self._generate_round(0, "initial", prompt, video, question, choices, duration))
        self.progress(f"[2/{total_steps}] Executed visual program: {self._describe(rounds[-1])}")

        trust = cfg.trust_program_confidence
        for step in range(cfg.max_refine_rounds):
            kind = next_round_kind(rounds[-1], cfg.confidence_threshold, trust)
            if kind is None:
                break
            self.progress(f"[{3 + step}/{total_steps}] Refining ({kind.replace('_', ' ')}) ...")
            prompt = self._refine_prompt(kind, rounds[-1], question, choices)
            rounds.append(self._generate_round(len(rounds), kind, prompt, video, question, choices, duration))
            self.progress(f"    refined program: {self._describe(rounds[-1])}")

        last = rounds[-1]
        host_error: str | None = None
        if next_round_kind(last, cfg.confidence_threshold, trust) is not None:
            stopped_reason = "max_refine_rounds"
            status = ("Refinement disabled (--max-refine-rounds 0)." if cfg.max_refine_rounds == 0
                      else f"No refinement rounds left (--max-refine-rounds {cfg.max_refine_rounds}).")
        elif last.execution.host_error and not last.execution.success:
            host_error = last.execution.host_error
            stopped_reason = f"host_error: {host_error}"
            status = (f"Stopped: a host error, not the program's fault ({host_error[:200]}); "
                      "no refinement can fix it.")
        else:
            stopped_reason = "confident"
            status = f"No refinement needed (confidence >= {cfg.confidence_threshold:g})."
        self.progress(f"[{total_steps}/{total_steps}] {status}" if len(rounds) == 1 else f"    {status}")

        chosen = choose_final(rounds, cfg.final_answer_rule, trust)
        if chosen is None and cfg.fallback_native:
            self.progress("No round produced a valid answer; falling back to query_native.")
            rounds.append(self._fallback_round(len(rounds), video, question, choices))
            chosen = choose_final(rounds[-1:], cfg.final_answer_rule, trust)
            if chosen is None:
                fallback = rounds[-1].execution
                self.progress(f"    query_native failed: {fallback.error_type}: {(fallback.error_message or '')[:200]}"
                              + (" (a host error)" if fallback.host_error else ""))
                if host_error is None and fallback.host_error:
                    host_error = fallback.host_error
                    stopped_reason = f"host_error: {host_error}"
        answer = chosen.answer if chosen is not None else None
        if answer is None and host_error is None:
            stopped_reason = "no_valid_answer"
        return RunResult(
            video=video, question=question, choices=choices,
            answer=answer.answer if answer else "", confidence=chosen.confidence(trust) if chosen is not None else 0.0,
            final_round=chosen.index if chosen is not None else None,
            mode=chosen.mode if chosen is not None else None, rounds=rounds,
            confidence_threshold=cfg.confidence_threshold, final_answer_rule=cfg.final_answer_rule,
            trust_program_confidence=trust,
            confidence_source=chosen.execution.confidence_source if chosen is not None else None,
            wall_time_s=time.perf_counter() - start, question_id=question_id, ground_truth=ground_truth,
            stopped_reason=stopped_reason, host_error=host_error)

    # -- rounds --------------------------------------------------------------------------------
    def _refine_prompt(self, kind: RoundKind, last: Round, question: str, choices: list[str]) -> str:
        if kind == "bugfix":
            log = last.execution.error_log() if last.code else ("The output contained no executable "
                                                                "execute_command program: " + "; ".join(last.problems))
            return render_bugfix_prompt(question, choices, last.code or last.output, log)
        if kind == "native_refine":
            return render_native_refine_prompt(question, choices)
        return render_program_refine_prompt(question, choices, last.code)

    def _generate_round(self, index: int, kind: RoundKind, prompt: str, video: str, question: str,
                        choices: list[str], duration: float) -> Round:
        t0 = time.perf_counter()
        # The whole video by the SFT frame policy (ModuleConfig video_*): what the policy was trained on.
        inputs = self.runtime.video_inputs(video)
        cfg = self.config
        generation = self.policy.generate(prompt, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                                          top_p=cfg.top_p, top_k=cfg.top_k, seed=cfg.seed, **inputs)
        generate_s = time.perf_counter() - t0
        r = self._execute_round(index, kind, prompt, generation.text, video, question, choices, duration,
                                raw_output=True)
        r.generate_s, r.completion_tokens = generate_s, int(generation.num_tokens)
        return r

    def _execute_round(self, index: int, kind: RoundKind, prompt: str, text: str, video: str,
                       question: str, choices: list[str], duration: float, raw_output: bool = False) -> Round:
        """Parse ``text`` (a model output, or bare code when ``raw_output`` is false), validate it
        and, if it is a program, run it in the sandbox."""
        parsed = parse_model_output(text)
        code = parsed.code if parsed.code else ("" if raw_output else text)
        problems = list(parsed.problems)
        if code:
            validation = validate_program(code)
            problems += list(validation.problems)
        t0 = time.perf_counter()
        if not code:
            execution = ExecutionRecord(success=False, error_type="FormatError",
                                        error_message="no execute_command program found in the output: "
                                        + ("; ".join(problems) or "empty output"))
        else:
            execution = self.executor.execute(code, video=video, question=question, choices=choices,
                                              duration=duration, allowed_roots=self.runtime.program_roots(video))
        mode = classify_mode(code) if code else None
        return Round(index=index, kind=kind, prompt=prompt, output=text, planning=parsed.planning or "",
                     code=code, format_ok=bool(parsed.format_ok), problems=problems, execution=execution,
                     mode=mode, execute_s=time.perf_counter() - t0)

    def _fallback_round(self, index: int, video: str, question: str, choices: list[str]) -> Round:
        t0 = time.perf_counter()
        try:
            result = AnswerResult.from_dict(self.runtime.query_native(video, question, choices))
            execution = ExecutionRecord(success=True, result=result, mode="native",
                                        confidence_source="module:query_native")
        except Exception as exc:  # recorded, not hidden: the record carries the error
            execution = ExecutionRecord(success=False, error_type=type(exc).__name__, error_message=str(exc))
            if not is_program_fault(exc):  # the same classification as the sandbox's module calls
                execution.host_error = f"query_native(): {type(exc).__name__}: {exc}"[:4000]
        execution.wall_time_s = time.perf_counter() - t0
        return Round(index=index, kind="fallback", prompt="", output="", planning="", code="",
                     format_ok=False, problems=[], execution=execution, mode="native",
                     execute_s=execution.wall_time_s)

    def _describe(self, r: Round) -> str:
        if r.answer is not None:
            source = r.execution.confidence_source
            note = "" if source in (None, "") or source.startswith("module:") else (
                f", stated by the program{' (trusted)' if self.config.trust_program_confidence else ': not counted'}"
                if source == "program" else ", none returned")
            return (f"{r.mode} mode, answer {r.answer.answer} "
                    f"(confidence={r.confidence(self.config.trust_program_confidence):.2f}{note})")
        ex = r.execution
        return f"failed: {ex.error_type}: {(ex.error_message or '')[:120]}"
