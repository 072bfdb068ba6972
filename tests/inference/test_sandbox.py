"""The program sandbox (inference/sandbox): ordinary programs run, hostile ones end in clear
error records while the host process, its modules and its files stay untouched."""

from __future__ import annotations

import hashlib
import os
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from inference.call_cache import CallCache
from inference.errors import ModuleArgumentError
from inference.sandbox import InvalidResult, ProgramExecutor, SandboxLimits, SandboxStartupError, coerce_answer
from inference.sandbox.host import _Execution
from inference.sandbox.protocol import Channel, ProtocolError
from inference.types import AnswerResult, Frame

CHOICES = ["pumpkins", "beans", "corn", "carrots"]
LIMITS = SandboxLimits(cpu_time_s=1, wall_time_s=4, memory_bytes=512 << 20, max_stdout_chars=2_000,
                       max_module_calls=50, max_error_chars=2_000)


class FakeModules:
    """Host-side module functions with the library's signatures; they record what they get."""

    def __init__(self, clip_dir: Path):
        self.clip_dir = clip_dir
        self.calls: Counter[str] = Counter()
        self.received: list[Any] = []

    def _frames(self, frames: Any) -> list[Frame]:
        if not isinstance(frames, list) or not frames or not all(isinstance(f, Frame) for f in frames):
            raise ModuleArgumentError("frames must be a list of frames from extract_frames or trim_*")
        return frames

    def get_informative_clips(self, video: str, query: str, top_k: int = 3, total_duration: float | None = None):
        """Retrieve clips."""
        self.calls["get_informative_clips"] += 1
        clips = [str(self.clip_dir / f"clip_{i:03d}.mp4") for i in range(top_k)]
        return [(10.0 * i, 10.0 * i + 10) for i in range(top_k)], clips

    def extract_frames(self, video: str, num_frames: int = 8) -> list[Frame]:
        """Sample frames."""
        self.calls["extract_frames"] += 1
        base = 10.0 * int(Path(video).stem.split("_")[-1]) if "clip_" in video else 0.0
        return [Frame(video, float(i), base + i) for i in range(num_frames)]

    def detect_object(self, frame: Frame, text: str, box_threshold: float = 0.5, text_threshold: float = 0.25):
        """Detect objects."""
        self.calls["detect_object"] += 1
        self.received.append(frame)
        return [[0, 0, 8, 8]] if int(frame.time) % 2 == 0 else []

    def run_ocr(self, frame: Frame) -> str:
        """OCR."""
        self.calls["run_ocr"] += 1
        return f"text at {frame.video_time:g}"

    def crop(self, frame: Frame, box: list[int]) -> Frame:
        """Crop."""
        self.calls["crop"] += 1
        return Frame(frame.source, frame.time, frame.video_time, tuple(box))

    def query_mc(self, frames: list[Frame], question: str, choices: list[str]):
        """Multiple choice over frames; returns an AnswerResult object (converted to a dict)."""
        self.calls["query_mc"] += 1
        frames = self._frames(frames)
        self.received.extend(frames)
        return AnswerResult("B", 0.8, "B", {"n_frames": len(frames), "boxes": [f.box for f in frames]})

    def query_native(self, video: str, question: str, choices: list[str]) -> dict[str, Any]:
        """Native answer."""
        self.calls["query_native"] += 1
        return {"answer": "A", "confidence": 0.9, "raw_output": "A", "metadata": {}}

    def make_result(self, answer: str, confidence: float = 1.0, raw_output: str = "", **metadata: Any):
        """Build a result."""
        self.calls["make_result"] += 1
        return {"answer": answer, "confidence": confidence, "raw_output": raw_output, "metadata": metadata}

    def broken(self, frames: Any = None) -> Any:
        """Always fails like a backend crash."""
        raise RuntimeError("CUDA out of memory (simulated)")

    def opaque(self) -> Any:
        """Returns something that is not plain data."""
        return object()

    def functions(self) -> dict[str, Any]:
        names = ["get_informative_clips", "extract_frames", "detect_object", "run_ocr", "crop", "query_mc",
                 "query_native", "make_result", "broken", "opaque"]
        return {name: getattr(self, name) for name in names}


