"""The AST policy every program must pass before it runs (docs/sandbox.md).

The policy removes the language-level routes out of a restricted namespace:

* no ``import`` / ``from ... import``;
* no identifier that starts with ``__`` (``__import__``, ``__builtins__``, ``__class__``, ...);
* no attribute that starts with ``_`` and none of the introspection attributes that reach
  frames, code objects or globals (``gi_frame``, ``tb_frame``, ``f_globals``, ``co_code``, ...);
* no ``exec``/``eval``/``compile``/``open``/``globals``/``locals``/``vars``/``type``/... names;
* no class definitions, no ``async`` code, no class patterns on private attributes.

What the AST cannot see (attribute names built at run time) is closed by the worker's runtime
guards: ``getattr``/``hasattr`` refuse the same names, and ``str.format``/``format_map`` (whose
``{0.attr}`` fields are attribute lookups) are rewritten here to a formatter that refuses them.

This module is stdlib-only and imported by the worker process before it drops privileges.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

__all__ = [
    "SAFE_BUILTIN_NAMES", "SAFE_EXCEPTION_NAMES", "FORBIDDEN_NAMES", "FORBIDDEN_ATTRIBUTES",
    "FORMAT_HOOK", "MAX_CODE_CHARS", "PolicyError", "Violation", "attribute_refusal",
    "check_tree", "parse_program", "prepare_program",
]

#: Longest program source accepted (characters); larger inputs are refused before parsing.
MAX_CODE_CHARS = 64_000
#: Most AST nodes accepted; a program this large is generated garbage, not a visual program.
MAX_AST_NODES = 30_000

#: Exception classes a program may raise and catch. ``BaseException`` and its direct
#: non-``Exception`` subclasses (SystemExit, KeyboardInterrupt, GeneratorExit) are left out so
#: that ``except Exception`` in a program cannot be made to hide the sandbox's own signals.
SAFE_EXCEPTION_NAMES: tuple[str, ...] = (
    "Exception", "ArithmeticError", "AssertionError", "AttributeError", "IndexError", "KeyError",
    "LookupError", "NameError", "NotImplementedError", "OverflowError", "RecursionError",
    "RuntimeError", "StopIteration", "TimeoutError", "TypeError", "UnboundLocalError",
    "ValueError", "ZeroDivisionError",
)

#: Builtins available to programs: enough for ordinary program logic. ``getattr``/``hasattr``
#: and ``print`` are replaced by guarded versions in the worker.
SAFE_BUILTIN_NAMES: tuple[str, ...] = (
    "abs", "all", "any", "ascii", "bin", "bool", "callable", "chr", "dict", "divmod",
    "enumerate", "filter", "float", "format", "frozenset", "getattr", "hasattr", "hash", "hex",
    "int", "isinstance", "issubclass", "iter", "len", "list", "map", "max", "min", "next",
    "oct", "ord", "pow", "print", "range", "repr", "reversed", "round", "set", "slice",
    "sorted", "str", "sum", "tuple", "zip", "True", "False", "None", "Ellipsis",
    "NotImplemented",
) + SAFE_EXCEPTION_NAMES

#: Names refused outright, with the reason shown to the model in the error record.
FORBIDDEN_NAMES: dict[str, str] = {
    **{name: "dynamic code execution is not allowed" for name in ("exec", "eval", "compile")},
    **{name: "file and console access is not allowed" for name in ("open", "input", "breakpoint", "help")},
    **{name: "namespace and type introspection is not allowed"
       for name in ("globals", "locals", "vars", "dir", "type", "object", "super", "memoryview", "id")},
    **{name: "class machinery and attribute assignment are not available"
       for name in ("classmethod", "staticmethod", "property", "setattr", "delattr")},
    **{name: "the program may not stop the interpreter" for name in ("exit", "quit", "SystemExit",
                                                                       "KeyboardInterrupt",
                                                                       "BaseException",
                                                                       "GeneratorExit")},
}

#: Public attributes that reach frames, code objects, globals or the class hierarchy.
FORBIDDEN_ATTRIBUTES: frozenset[str] = frozenset({
    "mro", "cell_contents", "func_globals", "func_code", "im_func", "im_self",
    "format_field", "vformat", "get_field",
})
_FORBIDDEN_ATTRIBUTE_PREFIXES = ("_", "gi_", "cr_", "ag_", "f_", "tb_", "co_")

#: Name of the worker-side hook that ``x.format``/``x.format_map`` are rewritten to call.
#: It starts with ``__`` so no program can refer to it directly.
FORMAT_HOOK = "__vp_format_attr__"
_FORMAT_ATTRIBUTES = ("format", "format_map")


def attribute_refusal(name: str) -> str | None:
    """Why attribute ``name`` may not be accessed, or ``None`` if it may."""
    if not isinstance(name, str):
        return "attribute names must be strings"
    if name.startswith("_"):
        return f"attribute {name!r} is private (names starting with '_' are not accessible)"
    if name in FORBIDDEN_ATTRIBUTES or name.startswith(_FORBIDDEN_ATTRIBUTE_PREFIXES):
        return f"attribute {name!r} reaches interpreter internals and is not accessible"
    return None


@dataclass(frozen=True)
class Violation:
    """One policy violation at a source position."""

    line: int
    message: str

    def describe(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


class PolicyError(ValueError):
    """A program violates the AST policy; ``violations`` lists every violation found."""

    def __init__(self, violations: list[Violation]):
        self.violations = violations
        super().__init__("; ".join(v.describe() for v in violations))


def parse_program(code: str, *, max_chars: int = MAX_CODE_CHARS) -> ast.Module:
    """Parse untrusted source with size guards.

    Raises ``SyntaxError`` for invalid Python and ``ValueError`` for inputs refused before or
    during parsing (too long, NUL bytes, nesting deep enough to exhaust the parser).
    """
    if not isinstance(code, str):
        raise ValueError(f"program source must be str, got {type(code).__name__}")
    if len(code) > max_chars:
        raise ValueError(f"program is {len(code)} characters long; the limit is {max_chars}")
    if "\x00" in code:
        raise ValueError("program source contains a NUL byte")
    try:
        return ast.parse(code, filename="<program>", mode="exec")
    except (RecursionError, MemoryError) as exc:
        raise ValueError(f"program nests too deeply to parse ({type(exc).__name__})") from None


def _name_refusal(name: str) -> str | None:
    if name.startswith("__"):
        return f"name {name!r} is reserved (names starting with '__' are not accessible)"
    if name in FORBIDDEN_NAMES:
        return f"{name!r}: {FORBIDDEN_NAMES[name]}"
    return None


def check_tree(tree: ast.AST) -> list[Violation]:
    """All policy violations in a parsed program (empty when it may run).

    Walks the tree iteratively (``ast.walk``), so deeply nested programs cannot exhaust the
    checker's own stack.
    """
    found: list[Violation] = []
    count = 0

    def add(node: ast.AST, message: str) -> None:
        found.append(Violation(getattr(node, "lineno", 0), message))

    for node in ast.walk(tree):
        count += 1
        if count > MAX_AST_NODES:
            add(tree, f"program has more than {MAX_AST_NODES} syntax nodes")
            break
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            add(node, "imports are not allowed; the modules and safe builtins are already available")
        elif isinstance(node, ast.Name):
            reason = _name_refusal(node.id)
            if reason:
                add(node, reason)
        elif isinstance(node, ast.Attribute):
            reason = attribute_refusal(node.attr)
            if reason:
                add(node, reason)
        elif isinstance(node, ast.ClassDef):
            add(node, "class definitions are not allowed; use functions, dicts and lists")
        elif isinstance(node, (ast.AsyncFunctionDef, ast.AsyncFor, ast.AsyncWith, ast.Await)):
            add(node, "async code is not allowed")
        elif isinstance(node, (ast.FunctionDef, ast.Lambda)):
            if isinstance(node, ast.FunctionDef):
                reason = _name_refusal(node.name)
                if reason:
                    add(node, reason)
            all_args = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
            all_args += [a for a in (node.args.vararg, node.args.kwarg) if a is not None]
            for arg in all_args:
                reason = _name_refusal(arg.arg)
                if reason:
                    add(node, reason)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            for name in node.names:
                reason = _name_refusal(name)
                if reason:
                    add(node, reason)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            reason = _name_refusal(node.name)
            if reason:
                add(node, reason)
        elif isinstance(node, ast.MatchClass):
            # ``case str(__class__=c)`` looks attributes up by name.
            for attr in node.kwd_attrs:
                reason = attribute_refusal(attr)
                if reason:
                    add(node, reason)
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
            reason = _name_refusal(node.name)
            if reason:
                add(node, reason)
        elif isinstance(node, ast.keyword) and node.arg is not None and node.arg.startswith("__"):
            add(node, f"keyword argument {node.arg!r} is reserved")
    return found


class _FormatRewriter(ast.NodeTransformer):
    """``x.format`` -> ``__vp_format_attr__(x, "format")`` (same for ``format_map``).

    The hook returns a formatter that refuses ``{0.__class__}``-style fields when ``x`` is a
    string (or the ``str`` type) and plain ``getattr(x, name)`` otherwise.
    """

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        self.generic_visit(node)
        if node.attr in _FORMAT_ATTRIBUTES and isinstance(node.ctx, ast.Load):
            call = ast.Call(func=ast.Name(id=FORMAT_HOOK, ctx=ast.Load()),
                            args=[node.value, ast.Constant(node.attr)], keywords=[])
            return ast.copy_location(call, node)
        return node


def prepare_program(code: str, *, max_chars: int = MAX_CODE_CHARS) -> ast.Module:
    """Parse, check and rewrite a program; the result is ready for ``compile``.

    Raises ``SyntaxError`` for invalid Python and :class:`PolicyError` (a ``ValueError``) for
    policy violations or refused inputs.
    """
    try:
        tree = parse_program(code, max_chars=max_chars)
    except ValueError as exc:
        raise PolicyError([Violation(0, str(exc))]) from None
    violations = check_tree(tree)
    if violations:
        raise PolicyError(violations)
    try:
        tree = _FormatRewriter().visit(tree)
    except RecursionError:
        raise PolicyError([Violation(0, "program nests too deeply")]) from None
    return ast.fix_missing_locations(tree)
