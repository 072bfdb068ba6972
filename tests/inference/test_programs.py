"""Parse / validate / classify model outputs (inference/programs.py) on a table of cases."""

from __future__ import annotations

import pytest

from inference.programs import (
    MODULE_BLOCKS,
    MODULE_NAMES,
    NATIVE_MODULE,
    analyse_output,
    classify_mode,
    parse_model_output,
    validate_program,
)

NATIVE = "def execute_command(video, question):\n    return query_native(video, question, choices)\n"
PROGRAM = ("def execute_command(video, question):\n"
           "    intervals, clips = get_informative_clips(video, question, top_k=2)\n"
           "    frames = [f for c in clips for f in extract_frames(c, 4)]\n"
           "    return query_mc(frames, question, choices)\n")


def strict(code: str, planning: str = "Use the program mode.") -> str:
    return f"<planning>\n{planning}\n</planning>\n<code>\n{code}</code>"


# (id, model output, expected code or None, format_ok, source, substring expected in problems)
PARSE_CASES = [
    ("strict-native", strict(NATIVE), NATIVE, True, "tags", None),
    ("strict-program", strict(PROGRAM), PROGRAM, True, "tags", None),
    ("strict-surrounding-whitespace", "\n  " + strict(NATIVE) + "\n\n", NATIVE, True, "tags", None),
    ("strict-indented-code", "<planning>p</planning><code>\n    " + NATIVE.replace("\n    ", "\n        "), None,
     False, "tags", "not closed"),
    ("fence-inside-code", strict("```python\n" + NATIVE + "```\n"), NATIVE, False, "tags", "fence"),
    ("empty-planning", strict(NATIVE, planning=""), NATIVE, False, "tags", "<planning> is empty"),
    ("empty-code", "<planning>p</planning><code>\n</code>", None, False, "tags", "<code> is empty"),
    ("two-code-blocks", strict(NATIVE) + "\n<code>\n" + PROGRAM + "</code>", None, False, "tags", "more than one"),
    ("no-planning", "<code>\n" + NATIVE + "</code>", NATIVE, False, "tags", "no <planning>"),
    ("prose-before", "Sure! Here it is.\n" + strict(NATIVE), NATIVE, False, "tags", "text before <planning>"),
    ("prose-after", strict(NATIVE) + "\nHope this helps.", NATIVE, False, "tags", "text after </code>"),
    ("truncated-code", "<planning>p</planning>\n<code>\n" + PROGRAM, PROGRAM, False, "tags", "not closed"),
    ("truncated-mid-line", "<planning>p</planning>\n<code>\n" + PROGRAM + "    x = query_mc(fra",
     PROGRAM, False, "tags", "not closed"),
    ("unclosed-planning", "<planning>p\n<code>\n" + NATIVE + "</code>", NATIVE, False, "tags", "not closed"),
    ("fenced-only", "Plan: native.\n```python\n" + NATIVE + "```\n", NATIVE, False, "fenced", "no <code>"),
    ("fenced-picks-def", "```\nprint(1)\n```\n```py\n" + NATIVE + "```", NATIVE, False, "fenced", "no <code>"),
    ("bare-def", "I will answer natively.\n" + NATIVE, NATIVE, False, "bare", "no <code>"),
    ("bare-def-trailing-prose", NATIVE + "\nThis calls the native model once.\n", NATIVE, False, "bare", None),
    ("fenced-without-def", "```python\nx = 1\n```", "x = 1\n", False, "fenced", "no fenced block defines"),
    ("nothing", "The answer is B.", None, False, "none", "no program found"),
    ("empty", "", None, False, "none", "no program found"),
]


@pytest.mark.parametrize("text,code,format_ok,source,problem",
                         [c[1:] for c in PARSE_CASES], ids=[c[0] for c in PARSE_CASES])