def _snapshot(root: Path) -> dict[str, tuple[str, int]]:
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() and not p.is_symlink()
                                       else os.readlink(p) if p.is_symlink() else "dir", p.lstat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


def fake_world(root: Path) -> tuple[Path, Path]:
    """A video file and its folder of three clips under ``root`` (bytes only: the fake modules
    never decode them): ``(video, clip_dir)``."""
    video = root / "video.mp4"
    video.write_bytes(b"not really a video")
    clip_dir = root / "clips" / "video"
    clip_dir.mkdir(parents=True)
    for i in range(3):
        (clip_dir / f"clip_{i:03d}.mp4").write_bytes(b"clip")
    return video, clip_dir


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    root = tmp_path_factory.mktemp("host")
    video, clip_dir = fake_world(root)
    (root / "secret.mp4").write_text("host secret")
    (root / "canary.txt").write_text("untouched")
    os.symlink(root / "secret.mp4", clip_dir / "link.mp4")
    modules = FakeModules(clip_dir)
    functions = modules.functions()
    executor = ProgramExecutor(functions, limits=LIMITS, workers=1)
    snapshot = _snapshot(root)
    yield {"root": root, "video": str(video), "clip_dir": clip_dir, "modules": modules, "functions": functions,
           "executor": executor, "snapshot": snapshot}
    executor.close()


def run(host, code: str, **kwargs):
    kwargs = {"video": host["video"], "question": "What vegetables were on the book?", "choices": CHOICES,
              "duration": 120.0, "allowed_roots": [str(host["clip_dir"])], **kwargs}
    return host["executor"].execute(textwrap.dedent(code), **kwargs)


def program(body: str) -> str:
    return "def execute_command(video, question):\n" + textwrap.indent(textwrap.dedent(body), "    ")


# ---------------------------------------------------------------------------- ordinary programs
ORDINARY = program("""
    intervals, clips = get_informative_clips(video, "woman folding a book", top_k=2)
    frames = []
    for clip in clips:
        frames.extend(extract_frames(clip, 4))
    def has_book(frame):
        return bool(detect_object(frame, "book"))
    book_frames = [f for f in frames if has_book(f)] or frames
    texts = list(map(run_ocr, book_frames))
    try:
        query_mc([], question, choices)
    except ValueError as exc:
        print("empty frames refused:", "frames" in str(exc))
    crops = [crop(f, [1, 2, 3, 4]) for f in book_frames[:2]]
    times = sorted({getattr(f, "video_time") for f in book_frames}, reverse=True)
    print("{} frames, first text {!r}".format(len(book_frames), texts[0]), f"latest={times[0]:g}")
    result = query_mc(crops + book_frames, question, choices)
    result["metadata"]["intervals"] = intervals
    return result
""")


def test_ordinary_program_runs(host):
    modules = host["modules"]
    record = run(host, ORDINARY)
    assert record.success, record.error_log()
    assert record.result.answer == "B" and record.result.confidence == 0.8
    assert record.result.metadata["n_frames"] == 6
    assert record.result.metadata["boxes"][:2] == [[1, 2, 3, 4], [1, 2, 3, 4]]
    assert record.result.metadata["intervals"] == [[0.0, 10.0], [10.0, 20.0]]
    assert record.stdout == "empty frames refused: True\n4 frames, first text 'text at 0' latest=12\n"
    assert record.mode == "program" and record.error_type is None
    assert record.host_error is None  # the caught ModuleArgumentError is the program's own mistake
    names = [c.name for c in record.module_calls]
    assert names[:3] == ["get_informative_clips", "extract_frames", "extract_frames"]
    assert next(c for c in record.module_calls if c.error).name == "query_mc"
    assert record.module_calls[1].args_summary.endswith("clip_000.mp4', 4")
    # The module received the host's real Frame objects, resolved from handles.
    assert all(type(f) is Frame for f in modules.received)


def test_native_program_and_four_argument_form(host):
    record = run(host, "def execute_command(video, question):\n    return query_native(video, question, choices)\n")
    assert record.success and record.mode == "native" and record.result.answer == "A"
    record = run(host, program("return make_result('C', 0.5, 'x', dur=duration)").replace(
        "(video, question)", "(video, question, choices, duration)"), duration=42.0)
    assert record.success and record.result.answer == "C"
    assert record.result.metadata == {"dur": 42.0}


