"""Model outputs -> programs: parse, validate and classify (DESIGN.md §2).

A model (the policy or the teacher) answers the adaptive reasoning prompt (paper Fig. 9) with

    <planning> ... </planning>
    <code>
    def execute_command(video, question):
        ...
    </code>

This module is the single implementation that the runner, data synthesis and the GRPO
format/mode rewards call:

* :func:`parse_model_output` splits a reply into planning and code. ``format_ok`` is true only
  for the strict format above; fallbacks (fenced code, a bare ``def execute_command``, a
  truncated ``<code>`` block) still recover the code so it can be run, but the format reward
  sees that the format was not followed.
* :func:`validate_program` checks that the code compiles, defines exactly one
  ``execute_command`` with the 2- or 4-argument signature, calls only known modules, and obeys
  the sandbox's AST policy (so "valid" here means "the sandbox will try to run it").
* :func:`classify_mode` says whether a program is in native mode (its only module call is
  ``query_native``) or program mode, from the AST.

The canonical list of module names (:data:`MODULE_NAMES`) and their grouping into the paper's
five functional blocks (:data:`MODULE_BLOCKS`, Fig. 7) live here, so the prompt, the executor
and the validator cannot disagree about which modules exist.
"""

from __future__ import annotations

import ast
import builtins
import re
import textwrap
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Literal

from inference.sandbox.policy import FORBIDDEN_NAMES, SAFE_BUILTIN_NAMES, check_tree, parse_program

__all__ = [
    "MODULE_BLOCKS", "MODULE_NAMES", "NATIVE_MODULE", "ENTRY_POINT", "ParsedOutput",
    "ValidationResult", "parse_model_output", "validate_program", "classify_mode", "classify_tree",
    "module_calls", "ProgramAnalysis", "analyse_output",
]

ENTRY_POINT = "execute_command"
NATIVE_MODULE = "query_native"

#: The paper's five functional blocks (Fig. 7) in prompt order: (title, subtitle, modules).
MODULE_BLOCKS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("Multimodal Retrieval", "Offline semantic search",
     ("get_informative_clips", "get_informative_subtitles")),
    ("Temporal Localization", "Context filtering",
     ("extract_frames", "trim_frames", "trim_around", "trim_before", "trim_after")),
    ("Fine-grained Visual Extraction", "Local detail analysis",
     ("detect_object", "run_ocr", "crop", "crop_left", "crop_right", "crop_top", "crop_bottom")),
    ("Global Context Summarization", "Narrative aggregation",
     ("get_subtitle_hints",)),
    ("Reasoning and Answer Generation", "VideoLLM inference",
     ("query_native", "query_mc", "query_frames", "query_yn", "make_result")),
)

#: Every module a program may call, in prompt order.
MODULE_NAMES: tuple[str, ...] = tuple(name for _, _, names in MODULE_BLOCKS for name in names)

# The two signatures the executor accepts: the prompt's form and the original release's older one.
_SIGNATURE_ARITIES = (2, 4)
_SIGNATURE_NAMES = {2: ("video", "question"), 4: ("video", "question", "choices", "duration")}

ParseSource = Literal["tags", "fenced", "bare", "none"]


@dataclass
class ParsedOutput:
    """A model reply split into its parts.

    Attributes:
        planning: text inside ``<planning>`` (stripped), or ``None`` if absent.
        code: the program source, or ``None`` if no program could be found.
        format_ok: the reply is exactly ``<planning>…</planning><code>…</code>`` (surrounding
            whitespace allowed), both parts non-empty, no markdown fence inside ``<code>``.
        source: where the code came from: ``tags`` (a ``<code>`` block), ``fenced`` (a
            markdown code fence), ``bare`` (a ``def execute_command`` in plain text) or ``none``.
        problems: human-readable notes on every deviation from the strict format.
    """

    planning: str | None
    code: str | None
    format_ok: bool
    source: ParseSource
    problems: list[str] = field(default_factory=list)


_STRICT = re.compile(r"\A\s*<planning>(?P<planning>.*?)</planning>\s*<code>(?P<code>.*?)</code>\s*\Z",
                     re.DOTALL)