def test_parse_model_output(text, code, format_ok, source, problem):
    parsed = parse_model_output(text)
    assert parsed.format_ok is format_ok
    assert parsed.source == source
    if code is not None:
        assert parsed.code == code
    if problem is not None:
        assert any(problem in p for p in parsed.problems), parsed.problems
    assert format_ok == (not parsed.problems)


def test_parse_keeps_planning_text():
    parsed = parse_model_output(strict(NATIVE, planning="  Native mode: the question is simple.  "))
    assert parsed.planning == "Native mode: the question is simple."


def test_parse_rejects_non_string():
    with pytest.raises(TypeError, match="str"):
        parse_model_output(None)  # type: ignore[arg-type]


# (id, code, substring of the expected problem or None for valid, arity)
VALIDATE_CASES = [
    ("native", NATIVE, None, 2),
    ("program", PROGRAM, None, 2),
    ("four-args", "def execute_command(video, question, choices, duration):\n"
                  "    return query_native(video, question, choices)\n", None, 4),
    ("helpers-and-builtins",
     "def pick(frames):\n    return sorted(frames, key=lambda f: f.time)[:4]\n\n"
     "def execute_command(video, question):\n"
     "    try:\n        frames = pick(trim_frames(video, 0, duration or 60))\n"
     "    except ValueError:\n        frames = extract_frames(video)\n"
     "    texts = list(map(run_ocr, frames))\n"
     "    if any('exit' in t.lower() for t in texts):\n        return make_result('A', 0.9)\n"
     "    return query_mc(frames, question, choices)\n", None, 2),
    ("syntax-error", "def execute_command(video, question)\n    return 1\n", "SyntaxError", None),
    ("no-entry", "def main(video, question):\n    return query_native(video, question, choices)\n",
     "no function named execute_command", None),
    ("two-entries", NATIVE + "\n" + NATIVE, "defined 2 times", None),
    ("nested-entry", "def outer():\n    def execute_command(video, question):\n        return 1\n",
     "top level", None),
    ("three-args", "def execute_command(video, question, choices):\n    return 1\n", "takes 3 parameter", None),
    ("one-arg", "def execute_command(video):\n    return 1\n", "takes 1 parameter", None),
    ("varargs", "def execute_command(*args):\n    return 1\n", "no *args", None),
    ("kwonly", "def execute_command(video, question, *, k=1):\n    return 1\n", "keyword-only", None),
    ("unknown-module", "def execute_command(video, question):\n    return query_llm(video, question)\n",
     "unknown module 'query_llm'", 2),
    ("forbidden-builtin", "def execute_command(video, question):\n    return eval('1')\n",
     "dynamic code execution", 2),
    ("import", "import os\n" + NATIVE, "imports are not allowed", 2),
    ("dunder", "def execute_command(video, question):\n    return ().__class__\n", "private", 2),
    ("redefines-module", "def query_mc(*a):\n    return 'A'\n" + PROGRAM, "redefines the module 'query_mc'", 2),
    ("decorated", "@staticmethod\n" + NATIVE, "decorated", 2),
    ("class", "class A:\n    pass\n" + NATIVE, "class definitions", 2),
    ("too-long", NATIVE + "#" * 70_000, "characters long", None),
]


@pytest.mark.parametrize("code,problem,arity", [c[1:] for c in VALIDATE_CASES], ids=[c[0] for c in VALIDATE_CASES])
def test_validate_program(code, problem, arity):
    result = validate_program(code)
    if problem is None:
        assert result.ok and bool(result), result.problems
    else:
        assert not result.ok and not bool(result)
        assert any(problem in p for p in result.problems), result.problems
    assert result.arity == arity


def test_validate_reports_line_numbers_and_module_list():
    result = validate_program("def execute_command(video, question):\n    x = 1\n    return foo(x)\n")
    assert result.problems == [f"line 3: unknown module 'foo'; available modules: {', '.join(MODULE_NAMES)}"]
    assert validate_program(PROGRAM).modules == ["extract_frames", "get_informative_clips", "query_mc"]