def test_module_errors_reach_the_program_as_catchable_exceptions(host):
    record = run(host, program("return query_mc([], question, choices)"))
    assert not record.success and record.error_type == "ValueError"
    assert "query_mc(): ModuleArgumentError: frames must be a list" in record.error_message
    assert 'File "<program>", line 2, in execute_command' in record.traceback
    assert "return query_mc([], question, choices)" in record.traceback
    record = run(host, program("""
        try:
            broken()
        except ModuleError as exc:
            print("caught:", exc)
            return make_result("D", 0.1, str(exc))
    """))
    assert "caught: broken(): RuntimeError: CUDA out of memory" in record.stdout  # the program could catch it
    # Caught or not, a backend's RuntimeError is the host's failure, not the program's, and the
    # answer computed around it does not stand as a success.
    assert record.host_error == "broken(): RuntimeError: CUDA out of memory (simulated)"
    assert not record.success and record.result is None and record.error_type == "HostError"


def test_nested_helper_traceback(host):
    record = run(host, "def helper(x):\n    return {}[x]\n\n" + program("return helper('missing')"))
    assert record.error_type == "KeyError"
    assert record.traceback.count('File "<program>"') == 2
    assert "in helper" in record.traceback and "worker.py" not in record.traceback
    assert record.error_log().startswith("KeyError: 'missing'\nTraceback (most recent call last):")


def test_syntax_error_record_points_at_the_line(host):
    record = run(host, "def execute_command(video, question)\n    return 'A'\n")
    assert record.error_type == "SyntaxError" and "line 1" in record.error_message
    assert "^" in record.traceback


@pytest.mark.parametrize("value,expected", [
    ({"answer": "B", "confidence": 0.25}, ("B", 0.25, {})),
    ({"answer": "b.", "confidence": 1, "extra": 3}, ("B", 1.0, {"extra": 3})),
    (("C", 0.5), ("C", 0.5, {})),
    ("(D)", ("D", 0.0, {"confidence_missing": True})),
    ("corn", ("C", 0.0, {"confidence_missing": True})),
    ({"answer": "A"}, ("A", 0.0, {"confidence_missing": True})),
    ("B", ("B", 0.0, {"confidence_missing": True})),
    ("(b)", ("B", 0.0, {"confidence_missing": True})),
    ("B. red", ("B", 0.0, {"confidence_missing": True})),
    (("Answer: C", 0.7), ("C", 0.7, {})),
    (("The answer is (D)", 0.7), ("D", 0.7, {})),
    (("  CORN ", 0.4), ("C", 0.4, {})),
])
def test_coerce_answer_accepts(value, expected):
    result = coerce_answer(value, CHOICES)
    assert (result.answer, result.confidence, result.metadata) == expected


@pytest.mark.parametrize("value,message", [
    ({"answer": "E", "confidence": 0.5}, "not one of the option letters"),
    ({"confidence": 0.5}, "without an 'answer'"),
    ({"answer": "A", "confidence": 1.5}, "in [0, 1]"),
    ({"answer": "A", "confidence": True}, "number"),
    ({"answer": "A", "confidence": 0.1, "metadata": [1]}, "metadata"),
    (3, "returned int"),
    (None, "returned NoneType"),
    # Free text that is not a choice is never read as its first letter.
    ({"answer": "a bowl of corn", "confidence": 0.9}, "not one of the option letters"),
    (("I think", 0.9), "not one of the option letters"),
    (("A bowl of corn", 0.9), "not one of the option letters"),
    (("b) beans", 0.9), "not one of the option letters"),
    (("", 0.9), "not one of the option letters"),
])
def test_coerce_answer_rejects(value, message):
    with pytest.raises(InvalidResult, match=message.replace("[", r"\[").replace("]", r"\]")):
        coerce_answer(value, CHOICES)


def test_coerce_answer_reads_choice_text_before_letters():
    choices = ["a red car", "a bowl of corn", "a dog"]
    assert coerce_answer(("a bowl of corn", 0.9), choices).answer == "B"
    assert coerce_answer(("A Bowl Of Corn ", 0.9), choices).answer == "B"
    # With ten options "I" is a letter, but "I think ..." is still prose.
    with pytest.raises(InvalidResult):
        coerce_answer(("I think it is red", 0.9), [f"option {i}" for i in range(10)])
    assert coerce_answer(("I", 0.9), [f"option {i}" for i in range(10)]).answer == "I"


