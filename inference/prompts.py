"""Every prompt of the method, rendered deterministically (paper appendix, Figs. 7-14).

* :func:`module_specification` — the module API (Fig. 7), generated from the module functions'
  signatures and the first paragraph of their docstrings, grouped by the paper's five blocks
  (:data:`inference.programs.MODULE_BLOCKS`): the API the model is told about is the API that
  runs.
* :data:`FEW_SHOT_EXAMPLE` — the visual-program example (Fig. 8).
* :func:`render_adaptive_prompt` — the adaptive reasoning prompt (Fig. 9) with the module
  specification, the example and the question (input of R1 and R2).
* :data:`NATIVE_OUTPUT` — the native-mode output (Fig. 10, target of R1).
* :func:`render_bugfix_prompt` — refinement of a failed program with its error log (Fig. 11, R3).
* :func:`render_native_refine_prompt` — refinement of a low-confidence native answer (Fig. 12).
* :func:`render_program_refine_prompt` — refinement of a low-confidence program (Fig. 13).
* :func:`render_answer_prompt` — the single-letter answer prompt (Fig. 14).

The paper's refinement prompts end without restating the output format; by default a one-line
reminder (:data:`REFINE_FORMAT_NOTE`) is appended so that any model, including a teacher that
was never fine-tuned on the format, answers in ``<planning>``/``<code>`` form. Pass
``format_note=False`` for the paper's exact wording.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from inference.programs import ENTRY_POINT, MODULE_BLOCKS, MODULE_NAMES
from inference.types import format_question_with_choices

__all__ = [
    "ADAPTIVE_INSTRUCTIONS", "ANSWER_PROMPT", "FEW_SHOT_EXAMPLE", "HINTS_PROMPT", "NATIVE_OUTPUT",
    "NATIVE_PROGRAM", "OPEN_PROMPT", "PROGRAM_ONLY_INSTRUCTIONS", "PROGRAM_ONLY_REMINDER", "PROMPT_VERSION",
    "REFINE_FORMAT_NOTE",
    "YES_NO_PROMPT", "module_specification", "render_adaptive_prompt", "render_answer_prompt",
    "render_bugfix_prompt", "render_native_refine_prompt", "render_program_only_prompt",
    "render_program_refine_prompt",
]

#: Version of the prompt texts below. Bump it whenever any rendered prompt changes (wording, order,
#: the module specification's format): evaluation results record it in their provenance, so
#: numbers from different prompts are never mixed by a resumed or merged run.
PROMPT_VERSION = "2026-12-01.1"

#: The program of a native-mode answer (Figs. 10 and 12).
NATIVE_PROGRAM = (f"def {ENTRY_POINT}(video, question):\n"
                  "    return query_native(video, question, choices)\n")

#: Fig. 10: the whole model output for native reasoning mode (R1 target).
NATIVE_OUTPUT = ("<planning>\nBased on the video and the question, I will use native videoLLM reasoning "
                 "mode to solve this task.\n</planning>\n"
                 f"<code>\n{NATIVE_PROGRAM}</code>")

#: Fig. 9, the instruction part of the adaptive reasoning prompt.
ADAPTIVE_INSTRUCTIONS = (
    "You will receive a multiple-choice question about a video. Your output must define a Python "
    "function in the following format:\n"
    "<planning>\n"
    "Briefly judge whether the question can be direct solved by videoLLM and plan the main API calls "
    "and reasoning steps you will use. If it can be answered, use native reasoning mode with a single "
    "query_native call. If it needs long-range or multi-step reasoning, use more detailed visual "
    "program mode with other modules (retrieval, subtitles, frame analysis, etc.).\n"
    "</planning>\n"
    "<code>\n"
    "Write a Python function in the following format.\n"
    f"def {ENTRY_POINT}(video, question):\n"
    "    # Visual program code (no comments needed inside the code body).\n"
    "    ...\n"
    "    return answer\n"
    "</code>"
)

#: The "Multi-step Visual Program" paradigm of the paper's Table 2 (program reasoning only): Fig. 9
#: with its native-mode option removed. The paper does not publish this prompt; this wording is
#: our choice (docs/evaluation.md, "Paradigms").
PROGRAM_ONLY_INSTRUCTIONS = (
    "You will receive a multiple-choice question about a video. Your output must define a Python "
    "function in the following format:\n"
    "<planning>\n"
    "Plan the main API calls and reasoning steps you will use. Always use visual program mode: solve the "
    "question with a multi-step program over the modules (retrieval, subtitles, temporal localization, frame "
    "analysis, etc.). Do not answer with a single query_native call.\n"
    "</planning>\n"
    "<code>\n"
    "Write a Python function in the following format.\n"
    f"def {ENTRY_POINT}(video, question):\n"
    "    # Visual program code (no comments needed inside the code body).\n"
    "    ...\n"
    "    return answer\n"
    "</code>"
)

#: Appended when a program-only run re-asks a policy that answered with query_native alone.
PROGRAM_ONLY_REMINDER = ("Your previous answer used only query_native. Write a multi-step visual program that "
                         "calls other modules (retrieval, temporal localization, frame analysis or subtitles).")

_GLOBALS_NOTE = ("Inside the function, `choices` (the list of option texts) and `duration` (the video "
                 "length in seconds) are global variables, and the modules below can be called "
                 "directly; nothing needs to be imported.")

_EXAMPLE_QUESTION = ("In the video, a woman wearing glasses and a brown top folded the lower right corner "
                     "of the book. What vegetables were on the book?")
_EXAMPLE_CHOICES = ["pumpkins", "beans", "corn", "carrots", "squash", "peas", "potatoes"]
_EXAMPLE_OUTPUT = (
    "<planning>\n"
    "Based on the video and the question, I will use the visual program reasoning mode to solve this "
    "task. First, retrieve clips showing the woman in glasses and a brown top, folding the book. Then, "
    "filter frames containing the book. If no such frames are found, use all frames. Finally, query the "
    "model to identify the vegetables on the book from the given choices.\n"
    "</planning>\n"
    "<code>\n"
    f"def {ENTRY_POINT}(video, question):\n"
    "    intervals, clip_paths = get_informative_clips(\n"
    "        video,\n"
    "        \"woman wearing glasses and a brown top folding the book\",\n"
    "        top_k=1,\n"
    "    )\n"
    "    frames = []\n"
    "    for clip in clip_paths:\n"
    "        frames.extend(extract_frames(clip))\n"
    "    book_frames = []\n"
    "    for frame in frames:\n"
    "        if detect_object(frame, \"book\"):\n"
    "            book_frames.append(frame)\n"
    "    if not book_frames:\n"
    "        book_frames = frames\n"
    "    prompt = \"What vegetables were on the book?\"\n"
    "    return query_mc(book_frames, prompt, choices)\n"
    "</code>"
)

#: Fig. 8: the few-shot example of visual program reasoning.
FEW_SHOT_EXAMPLE = ("Few-shot Example for Visual Program Reasoning\n"
                    + format_question_with_choices(_EXAMPLE_QUESTION, _EXAMPLE_CHOICES) + "\n"
                    + _EXAMPLE_OUTPUT)

#: Appended to the refinement prompts unless ``format_note=False`` (see module docstring).
REFINE_FORMAT_NOTE = ("Output the refined program in the same format: <planning>...</planning> followed by "
                      f"<code>...</code> containing def {ENTRY_POINT}(video, question).")

#: Fig. 14: what ``query_native``/``query_mc`` send when they ask the VLM for a letter.
ANSWER_PROMPT = ("Select the best answer to the following multiple-choice question based on the video. "
                 "Respond with only the letter (A, B, C, or D or other letter) of the correct option.\n"
                 "{question_with_choices}\nOutput a single letter. The best answer is:")

#: The other prompts the module library sends to the answering VLM (query_yn, query_frames,
#: get_subtitle_hints); like Fig. 14 they fix the prompt an answer's confidence is measured under.
YES_NO_PROMPT = ("Answer the following question about the video frames with a single word, yes or no.\n"
                 "Question: {question}\nAnswer (yes or no):")
OPEN_PROMPT = ("Answer the following question about the video frames briefly and precisely, "
               "in at most one sentence.\nQuestion: {question}\nAnswer:")
HINTS_PROMPT = ("Below are subtitle lines from a video, with their times. Summarise, in at most "
                "{word_number} words, the information in them that helps answer the question. "
                "Mention times where useful and do not choose an option.\n\nSubtitles:\n{subtitles}\n\n"
                "{question_with_choices}\n\nSummary:")

#: Longest runtime error log shown in a bug-fix prompt; longer logs keep their head and tail.
MAX_ERROR_LOG_CHARS = 3_000


# -- module specification (Fig. 7) --------------------------------------------------------------
def _default_functions() -> Mapping[str, Callable[..., Any]]:
    from inference.modules import module_signatures

    return module_signatures()


def signature_text(name: str, fn: Callable[..., Any]) -> str:
    """``name(a, b=1)`` as a program calls it: no annotations, no ``self``, and no keyword-only
    parameters, which are other spellings a module accepts for compatibility (Fig. 7's ``k`` for
    ``top_k``) rather than part of the API the model is taught."""
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())
    if params and params[0].name == "self":
        params = params[1:]
    params = [p.replace(annotation=inspect.Parameter.empty) for p in params if p.kind is not p.KEYWORD_ONLY]
    return f"{name}{sig.replace(parameters=params, return_annotation=inspect.Signature.empty)}"


def _summary_paragraph(name: str, fn: Callable[..., Any]) -> str:
    doc = inspect.getdoc(fn)
    if not doc or not doc.strip():
        raise ValueError(f"module {name!r} has no docstring; its first paragraph is what the prompt "
                         "tells the model about it")
    return " ".join(doc.strip().split("\n\n")[0].split())


def module_specification(functions: Mapping[str, Callable[..., Any]] | None = None) -> str:
    """The module API section of the prompt (Fig. 7), one line per module, in five blocks.

    ``functions`` maps module names to the callables programs will run (plain functions, bound
    methods, or methods taking ``self``); by default the module library's
    (:func:`inference.modules.module_signatures`). Every name of
    :data:`~inference.programs.MODULE_NAMES` must be present and documented; extra names are
    listed in an "Other modules" block.
    """
    functions = dict(_default_functions() if functions is None else functions)
    missing = [name for name in MODULE_NAMES if name not in functions]
    if missing:
        raise ValueError(f"module_specification: no function for module(s) {missing}")
    lines = ["Vision Modules API Definitions"]
    for index, (title, subtitle, names) in enumerate(MODULE_BLOCKS, start=1):
        lines.append(f"{index}. {title} ({subtitle})")
        lines += [f"{signature_text(n, functions[n])}: {_summary_paragraph(n, functions[n])}" for n in names]
    extra = sorted(set(functions) - set(MODULE_NAMES))
    if extra:
        lines.append(f"{len(MODULE_BLOCKS) + 1}. Other modules")
        lines += [f"{signature_text(n, functions[n])}: {_summary_paragraph(n, functions[n])}" for n in extra]
    return "\n".join(lines)


# -- prompts ------------------------------------------------------------------------------------
def _code_block(code: str) -> str:
    return f"<code>\n{code.strip(chr(10))}\n</code>"


def _truncate_log(log: str, limit: int = MAX_ERROR_LOG_CHARS) -> str:
    log = log.strip()
    if len(log) <= limit:
        return log
    head = limit // 3
    tail = limit - head
    return f"{log[:head]}\n... [{len(log) - limit} characters omitted] ...\n{log[-tail:]}"


def _with_note(text: str, format_note: bool) -> str:
    return f"{text}\n{REFINE_FORMAT_NOTE}" if format_note else text


def render_adaptive_prompt(question: str, choices: Sequence[str], *, include_modules: bool = True,
                           include_example: bool = True,
                           functions: Mapping[str, Callable[..., Any]] | None = None) -> str:
    """Fig. 9 with the module specification (Fig. 7), the example (Fig. 8) and the question.

    Input of R1/R2 trajectories and of the runner's first round. ``functions`` overrides the
    modules the specification is generated from (see :func:`module_specification`).
    """
    parts = [ADAPTIVE_INSTRUCTIONS]
    if include_modules:
        parts.append(_GLOBALS_NOTE + "\n" + module_specification(functions))
    if include_example:
        parts.append(FEW_SHOT_EXAMPLE)
    parts.append(format_question_with_choices(question, list(choices)))
    return "\n\n".join(parts)


def render_program_only_prompt(question: str, choices: Sequence[str], *, reminder: bool = False,
                               functions: Mapping[str, Callable[..., Any]] | None = None) -> str:
    """The program-only prompt (Table 2's "Multi-step Visual Program" paradigm): Fig. 9 with
    :data:`PROGRAM_ONLY_INSTRUCTIONS` instead of the adaptive instructions, the same module
    specification and example; ``reminder`` appends :data:`PROGRAM_ONLY_REMINDER` (a re-ask)."""
    parts = [PROGRAM_ONLY_INSTRUCTIONS, _GLOBALS_NOTE + "\n" + module_specification(functions), FEW_SHOT_EXAMPLE,
             format_question_with_choices(question, list(choices))]
    if reminder:
        parts.append(PROGRAM_ONLY_REMINDER)
    return "\n\n".join(parts)


def render_bugfix_prompt(question: str, choices: Sequence[str], code: str, error_log: str, *,
                         format_note: bool = True) -> str:
    """Fig. 11: refine a program that failed at run time (R3). ``error_log`` is typically
    :meth:`ExecutionRecord.error_log`; logs over :data:`MAX_ERROR_LOG_CHARS` keep head and tail."""
    text = ("You will receive a multiple-choice question about a video and a Python visual program in the "
            "execute_command format, and a runtime error log from running this program.\n"
            f"{format_question_with_choices(question, list(choices))}\n"
            f"Buggy visual program:\n{_code_block(code)}\n"
            f"Runtime error log:\n{_truncate_log(error_log)}\n"
            "Refine this visual program by fixing the bugs.")
    return _with_note(text, format_note)


def render_native_refine_prompt(question: str, choices: Sequence[str], *, format_note: bool = True) -> str:
    """Fig. 12: refine a low-confidence native answer (R4)."""
    text = ("You will receive a multiple-choice question about a video and an existing visual program that "
            "only uses the native-mode helper API query_native.\n"
            f"{format_question_with_choices(question, list(choices))}\n"
            f"Current native visual program:\n{_code_block(NATIVE_PROGRAM)}\n"
            "Refine this visual program.")
    return _with_note(text, format_note)


def render_program_refine_prompt(question: str, choices: Sequence[str], code: str, *,
                                 format_note: bool = True) -> str:
    """Fig. 13: refine a low-confidence program answer (R4)."""
    text = ("You will receive a multiple-choice question about a video and an existing visual program.\n"
            f"{format_question_with_choices(question, list(choices))}\n"
            f"Current visual program:\n{_code_block(code)}\n"
            "Refine this visual program to improve its reasoning and correctness.")
    return _with_note(text, format_note)


def render_answer_prompt(question: str, choices: Sequence[str]) -> str:
    """Fig. 14: ask the VideoLLM for a single option letter."""
    return ANSWER_PROMPT.format(question_with_choices=format_question_with_choices(question, list(choices)))
