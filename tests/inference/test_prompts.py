"""Prompts of the paper's appendix (inference/prompts.py): exact, deterministic, consistent with
the module library and with the program parser."""

from __future__ import annotations

import inspect

import pytest

from inference import prompts
from inference.programs import MODULE_NAMES, classify_mode, parse_model_output, validate_program
from inference.prompts import (
    FEW_SHOT_EXAMPLE,
    NATIVE_OUTPUT,
    NATIVE_PROGRAM,
    REFINE_FORMAT_NOTE,
    module_specification,
    render_adaptive_prompt,
    render_answer_prompt,
    render_bugfix_prompt,
    render_native_refine_prompt,
    render_program_refine_prompt,
)

QUESTION = "What colour is the car that parks last?"
CHOICES = ["red", "blue", "green", "black"]
CODE = "def execute_command(video, question):\n    return query_mc(extract_frames(video), question, choices)\n"


def fake_functions():
    def make(name):
        def fn(video, query, top_k=3):
            return None

        fn.__doc__ = f"Does {name}. Returns something.\n\n    Details the model never sees."
        return fn

    return {name: make(name) for name in MODULE_NAMES}


def test_answer_prompt_is_exactly_fig_14():
    assert render_answer_prompt("Q?", ["x", "y"]) == (
        "Select the best answer to the following multiple-choice question based on the video. Respond with "
        "only the letter (A, B, C, or D or other letter) of the correct option.\n"
        "Question: Q?\nChoices:\nA. x\nB. y\nOutput a single letter. The best answer is:")


def test_bugfix_prompt_is_fig_11():
    text = render_bugfix_prompt("Q?", ["x", "y"], CODE, "NameError: name 'foo' is not defined\n")
    assert text == (
        "You will receive a multiple-choice question about a video and a Python visual program in the "
        "execute_command format, and a runtime error log from running this program.\n"
        "Question: Q?\nChoices:\nA. x\nB. y\n"
        f"Buggy visual program:\n<code>\n{CODE}</code>\n"
        "Runtime error log:\nNameError: name 'foo' is not defined\n"
        "Refine this visual program by fixing the bugs.\n" + REFINE_FORMAT_NOTE)
    assert render_bugfix_prompt("Q?", ["x", "y"], CODE, "E", format_note=False).endswith("fixing the bugs.")


def test_bugfix_prompt_truncates_long_logs_keeping_head_and_tail():
    log = "ValueError: first line\n" + "x" * 10_000 + "\nlast line"
    text = render_bugfix_prompt(QUESTION, CHOICES, CODE, log)
    assert "ValueError: first line" in text and "last line" in text and "characters omitted" in text
    assert len(text) < 4_500


def test_refinement_prompts_are_figs_12_and_13():
    native = render_native_refine_prompt(QUESTION, CHOICES, format_note=False)
    assert native.startswith("You will receive a multiple-choice question about a video and an existing visual "
                             "program that only uses the native-mode helper API query_native.\nQuestion: ")
    assert f"Current native visual program:\n<code>\n{NATIVE_PROGRAM}</code>\nRefine this visual program." in native
    program = render_program_refine_prompt(QUESTION, CHOICES, CODE)
    assert f"Current visual program:\n<code>\n{CODE}</code>\n" in program
    assert program.endswith("Refine this visual program to improve its reasoning and correctness.\n"
                            + REFINE_FORMAT_NOTE)


def test_adaptive_prompt_layout_and_determinism():
    fns = fake_functions()
    text = render_adaptive_prompt(QUESTION, CHOICES, functions=fns)
    assert text == render_adaptive_prompt(QUESTION, CHOICES, functions=fns)
    assert text.startswith(prompts.ADAPTIVE_INSTRUCTIONS)
    assert text.index("Vision Modules API Definitions") < text.index(FEW_SHOT_EXAMPLE)
    assert text.endswith("Question: What colour is the car that parks last?\nChoices:\nA. red\nB. blue\n"
                         "C. green\nD. black")
    bare = render_adaptive_prompt(QUESTION, CHOICES, include_modules=False, include_example=False)
    assert bare == prompts.ADAPTIVE_INSTRUCTIONS + "\n\nQuestion: What colour is the car that parks last?\n" \
                   "Choices:\nA. red\nB. blue\nC. green\nD. black"


def test_module_specification_from_signatures_and_docstrings():
    fns = fake_functions()
    spec = module_specification(fns)
    lines = spec.splitlines()
    assert lines[0] == "Vision Modules API Definitions"
    assert lines[1] == "1. Multimodal Retrieval (Offline semantic search)"
    assert lines[2] == "get_informative_clips(video, query, top_k=3): Does get_informative_clips. Returns something."
    assert "Details the model never sees" not in spec
    assert [line for line in lines if line[0].isdigit()] == [
        "1. Multimodal Retrieval (Offline semantic search)", "2. Temporal Localization (Context filtering)",
        "3. Fine-grained Visual Extraction (Local detail analysis)",
        "4. Global Context Summarization (Narrative aggregation)",
        "5. Reasoning and Answer Generation (VideoLLM inference)"]
    # Methods taking self are shown as programs call them; extra modules get their own block;
    # keyword-only parameters are accepted spellings (Fig. 7's k for top_k), not shown.
    class Lib:
        def extra(self, frame, size: int = 2, *, k: int = 2) -> str:
            """An extra module."""
    spec = module_specification({**fns, "extra": Lib.extra})
    assert spec.endswith("6. Other modules\nextra(frame, size=2): An extra module.")


def test_module_specification_refuses_missing_or_undocumented_modules():
    fns = fake_functions()
    del fns["crop"]
    with pytest.raises(ValueError, match="crop"):
        module_specification(fns)
    fns = fake_functions()
    fns["crop"] = lambda frame, box: None
    with pytest.raises(ValueError, match="no docstring"):
        module_specification(fns)


def test_every_module_name_has_a_documented_library_function():
    from inference.modules import module_signatures

    library = module_signatures()
    assert set(MODULE_NAMES) <= set(library)
    spec = module_specification()
    for name in MODULE_NAMES:
        params = list(inspect.signature(library[name]).parameters)[1:]  # drop self
        line = next(line for line in spec.splitlines() if line.startswith(name + "("))
        assert all(p in line.split(":")[0] for p in params), (name, line)
        assert len(line.split("): ", 1)[1]) > 20, f"{name} is not described for the model"


def test_examples_parse_validate_and_classify():
    native = parse_model_output(NATIVE_OUTPUT)
    assert native.format_ok and native.code == NATIVE_PROGRAM
    assert classify_mode(native.code) == "native" and validate_program(native.code).ok
    example = parse_model_output(FEW_SHOT_EXAMPLE[FEW_SHOT_EXAMPLE.index("<planning>"):])
    assert example.format_ok
    assert validate_program(example.code).ok and classify_mode(example.code) == "program"
    assert validate_program(example.code).modules == ["detect_object", "extract_frames", "get_informative_clips",
                                                      "query_mc"]