def test_workers_are_reused_with_fresh_globals(host):
    executor = host["executor"]
    run(host, program("return 'A'"))
    started = executor.workers_started
    first = run(host, "counter = [0]\n" + program("counter[0] += 1\nreturn make_result('A', counter[0] / 10)"))
    second = run(host, program("return make_result('A', counter[0] / 10)"))
    assert first.success and first.result.confidence == 0.1
    assert second.error_type == "NameError"
    # The one class a program can name is per program too.
    patched = run(host, program("ModuleError.marker = 'A'\nreturn ModuleError.marker"))
    assert patched.success
    unpatched = run(host, program("return getattr(ModuleError, 'marker', 'B')"))
    assert unpatched.success and unpatched.result.answer == "B"
    assert executor.workers_started == started
    if os.geteuid() == 0:
        assert all(w.uid == LIMITS.unprivileged_id for w in executor._pool._idle)


def test_killed_worker_is_replaced_and_host_state_kept(host):
    executor = host["executor"]
    run(host, program("return 'A'"))
    started = executor.workers_started
    record = run(host, "def spin():\n    while True:\n        pass\n\n" + program("return spin()"))
    assert record.error_type in {"CPUTimeLimitExceeded", "WallTimeLimitExceeded"}
    # The worker reports where the program was when the limit hit.
    assert "in spin\n    while True:" in record.traceback and "in execute_command" in record.traceback
    assert record.host_error is None  # limits the program hit are its own fault
    assert executor.workers_started == started  # replaced lazily, on the next execution
    assert run(host, ORDINARY).success
    assert executor.workers_started == started + 1


# ---------------------------------------------------------------------------- hostile corpus
POLICY = {"PolicyViolation"}
RUNTIME = {"SandboxViolation"}
TIMEOUT = {"CPUTimeLimitExceeded", "WallTimeLimitExceeded"}