def test_validate_with_custom_module_list():
    assert validate_program(PROGRAM, known_modules=("get_informative_clips", "extract_frames", "query_mc")).ok
    assert not validate_program(PROGRAM, known_modules=("query_mc",)).ok


# (id, code, mode)
MODE_CASES = [
    ("native", NATIVE, "native"),
    ("native-4-args", "def execute_command(video, question, choices, duration):\n"
                      "    r = query_native(video, question, choices)\n    return r\n", "native"),
    ("native-twice", "def execute_command(video, question):\n"
                     "    a = query_native(video, question, choices)\n"
                     "    return a if a['confidence'] > 0.5 else query_native(video, question, choices)\n", "native"),
    ("program", PROGRAM, "program"),
    ("native-plus-make-result", "def execute_command(video, question):\n"
                                "    r = query_native(video, question, choices)\n"
                                "    return make_result(r['answer'], 1.0)\n", "program"),
    ("module-passed-to-map", "def execute_command(video, question):\n"
                             "    texts = list(map(run_ocr, extract_frames(video)))\n"
                             "    return query_native(video, question, choices)\n", "program"),
    ("no-module", "def execute_command(video, question):\n    return 'A'\n", "program"),
    ("syntax-error", "def execute_command(video, question)\n    return query_native(video, question, choices)",
     "program"),
    ("native-in-comment-only", "def execute_command(video, question):\n    # query_native(video)\n    return 'A'\n",
     "program"),
    ("shadowed-module", "def execute_command(video, question):\n    query_mc = query_native\n"
                        "    return query_mc(video, question, choices)\n", "native"),
]


@pytest.mark.parametrize("code,mode", [c[1:] for c in MODE_CASES], ids=[c[0] for c in MODE_CASES])
def test_classify_mode(code, mode):
    assert classify_mode(code) == mode


def test_module_names_are_the_five_blocks():
    assert len(MODULE_BLOCKS) == 5
    assert len(MODULE_NAMES) == len(set(MODULE_NAMES)) == 20
    assert NATIVE_MODULE in MODULE_NAMES


def test_analyse_output_combines_the_three():
    analysis = analyse_output(strict(NATIVE))
    assert analysis.parsed.format_ok and analysis.runnable and analysis.mode == "native"
    broken = analyse_output("no program here")
    assert not broken.runnable and broken.mode == "program"
    assert broken.validation.problems == ["no program in the output"]


def test_format_problems_flag_runnable_deviations_from_the_prompt_format():
    ok = validate_program("LETTER = 'B'\n\ndef execute_command(video, question):\n"
                          "    return make_result(LETTER, 0.9)\n")
    assert ok.ok and ok.format_problems == []
    renamed = validate_program("def execute_command(video, question, duration, choices):\n    return 'B'\n")
    assert renamed.ok and renamed.arity == 4     # the sandbox still runs it ...
    # ... but it is not the prompt's format
    assert "the executor passes (video, question, choices, duration)" in renamed.format_problems[0]
    top = validate_program("hints = get_subtitle_hints('v', 'q', ['a'])\n"
                           "def execute_command(video, question):\n    return 'B'\n")
    assert top.ok and top.format_problems[0].startswith("line 1: top-level assign statement runs when")


def test_two_code_blocks_use_the_first_block():
    first = "def execute_command(video, question):\n    return query_native(video, question, choices)\n"
    text = (f"<planning>p</planning>\n<code>\n{first}</code>\n"
            "<code>\ndef execute_command(video, question):\n    return 'B'\n</code>")
    parsed = parse_model_output(text)
    assert not parsed.format_ok and "more than one <planning> or <code> block" in parsed.problems
    assert parsed.code == first                   # not both blocks glued into one unparseable program
    assert classify_mode(parsed.code) == "native"