_PLANNING = re.compile(r"<planning>(?P<planning>.*?)(?:</planning>|\Z)", re.DOTALL)
_CODE_TAG = re.compile(r"<code>(?P<code>.*?)(?P<close></code>|\Z)", re.DOTALL)
_FENCE = re.compile(r"```[ \t]*(?:python|py|Python)?[ \t]*\n(?P<code>.*?)(?:```|\Z)", re.DOTALL)
_DEF = re.compile(rf"^[ \t]*def[ \t]+{ENTRY_POINT}[ \t]*\(", re.MULTILINE)


def _dedent_block(code: str) -> str:
    """Strip blank edge lines and a common indentation the model may have added."""
    return textwrap.dedent(code.strip("\n")).strip() + "\n"


def _trim_to_parseable(code: str) -> str:
    """Drop trailing lines (prose after a bare program) until the rest parses.

    A bare ``def execute_command`` is often followed by an explanation; the longest prefix that
    parses is the program. If no prefix parses, the whole text is returned so that validation
    reports the real syntax error.
    """
    lines = code.rstrip().split("\n")
    for end in range(len(lines), 0, -1):
        candidate = "\n".join(lines[:end]).rstrip() + "\n"
        try:
            ast.parse(candidate)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        if ENTRY_POINT in candidate:
            return candidate
    return code.rstrip() + "\n"


def parse_model_output(text: str) -> ParsedOutput:
    """Split a model reply into planning and code (see module docstring for the fallbacks).

    Never raises on malformed input: a reply with no recoverable program gives ``code=None``
    and a problem saying why.
    """
    if not isinstance(text, str):
        raise TypeError(f"parse_model_output expects the model's reply as str, got {type(text).__name__}")
    problems: list[str] = []
    strict = _STRICT.match(text)
    if strict:
        planning = strict.group("planning").strip()
        raw_code = strict.group("code")
        if "</code>" in raw_code:  # "<code>A</code> ... <code>B</code>": the first block, as below
            raw_code = raw_code[: raw_code.index("</code>")]
        fenced = _FENCE.search(raw_code)
        code = _dedent_block(fenced.group("code") if fenced else raw_code)
        if not planning:
            problems.append("<planning> is empty")
        if fenced:
            problems.append("the code inside <code> is wrapped in a markdown fence")
        if not code.strip():
            problems.append("<code> is empty")
        if text.count("<code>") > 1 or text.count("<planning>") > 1:
            problems.append("more than one <planning> or <code> block")
        ok = not problems
        return ParsedOutput(planning or None, code if code.strip() else None, ok, "tags", problems)

    planning_match = _PLANNING.search(text)
    planning = planning_match.group("planning").strip() if planning_match else None
    if planning_match is None:
        problems.append("no <planning> block")
    else:
        if "</planning>" not in text:
            problems.append("<planning> is not closed")
        if text[: planning_match.start()].strip():
            problems.append("text before <planning>")

    code_match = _CODE_TAG.search(text)
    if code_match is not None:
        body = code_match.group("code")
        fenced = _FENCE.search(body)
        code = _dedent_block(fenced.group("code") if fenced else body)
        if not code_match.group("close"):
            problems.append("<code> is not closed (truncated output?)")
            code = _trim_to_parseable(code)
        if text.count("<code>") > 1:
            problems.append("more than one <code> block; using the first")
        if fenced:
            problems.append("the code inside <code> is wrapped in a markdown fence")
        if text[code_match.end():].strip():
            problems.append("text after </code>")
        if planning_match is not None and planning_match.start() > code_match.start():
            problems.append("<planning> comes after <code>")
        return ParsedOutput(planning or None, code if code.strip() else None, False, "tags", problems)

    problems.append("no <code> block")
    # Prefer a fence that contains the entry point; fall back to the first fence.
    fences = [m.group("code") for m in _FENCE.finditer(text)]
    for body in fences:
        if _DEF.search(body):
            return ParsedOutput(planning or None, _dedent_block(body), False, "fenced", problems)
    bare = _DEF.search(text)
    if bare is not None:
        code = _trim_to_parseable(_dedent_block(text[bare.start():]))
        return ParsedOutput(planning or None, code, False, "bare", problems)
    if fences:
        problems.append(f"no fenced block defines {ENTRY_POINT}; using the first fence")
        return ParsedOutput(planning or None, _dedent_block(fences[0]), False, "fenced", problems)
    problems.append(f"no program found (no <code>, fenced code or def {ENTRY_POINT})")
    return ParsedOutput(planning or None, None, False, "none", problems)