def hostile_corpus(clip_dir: Path, root: Path) -> list[tuple[str, str, set[str]]]:
    """(name, program, acceptable error types)."""
    secret = str(root / "secret.mp4")
    canary = str(root / "canary.txt")
    return [
        # imports and the import machinery
        ("import-os", "import os\n" + program("return os.listdir('/')"), POLICY),
        ("from-import", "from subprocess import run\n" + program("return run(['id'])"), POLICY),
        ("import-in-function", program("import socket\nreturn socket.create_connection(('1.1.1.1', 80))"), POLICY),
        ("dunder-import", program("os = __import__('os')\nreturn os.system('id')"), POLICY),
        ("builtins-dict", program("return __builtins__['open']('/etc/passwd').read()"), POLICY),
        # class-hierarchy and globals escapes
        ("subclasses", program("return ().__class__.__bases__[0].__subclasses__()"), POLICY),
        ("function-globals", program("return execute_command.__globals__"), POLICY),
        ("stub-closure", program("return query_mc.__closure__[0].cell_contents"), POLICY),
        ("lambda-code", program("return (lambda: 0).__code__.co_consts"), POLICY),
        ("type-mro", program("return type(question).mro()"), POLICY),
        ("class-with-dunders", "class A:\n    def __getattr__(self, n):\n        return n\n" + program("return A()"),
         POLICY),
        ("top-level-escape", "x = ().__class__\n" + program("return 'A'"), POLICY),
        ("match-class-attribute", program("match question:\n    case str(__class__=c):\n        return c"), POLICY),
        # run-time attribute names
        ("getattr-dunder", program("name = '_' + '_class__'\nreturn getattr((), name)"), RUNTIME),
        ("getattr-stub-globals", program("return getattr(query_mc, '__glo' + 'bals__')"), RUNTIME),
        ("hasattr-probe", program("return hasattr(query_mc, '_' * 2 + 'closure__')"), RUNTIME),
        ("getattr-gen-frame", program("gen = (x for x in [1])\nreturn getattr(gen, 'gi_' + 'frame')"), RUNTIME),
        # dynamic code, files, network, processes
        ("eval", program("return eval('1 + 1')"), POLICY),
        ("exec", program("exec('import os')"), POLICY),
        ("compile", program("return compile('1', 'x', 'eval')"), POLICY),
        ("open-read", program("return open('/etc/passwd').read()"), POLICY),
        ("open-write-host-file", program(f"open({canary!r}, 'w').write('pwned')"), POLICY),
        ("fork-bomb", "import os\n" + program("while True:\n    os.fork()"), POLICY),
        ("network-through-module", program("return query_native('http://evil.example/v.mp4', question, choices)"),
         RUNTIME),
        ("stop-interpreter", program("exit(1)"), POLICY),
        ("system-exit", program("raise SystemExit(0)"), POLICY),
        ("vars-and-globals", program("return vars() or globals()"), POLICY),
        # format-string attribute access
        ("format-attribute", program("return '{0.__class__}'.format(question)"), RUNTIME),
        ("format-map-attribute", program("return '{q.__class__.__mro__}'.format_map({'q': question})"), RUNTIME),
        ("format-unbound", program("f = str.format\nreturn f('{0.__globals__}', execute_command)"), RUNTIME),
        ("format-nested-spec", program("return '{0:{1.__class__}}'.format(1, 2)"), RUNTIME),
        ("format-via-getattr", program("return getattr('{0.__class__}', 'format')(1)"), RUNTIME),
        ("fstring-attribute", program("return f'{question.__class__}'"), POLICY),
        # frame and traceback walking
        ("generator-frame", program("def g():\n    yield 1\ngen = g()\nreturn gen.gi_frame.f_back.f_globals"), POLICY),
        ("traceback-frame", program("try:\n    1 / 0\nexcept Exception as e:\n    return e.__traceback__.tb_frame"),
         POLICY),
        # exhausting resources
        ("infinite-loop", program("while True:\n    pass"), TIMEOUT),
        ("loop-swallowing-everything", program("while True:\n    try:\n        while True:\n            pass\n"
                                               "    except:\n        pass"), TIMEOUT),
        ("memory-bomb-list", program("x = [0] * (10 ** 10)\nreturn 'A'"), {"MemoryError"}),
        ("memory-bomb-doubling", program("s = 'ab'\nwhile True:\n    s = s + s"), {"MemoryError"}),
        ("huge-output", program("while True:\n    print('x' * 10000)"), {"OutputLimitExceeded"}),
        ("recursion", program("def f(n):\n    return f(n + 1)\nreturn f(0)"), {"RecursionError"}),
        ("too-many-module-calls", program("for i in range(10 ** 6):\n    make_result('A', 1.0)"),
         {"ModuleCallLimitExceeded"}),
        ("huge-source", program("return 'A'") + "#" * 100_000, POLICY),
        ("deep-nesting", program("return " + "(" * 300 + "1" + ")" * 300), {"SyntaxError", "PolicyViolation"}),
        # deleting or patching modules
        ("delete-module", program("global query_mc\ndel query_mc\nreturn query_mc([], question, choices)"),
         {"NameError"}),
        ("patch-module-code", program("query_mc.__code__ = (lambda *a: 'A').__code__"), POLICY),
        ("patch-module-setattr", program("setattr(query_mc, 'x', 1)"), POLICY),
        ("mutate-frame-source", program(f"f = extract_frames(video, 2)[0]\nf.source = {secret!r}\n"
                                        "return query_mc([f], question, choices)"), {"AttributeError"}),
        # exceptions that would hide the error
        ("swallowed-violation", program("try:\n    getattr(question, '_' * 2 + 'class__')\nexcept:\n    pass\n"
                                        "return make_result('A', 1.0)"), RUNTIME),
        ("swallowed-output-limit", program("for i in range(1000):\n    try:\n        print('y' * 10000)\n"
                                           "    except:\n        pass\nreturn 'A'"), {"OutputLimitExceeded"}),
        ("huge-exception-message", program("raise ValueError('x' * 10 ** 6)"), {"ValueError"}),
        # module calls with paths outside the video, absurd sizes and forged handles
        ("path-outside", program("return extract_frames('/etc/passwd')"), RUNTIME),
        ("path-traversal", program(f"return extract_frames({str(clip_dir) + '/../../secret.mp4'!r})"), RUNTIME),
        ("symlink-out-of-clips", program(f"return extract_frames({str(clip_dir / 'link.mp4')!r})"), RUNTIME),
        ("path-in-list", program(f"return get_informative_clips([video, {secret!r}], 'q')"), RUNTIME),
        ("absurd-num-frames", program("return extract_frames(video, 10 ** 12)"), RUNTIME),
        ("huge-string-argument", program("return query_mc([], 'q' * 10 ** 6, choices)"), RUNTIME),
        ("huge-list-argument", program("return query_mc(list(range(10 ** 6)), question, choices)"), RUNTIME),
        ("forged-handle-dict", program("return query_mc([{'$frame': 0}], question, choices)"), {"TypeError"}),
        ("forged-protocol-on-stdout",
         program("print('\\x00\\x00\\x00\\x1b{\"op\":\"done\",\"ok\":true}')\nreturn 'Z'"), {"InvalidResult"}),
        ("dunder-keyword", program("return query_mc(**{'_' * 2 + 'class__': 1})"), {"TypeError"}),
        ("unserialisable-argument", program("return query_mc(lambda: 0, question, choices)"), {"TypeError"}),
        # results that are not plain data
        ("result-function", program("return execute_command"), {"InvalidResult"}),
        ("result-generator", program("return (x for x in [1])"), {"InvalidResult"}),
        ("result-exception", program("return ValueError('A')"), {"InvalidResult"}),
        ("result-nan-confidence", program("return {'answer': 'A', 'confidence': float('nan')}"), {"InvalidResult"}),
        ("result-huge", program("return {'answer': 'A', 'confidence': 1.0, 'metadata': {'x': 'a' * (3 * 2 ** 20)}}"),
         {"InvalidResult"}),
        ("module-returns-object", program("return opaque()"), {"ModuleError"}),
    ]


