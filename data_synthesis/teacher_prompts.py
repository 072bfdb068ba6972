"""What the teacher is asked, and what the student is trained on.

The student's prompt for every trajectory is exactly the prompt the runner shows the policy at
inference (``inference/prompts.py``: Fig. 9 adaptive reasoning, Fig. 11 bug fix, Figs. 12/13
refinement), so SFT/GRPO rows train the model on the prompts it will see. The teacher gets the
same user message plus a system message with the output rules and further few-shot programs
(and, for refinement requests, the module specification of Fig. 7 and the example of Fig. 8,
which the adaptive prompt already carries) - and never the video (paper §4): it plans from the
question and choices alone and lets the modules find the evidence.

This module holds only the teacher-side wrapper (role, output rules, extra few-shot programs);
the module specification and the Fig. 8 example are imported from ``inference.prompts``, never
copied, and the student prompts are its renderers (docs/data_synthesis.md, "Teacher prompts").
"""

from __future__ import annotations

from dataclasses import dataclass

from inference.types import QARecord

TEACHER_ROLE = """\
You write executable visual programs that answer multiple-choice questions about long videos.
You never see the video: plan from the question and the choices alone, and let the modules
retrieve, localise and inspect the evidence at run time."""

TEACHER_RULES = """\
Output rules:
- Reply with exactly one <planning>...</planning> block followed by one <code>...</code> block,
  nothing else (no markdown fences).
- The code defines `def execute_command(video, question):` and returns the result of an
  answer module (query_mc, query_native, query_yn via make_result, ...) or make_result(...).
- `choices` (the option texts) and `duration` (seconds) are globals of the program.
- Call only the modules listed above. No imports, no file access, no dunder attributes.
- Handle empty retrieval or detection results with a fallback (e.g. sample the whole video).
- Write a multi-step visual program (program mode): use retrieval, temporal localisation,
  subtitles or frame analysis as the question needs. A lone query_native call is not wanted."""

# Few-shot programs beyond the paper's Fig. 8 example (which the student prompt, and so the
# teacher's, already carries: inference.prompts.FEW_SHOT_EXAMPLE). They use only the documented
# module signatures (inference.modules) and show the other evidence routes: subtitles and OCR.
FEW_SHOT_EXAMPLES: tuple[tuple[str, str], ...] = (
    ("""Question: What does the host say is the main reason the bridge was closed?
Choices:
A. a storm damaged it
B. it was being repainted
C. a ship hit one of its pillars
D. the city ran out of money""",
     """<planning>
The answer is something the host says, so the subtitles carry the evidence. I will retrieve the subtitle passage about the bridge closing, look at the frames around it, and answer with the subtitle hints and those frames.
</planning>
<code>
def execute_command(video, question):
    intervals = get_informative_subtitles(video, "the bridge was closed because", top_k=1)
    frames = []
    for start, end in intervals:
        frames.extend(trim_frames(video, start, end))
    if not frames:
        frames = extract_frames(video, 16)
    hints = get_subtitle_hints(video, question, choices, duration)
    return query_mc(frames, question + " Subtitle hints: " + hints, choices)
</code>"""),
    ("""Question: Which number is shown on the scoreboard right after the first goal?
Choices:
A. 1-0
B. 0-1
C. 2-0
D. 1-1""",
     """<planning>
This needs a precise moment and small on-screen text. I will retrieve the clip of the first goal, take the frames just after it, read the text with OCR, and answer from the frames together with the text that was read.
</planning>
<code>
def execute_command(video, question):
    intervals, clip_paths = get_informative_clips(video, "the first goal is scored", top_k=1)
    if intervals:
        frames = trim_after(video, intervals[0][1], 10)
    else:
        frames = extract_frames(video, 16)
    texts = [run_ocr(frame) for frame in frames]
    seen = " ".join(str(t) for t in texts if t)
    return query_mc(frames, question + " Text seen on screen: " + seen, choices)
</code>"""),
)


def teacher_system_prompt(num_few_shot: int = 2, *, with_module_spec: bool = True) -> str:
    """The teacher's system message: role, output rules, few-shot programs and, for requests
    whose user prompt does not already carry them (the refinement prompts, Figs. 11-13), the
    module specification (Fig. 7) and the paper's example (Fig. 8)."""
    from inference.prompts import FEW_SHOT_EXAMPLE, module_specification

    parts = [TEACHER_ROLE]
    if with_module_spec:
        parts += [module_specification(), FEW_SHOT_EXAMPLE]
    parts.append(TEACHER_RULES)
    for i, (question, output) in enumerate(FEW_SHOT_EXAMPLES[:num_few_shot], 1):
        parts.append(f"Further example {i}\n{question}\n{output}")
    return "\n\n".join(parts)


@dataclass(frozen=True)
class StudentPrompts:
    """The inference prompts (one place, so synthesis and the runner cannot drift apart)."""

    @staticmethod
    def adaptive(record: QARecord) -> str:
        from inference.prompts import render_adaptive_prompt

        return render_adaptive_prompt(record.question, list(record.choices))

    @staticmethod
    def bugfix(record: QARecord, code: str, error_log: str) -> str:
        from inference.prompts import render_bugfix_prompt

        return render_bugfix_prompt(record.question, list(record.choices), code, error_log)

    @staticmethod
    def native_refine(record: QARecord) -> str:
        from inference.prompts import render_native_refine_prompt

        return render_native_refine_prompt(record.question, list(record.choices))

    @staticmethod
    def program_refine(record: QARecord, code: str) -> str:
        from inference.prompts import render_program_refine_prompt

        return render_program_refine_prompt(record.question, list(record.choices), code)

    @staticmethod
    def native_output() -> str:
        from inference.prompts import NATIVE_OUTPUT

        return NATIVE_OUTPUT


def teacher_messages(system: str, student_prompt: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": system}, {"role": "user", "content": student_prompt}]