@dataclass
class ValidationResult:
    """Outcome of :func:`validate_program`; truthy when the program is valid.

    Attributes:
        problems: one line per problem, each naming the line number when there is one.
        arity: the number of parameters of ``execute_command`` (2 or 4) if it was found.
        modules: the module names the program references, sorted.
        format_problems: deviations from the prompt's program format that do not stop the
            sandbox from running it (``problems`` stays empty for them), so they fail the GRPO
            format reward but not execution: parameters named other than ``(video, question)``
            or ``(video, question, choices, duration)`` (the executor passes them by position),
            and top-level code that runs when the program is loaded (anything but function
            definitions, docstrings and assignments of plain values).
    """

    problems: list[str] = field(default_factory=list)
    arity: int | None = None
    modules: list[str] = field(default_factory=list)
    format_problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def __bool__(self) -> bool:
        return self.ok


def _defined_names(tree: ast.AST) -> set[str]:
    """Every name the program binds anywhere (functions, parameters, assignments, loop and
    comprehension targets, ``except ... as``, match captures, globals)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
            names.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            names.add(node.rest)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            names.update(node.names)
    return names


def module_calls(tree: ast.AST, known_modules: Collection[str] = MODULE_NAMES) -> set[str]:
    """Known module names the program refers to (called or passed as values, e.g. to ``map``),
    excluding names the program itself rebinds."""
    defined = _defined_names(tree)
    return {node.id for node in ast.walk(tree)
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)
            and node.id in known_modules and node.id not in defined}


# Names that are always available inside a program besides the modules: the sandbox's
# restricted builtins and the program globals the executor provides.
_PROGRAM_GLOBALS = frozenset({"choices", "duration", "ModuleError"})


def validate_program(code: str, known_modules: Collection[str] = MODULE_NAMES) -> ValidationResult:
    """Check a program before running it; an empty ``problems`` list means valid.

    Checks, in order: syntax; the sandbox AST policy (imports, dunder and frame attributes,
    exec/eval/open, ...); exactly one ``execute_command`` at top level with 2 positional
    parameters ``(video, question)`` or 4 ``(video, question, choices, duration)`` and no
    ``*args``/``**kwargs``/keyword-only parameters; every called name that the program does
    not define is a known module, a safe builtin or a program global; no module is redefined.
    """
    result = ValidationResult()
    try:
        tree = parse_program(code)
    except SyntaxError as exc:
        result.problems.append(f"SyntaxError: {exc.msg} (line {exc.lineno})")
        return result
    except ValueError as exc:  # too large, NUL bytes, nesting too deep
        result.problems.append(str(exc))
        return result
    result.problems.extend(v.describe() for v in check_tree(tree))

    entries = [n for n in ast.walk(tree)
               if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == ENTRY_POINT]
    top_level = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == ENTRY_POINT]
    if not entries:
        result.problems.append(f"no function named {ENTRY_POINT} is defined")
    elif len(entries) > 1:
        lines = ", ".join(str(n.lineno) for n in entries)
        result.problems.append(f"{ENTRY_POINT} is defined {len(entries)} times (lines {lines}); define it once")
    elif not top_level:
        result.problems.append(f"{ENTRY_POINT} (line {entries[0].lineno}) must be defined at the top level")
    else:
        fn = top_level[0]
        args = fn.args
        arity = len(args.posonlyargs) + len(args.args)
        if args.vararg or args.kwarg or args.kwonlyargs:
            result.problems.append(
                f"{ENTRY_POINT} (line {fn.lineno}) must take plain positional parameters "
                "(video, question) or (video, question, choices, duration); no *args, **kwargs "
                "or keyword-only parameters")
        elif arity not in _SIGNATURE_ARITIES:
            result.problems.append(
                f"{ENTRY_POINT} (line {fn.lineno}) takes {arity} parameter(s); expected 2 "
                "(video, question) or 4 (video, question, choices, duration)")
        else:
            result.arity = arity
            names = tuple(a.arg for a in (*args.posonlyargs, *args.args))
            expected = _SIGNATURE_NAMES[arity]
            if names != expected:
                result.format_problems.append(
                    f"{ENTRY_POINT} (line {fn.lineno}) takes ({', '.join(names)}); the executor passes "
                    f"({', '.join(expected)}) in this order")
        if fn.decorator_list:
            result.problems.append(f"{ENTRY_POINT} (line {fn.lineno}) must not be decorated")

    known = set(known_modules)
    defined = _defined_names(tree)
    for name in sorted(defined & known):
        result.problems.append(f"the program redefines the module {name!r}; use another name")
    available = known | set(SAFE_BUILTIN_NAMES) | _PROGRAM_GLOBALS | defined
    unknown: dict[str, int] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            name = node.func.id
            if name not in available and name not in unknown and name not in FORBIDDEN_NAMES:
                unknown[name] = node.lineno
    for name, line in sorted(unknown.items(), key=lambda kv: kv[1]):
        kind = "builtin that programs may not use" if hasattr(builtins, name) else "module"
        result.problems.append(f"line {line}: unknown {kind} {name!r}; available modules: "
                               + ", ".join(known_modules))
    result.modules = sorted(module_calls(tree, known))
    for node in tree.body:
        if not _is_definition(node):
            result.format_problems.append(
                f"line {node.lineno}: top-level {type(node).__name__.lower()} statement runs when the program is "
                f"loaded, outside {ENTRY_POINT}; put it inside the function")
    return result


def _is_definition(node: ast.stmt) -> bool:
    """A top-level statement that only defines something: a function, a docstring, ``pass``, or
    an assignment of a value computed without calls."""
    if isinstance(node, (ast.FunctionDef, ast.Pass)):
        return True
    if isinstance(node, ast.Expr):
        return isinstance(node.value, ast.Constant)
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        return node.value is not None and not any(isinstance(n, (ast.Call, ast.Await, ast.Yield, ast.YieldFrom,
                                                                  ast.NamedExpr))
                                                  for n in ast.walk(node.value))
    return False


def classify_mode(code: str, known_modules: Collection[str] = MODULE_NAMES) -> Literal["native", "program"]:
    """``native`` iff the program parses and the only module it refers to is ``query_native``;
    otherwise ``program`` (DESIGN.md §2). Unparseable code and programs that call no module at
    all are ``program``: neither used the native VideoLLM path."""
    try:
        tree = parse_program(code)
    except (SyntaxError, ValueError):
        return "program"
    return classify_tree(tree, known_modules)


def classify_tree(tree: ast.AST, known_modules: Collection[str] = MODULE_NAMES) -> Literal["native", "program"]:
    """:func:`classify_mode` for an already parsed program."""
    return "native" if module_calls(tree, known_modules) == {NATIVE_MODULE} else "program"


@dataclass
class ProgramAnalysis:
    """Everything the runner, synthesis and rewards want to know about one model reply."""

    parsed: ParsedOutput
    validation: ValidationResult
    mode: Literal["native", "program"]

    @property
    def runnable(self) -> bool:
        """The reply contains a program that passes validation."""
        return self.parsed.code is not None and self.validation.ok


def analyse_output(text: str, known_modules: Collection[str] = MODULE_NAMES) -> ProgramAnalysis:
    """Parse, validate and classify one reply in one call."""
    parsed = parse_model_output(text)
    if parsed.code is None:
        return ProgramAnalysis(parsed, ValidationResult(problems=["no program in the output"]), "program")
    return ProgramAnalysis(parsed, validate_program(parsed.code, known_modules),
                           classify_mode(parsed.code, known_modules))