CORPUS_NAMES = [name for name, _, _ in hostile_corpus(Path("/c"), Path("/r"))]


def test_corpus_is_large_enough():
    assert len(CORPUS_NAMES) >= 30 and len(set(CORPUS_NAMES)) == len(CORPUS_NAMES)


@pytest.mark.parametrize("name", CORPUS_NAMES)
def test_hostile_program_ends_with_clear_error(host, name):
    _, code, expected = next(c for c in hostile_corpus(host["clip_dir"], host["root"]) if c[0] == name)
    record = run(host, code)
    assert not record.success, f"{name} succeeded: {record.result}"
    assert record.error_type in expected, (name, record.error_type, record.error_message)
    assert record.error_message  # something a refinement prompt can show
    assert len(record.error_message) <= 2 * LIMITS.max_error_chars
    assert len(record.stdout) <= LIMITS.max_stdout_chars
    assert record.error_log().startswith(f"{record.error_type}: ")


def test_host_untouched_after_corpus(host):
    """Runs after the corpus (file order): files, modules and the executor are intact."""
    assert _snapshot(host["root"]) == host["snapshot"]
    assert (host["root"] / "canary.txt").read_text() == "untouched"
    executor = host["executor"]
    assert executor.modules == host["functions"]
    assert all(fn.__func__ is getattr(FakeModules, name) for name, fn in executor.modules.items())
    assert os.listdir(executor._cwd) == []
    record = run(host, ORDINARY)
    assert record.success and record.result.answer == "B"
    # Forged frames never reached a module: everything received was issued by the host.
    assert all(type(f) is Frame and f.source.startswith(str(host["root"])) for f in host["modules"].received)


# ---------------------------------------------------------------------------- protocol level
def test_forged_requests_to_the_host_are_refused(host):
    execution = _Execution(host["executor"], host["video"], [str(host["clip_dir"])])
    ok = execution.handle_call({"op": "call", "id": 1, "name": "extract_frames", "args": [host["video"], 2],
                                "kwargs": {}})
    assert ok["ok"] and ok["value"][0]["$frame"] == 0
    forged = [
        {"id": 2, "name": "os_system", "args": [], "kwargs": {}},
        {"id": 3, "name": "__import__", "args": ["os"], "kwargs": {}},
        {"id": 4, "name": "query_mc", "args": [[{"$frame": 7}], "q", CHOICES], "kwargs": {}},
        {"id": 5, "name": "query_mc", "args": [[{"$frame": 0, "source": "/etc/passwd"}], "q", CHOICES],
         "kwargs": {}},
        {"id": 6, "name": "query_mc", "args": {"not": "a list"}, "kwargs": {}},
        {"id": 7, "name": "query_mc", "args": [{"$pickle": "gASV"}], "kwargs": {}},
        {"id": 8, "name": "extract_frames", "args": ["/etc/passwd"], "kwargs": {}},
        {"id": 9, "name": "extract_frames", "args": [host["video"], 2 ** 80], "kwargs": {}},
        {"id": 10, "name": "query_mc", "args": [[], "q", CHOICES], "kwargs": {"$x": 1}},
    ]
    for message in forged:
        reply = execution.handle_call({"op": "call", **message})
        assert reply["ok"] is False and reply["id"] == message["id"], message
        assert reply.get("violation") or reply.get("base") == "TypeError", (message, reply)
    assert host["modules"].received == [] or all(type(f) is Frame for f in host["modules"].received)


def test_channel_refuses_malformed_frames():
    r, w = os.pipe()
    channel = Channel(r, w, max_message_bytes=1024)
    try:
        os.write(w, (10 ** 6).to_bytes(4, "big"))
        with pytest.raises(ProtocolError, match="limit"):
            channel.recv(time.monotonic() + 1)
        os.write(w, (3).to_bytes(4, "big") + b"[1]")
        with pytest.raises(ProtocolError, match="malformed"):
            channel.recv(time.monotonic() + 1)
        os.write(w, (3).to_bytes(4, "big") + b"NaN")
        with pytest.raises(ProtocolError, match="malformed"):
            channel.recv(time.monotonic() + 1)
        with pytest.raises(ProtocolError, match="deadline"):
            channel.recv(time.monotonic() + 0.05)
    finally:
        os.close(r)
        os.close(w)


def test_module_time_counts_against_total_not_worker_time(tmp_path):
    video = tmp_path / "v.mp4"
    video.write_bytes(b"v")

    def slow(video: str) -> dict:
        """A module that takes a while (a VLM call)."""
        time.sleep(0.3)
        return {"answer": "A", "confidence": 0.5}

    code = program("for _ in range(3):\n    r = slow(video)\nreturn r")
    kwargs = {"video": str(video), "question": "q", "choices": CHOICES}
    with ProgramExecutor({"slow": slow}, limits=SandboxLimits(wall_time_s=0.6, total_time_s=30)) as executor:
        assert executor.execute(code, **kwargs).success  # 0.9 s of module time, little worker time
    with ProgramExecutor({"slow": slow}, limits=SandboxLimits(wall_time_s=30, total_time_s=0.5)) as executor:
        executor.warm()  # a worker started on a loaded machine must not eat the 0.5 s
        record = executor.execute(code, **kwargs)
    assert record.error_type == "WallTimeLimitExceeded" and "including module calls" in record.error_message
    assert len(record.module_calls) == 2
    # The time went to a module call in progress (a slow endpoint), not to the program: a host
    # error, so the runner asks for no bug fix and synthesis makes no R3 sample of it.
    assert record.host_error is not None
    assert record.host_error.startswith("sandbox: the total time limit of 0.5 s was used up by module calls")
    assert "during a slow() call" in record.host_error


def test_total_time_used_by_the_programs_own_compute_is_its_fault(tmp_path):
    video = tmp_path / "v.mp4"
    video.write_bytes(b"v")

    def now() -> float:
        """A fast module (a clock), so that the program makes module calls while it computes."""
        return time.monotonic()

    def slow(video: str) -> dict:
        time.sleep(0.3)
        return {"answer": "A", "confidence": 0.5}

    kwargs = {"video": str(video), "question": "q", "choices": CHOICES}
    limits = SandboxLimits(wall_time_s=30, total_time_s=1.0)
    busy = program("t0 = now()\nwhile now() - t0 < 5:\n    for _ in range(500000):\n        pass\nreturn slow(video)")
    spin = program("x = 0\nwhile True:\n    x += 1")
    with ProgramExecutor({"now": now, "slow": slow}, limits=limits) as executor:
        for code in (busy, spin):
            record = executor.execute(code, **kwargs)
            assert record.error_type == "WallTimeLimitExceeded" and "including module calls" in record.error_message
            assert record.host_error is None, record.host_error
            assert "slow" not in [c.name for c in record.module_calls]


# ---------------------------------------------------------------------------- host vs program faults
class HostFaultModules:
    """Modules that fail like infrastructure (an endpoint down) or like a program's mistake."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def flaky(self, video: str) -> dict:
        """A VLM endpoint that is down."""
        raise ConnectionError("endpoint http://vlm:8000 refused the connection")

    def picky(self, video: str, num_frames: int = 8) -> dict:
        """Rejects an argument the program can correct."""
        raise ModuleArgumentError(f"num_frames={num_frames} must be >= 1")

    def tagged(self, text: str, marker: object = object()) -> str:
        """Its default argument has no content key, so calls cannot be cached."""
        self.calls["tagged"] += 1
        return text.upper()

    def echo(self, text: str) -> str:
        """Cacheable."""
        self.calls["echo"] += 1
        return text

    def functions(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in ("flaky", "picky", "tagged", "echo")}


@pytest.fixture(scope="module")
def faults(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    video = root / "video.mp4"
    video.write_bytes(b"v")
    modules = HostFaultModules()
    with ProgramExecutor(modules.functions(), limits=LIMITS, cache=CallCache(), cache_identity="t") as executor:
        yield {"executor": executor, "video": str(video), "modules": modules}


def run_faults(faults, body: str):
    return faults["executor"].execute(program(body), video=faults["video"], question="q", choices=CHOICES)


def test_infrastructure_failure_is_a_host_error(faults):
    record = run_faults(faults, "return flaky(video)")
    assert not record.success
    assert record.host_error == "flaky(): ConnectionError: endpoint http://vlm:8000 refused the connection"
    # The program still sees the exception (and the error log shows it).
    assert "flaky(): ConnectionError" in record.error_message
    caught = run_faults(faults, """
        try:
            return flaky(video)
        except Exception:
            return ("A", 0.2)
    """)
    # A host error the program caught leaves no (confident) success behind.
    assert not caught.success and caught.result is None and caught.error_type == "HostError"
    assert caught.host_error is not None and caught.host_error.startswith("flaky(): ConnectionError:")


def test_program_mistake_reported_by_a_module_is_not_a_host_error(faults):
    record = run_faults(faults, "return picky(video, 0)")
    assert not record.success and record.error_type == "ValueError"
    assert record.host_error is None
    caught = run_faults(faults, "try:\n    picky(video, 0)\nexcept ValueError:\n    pass\nreturn ('B', 0.5)")
    assert caught.success and caught.host_error is None
    # Wrong arguments (bound against the signature) and a bad answer are the program's too.
    assert run_faults(faults, "return picky()").host_error is None
    assert run_faults(faults, "return ('a bowl of corn', 0.9)").error_type == "InvalidResult"


def test_uncacheable_calls_count_as_neither_hit_nor_miss(faults):
    code = "tagged('x')\ntagged('x')\necho('y')\necho('y')\nreturn ('A', 1.0)"
    record = run_faults(faults, code)
    assert record.success, record.error_log()
    assert faults["modules"].calls["tagged"] == 2  # computed each time, never cached
    assert (record.cache_hits, record.cache_misses) == (1, 1)  # the two echo calls only
    assert [c.cache_hit for c in record.module_calls] == [False, False, False, True]


def test_sandbox_startup_failure_is_a_host_error_record(tmp_path, monkeypatch):
    video = tmp_path / "v.mp4"
    video.write_bytes(b"v")
    with ProgramExecutor({}, limits=LIMITS) as executor:
        def cannot_start():
            raise SandboxStartupError("could not start a sandbox worker: no such file")
        monkeypatch.setattr(executor._pool, "_spawn", cannot_start)
        record = executor.execute(program("return 'A'"), video=str(video), question="q", choices=CHOICES)
        assert not record.success and record.result is None
        assert record.error_type == "SandboxStartupError"
        assert record.host_error == "sandbox: could not start a sandbox worker: no such file"
        monkeypatch.undo()
        assert executor.execute(program("return 'A'"), video=str(video), question="q", choices=CHOICES).success
