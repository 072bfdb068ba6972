"""Executor integrity with the real module runtime: sampled programs can neither leak files, nor
game their confidence, nor blame the host for their own faults (docs/sandbox.md).

Everything here runs the real ``ModuleRuntime`` (tiny Qwen3-VL in-process, packaged EasyOCR and
MiniLM, tiny CLIP and Grounding DINO) behind the real ``ProgramExecutor``, over the toy
synthetic video. A second synthetic video (seed 5) and a PNG of one of its frames, both with a
burned-in word the main video does not show, sit in a folder whose name has a space: no
spelling of their paths, through any argument of any module, may get them read.
"""

from __future__ import annotations

import http.server
import json
import os
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from inference.call_cache import CallCache
from inference.confidence import effective_confidence
from inference.modules import ModuleConfig, ModuleRuntime
from inference.sandbox import ProgramExecutor, SandboxLimits
from inference.toy import ToyAssets
from inference.toy.synthetic_video import generate_synthetic_video

QUESTION = "Which word is written on the screen?"


def program(body: str) -> str:
    return "def execute_command(video, question):\n" + textwrap.indent(textwrap.dedent(body), "    ")


# The tiny random model often answers no option letter (answer "", confidence 0): programs that
# must succeed keep the model's result and fill in a letter, leaving its confidence untouched.
ASK = "r = query_mc(extract_frames(video, 2), question, choices)\nr['answer'] = r['answer'] or 'A'\n"


def runtime_config(toy: ToyAssets, clip_dir: Path, **overrides: Any) -> ModuleConfig:
    """The toy assets' offline module library (tiny Qwen3-VL in-process), few frames (CPU time)."""
    return toy.module_config(clip_dir=str(clip_dir), **{"video_max_frames": 4, "max_query_frames": 4, **overrides})


class OpenedFiles:
    """Records every media file the host opens (``av.open``, which every decode path goes through:
    probing, clip splitting, frame decoding for OCR, detection and the VLM); the real function runs."""

    def __init__(self) -> None:
        import av

        self.paths: list[str] = []
        self._av, self._open = av, av.open

        def spy(file: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(file, (str, os.PathLike)):
                self.paths.append(os.path.realpath(os.fspath(file)))
            return self._open(file, *args, **kwargs)

        av.open = spy

    def close(self) -> None:
        self._av.open = self._open


@pytest.fixture(scope="module")
def world(toy_assets: ToyAssets, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("integrity")
    secret_dir = root / "some dir"
    secret = generate_synthetic_video(secret_dir, seed=5, duration_s=16.0, video_id="other")
    video = toy_assets.video
    secret_word = secret.scenes[0].text
    assert secret_word not in {s.text for s in video.scenes}, "pick a seed whose word the main video lacks"
    runtime = ModuleRuntime(runtime_config(toy_assets, root / "clips"))
    # Preconditions, by trusted code: the OCR route reads the secret video's and image's word,
    # so a leak would show, and the main video's clips exist (its clip folder is the only one).
    frame = runtime.trim_frames(str(secret.video_path), 2.0, 2.5, 1)[0]
    assert secret_word in runtime.run_ocr(frame).upper()
    from PIL import Image

    image = secret_dir / "secret.png"
    Image.fromarray(runtime.store.load_frames([frame])[0]).save(image)
    from inference.types import Frame

    assert secret_word in runtime.run_ocr(Frame(str(image), 0.0, 0.0)).upper()  # a PNG decodes as one frame
    clips = runtime.store.split_clips(str(video.video_path))
    clip_folder = runtime.store.clip_folder(str(video.video_path))
    os.symlink(secret.video_path, clip_folder / "link.mp4")       # a hostile link inside the clip folder
    os.symlink(secret.video_path, root / "link_elsewhere.mp4")
    executor = ProgramExecutor(runtime.functions(), cache=CallCache(), cache_identity=runtime.cache_identity)
    opened = OpenedFiles()
    try:
        yield {"root": root, "runtime": runtime, "executor": executor, "video": str(video.video_path),
               "synthetic": video, "secret": str(secret.video_path), "image": str(image), "secret_word": secret_word,
               "clip_dir": root / "clips", "clip_folder": clip_folder, "clips": clips, "opened": opened,
               "secret_files": {os.path.realpath(secret.video_path), os.path.realpath(image)}}
    finally:
        opened.close()
        executor.close()


def execute(world: dict[str, Any], code: str, executor: ProgramExecutor | None = None, **kwargs: Any):
    runtime: ModuleRuntime = world["runtime"]
    video = kwargs.pop("video", world["video"])
    kwargs.setdefault("choices", ["APPLE", "RIVER", "TIGER", "CLOUD"])
    return (executor or world["executor"]).execute(
        code, video=video, question=kwargs.pop("question", QUESTION), duration=40.0,
        allowed_roots=runtime.program_roots(video), **kwargs)


# ------------------------------------------------------------------------------ 1. no file but its own
def spellings(world: dict[str, Any]) -> dict[str, str]:
    """Ways to name the secret files: every one must stay unreadable."""
    secret, cwd, folder = world["secret"], Path.cwd(), world["clip_folder"]
    some_dir = next(p.name for p in sorted(cwd.iterdir()) if p.is_dir() and not p.is_symlink())
    return {
        "absolute-with-space": secret,
        "relative-without-dot": f"{some_dir}/" + "../" * len(cwd.parts) + secret.lstrip("/"),
        "dotdot-through-the-clip-folder": f"{folder}/{os.path.relpath(secret, folder)}",
        "symlink-in-the-clip-folder": str(world["clip_folder"] / "link.mp4"),
        "symlink-elsewhere": str(world["root"] / "link_elsewhere.mp4"),
        "file-url": "file:" + secret,
        "file-url-slashes": "file://" + secret,
        "padded-with-4100-slashes": "/" * 4100 + secret.lstrip("/"),
        "image": world["image"],
    }


ROUTES = {  # how a program hands a path to a module; {p} is the path literal
    "video-argument": "frames = extract_frames({p}, 1)\nprint(run_ocr(frames[0]))",
    "trim-window": "print(run_ocr(trim_frames({p}, 2.0, 2.5, 1)[0]))",
    "native-answer": "return query_native({p}, question, choices)",
    "clip-retrieval": "intervals, clips = get_informative_clips({p}, 'a word')\nprint(clips)",
    "frame-dict-to-ocr": "print(run_ocr({{'source': {p}, 'time': 2.0}}))",
    "frame-dict-keyword": "print(run_ocr(frame={{'source': {p}, 'time': 2.0, 'video_time': 2.0}}))",
    "frame-dict-in-a-list": ("own = extract_frames(video, 1)\n"
                             "return query_mc(frames=[own[0], {{'source': {p}, 'time': 2.0}}], question=question, "
                             "choices=choices)"),
    "frame-dict-to-detector": "print(detect_object({{'source': {p}, 'time': 2.0}}, 'ball'))",
    "frame-dict-to-crop": "c = crop({{'source': {p}, 'time': 2.0}}, [0, 0, 200, 200])\nprint(run_ocr(c))",
    "nested-metadata": "return make_result('A', 0.5, 'x', frames=[{{'source': {p}}}])",
}
CORPUS = [(s, r) for s in ("absolute-with-space", "relative-without-dot", "dotdot-through-the-clip-folder",
                           "symlink-in-the-clip-folder", "symlink-elsewhere", "file-url", "file-url-slashes",
                           "padded-with-4100-slashes", "image") for r in ROUTES]


@pytest.mark.slow
@pytest.mark.parametrize("spelling, route", CORPUS, ids=[f"{s}:{r}" for s, r in CORPUS])
def test_hostile_corpus_cannot_read_another_file(world, spelling, route):
    path = spellings(world)[spelling]
    code = program(ROUTES[route].format(p=repr(path)))
    opened: OpenedFiles = world["opened"]
    opened.paths.clear()
    record = execute(world, code)
    text = json.dumps(record.to_dict())
    assert not (set(opened.paths) & world["secret_files"]), (spelling, route, "a secret file was opened")
    assert world["secret_word"] not in text.upper(), (spelling, route, "the secret word leaked")
    assert not record.success and record.error_type == "SandboxViolation", (record.error_type, record.error_message)
    assert record.host_error is None  # the program's own doing: a bug-fix round, never a host error


def test_the_ocr_route_works_for_the_programs_own_video(world):
    """The control for the corpus: the same routes read the execution's own video."""
    scene = world["synthetic"].scenes[1]
    t = scene.start + 0.25 * (scene.end - scene.start)
    record = execute(world, program(f"""
        frames = trim_frames(video, {t}, {t + 0.5}, 1)
        print(run_ocr(frames[0]))
        return make_result('A', query_mc(frames, question, choices)['confidence'])
    """))
    assert record.success, record.error_log()
    assert scene.text in record.stdout.upper()
    # A frame rebuilt from a dict is refused even for the own video: frames travel only as handles.
    record = execute(world, program(f"return run_ocr({{'source': video, 'time': {t}}})"))
    assert record.error_type == "TypeError" and "frames cannot be built from a dict" in record.error_message
    assert record.host_error is None


def test_clip_paths_stay_inside_the_clip_folder(world):
    before = sorted(p.name for p in world["clip_dir"].iterdir())
    folder_before = sorted(p.name for p in world["clip_folder"].iterdir())
    record = execute(world, program("""
        intervals, clips = get_informative_clips(video, 'a word', top_k=1)
        sub_intervals, sub_clips = get_informative_clips(clips[0], 'a word', top_k=3)
        print(clips, sub_clips, intervals, sub_intervals)
        frames = extract_frames(sub_clips[0], 2)
        return make_result('A', query_mc(frames, question, choices)['confidence'])
    """))
    assert record.success, record.error_log()
    # A clip's own clips are the clip itself (searched in the source video), never a new folder
    # beside the video's clip folder (clips, manifest, lock, embeddings).
    assert sorted(p.name for p in world["clip_dir"].iterdir()) == before == [world["clip_folder"].name]
    inside = sorted(p.name for p in world["clip_folder"].iterdir())
    assert set(folder_before) <= set(inside) and set(inside) - set(folder_before) <= {"embeddings"}
    assert sum(p.name.startswith("clip_") for p in world["clip_folder"].iterdir()) == len(world["clips"])
    # The clip folder's other files are not videos to a program.
    for name in ("manifest.json", ".lock"):
        record = execute(world, program(f"return extract_frames({str(world['clip_folder'] / name)!r}, 1)"))
        assert record.error_type == "ValueError" and "not a clip" in record.error_message, record.error_log()
        assert record.host_error is None


# ------------------------------------------------------------------------------ 2. the model's confidence
FORGED = program(ASK + 'r["confidence"] = 1.0\nreturn r\n')


def test_confidence_provenance(world):
    cases = {
        FORGED: "program",
        program(ASK + "return r"): "module:query_mc",
        program("r = query_native(video, question, choices)\nr['answer'] = r['answer'] or 'B'\nreturn r"):
            "module:query_native",
        program(ASK + "return make_result(r['answer'], r['confidence'], 'passed on')"): "module:query_mc",
        program("return make_result('B', 0.99)"): "program",
        program(ASK + "return r['answer']"): "missing",
    }
    for code, source in cases.items():
        record = execute(world, code)
        assert record.success, record.error_log()
        assert record.confidence_source == source, (code, record.confidence_source)
        trusted = effective_confidence(record, trust_program_confidence=True)
        untrusted = effective_confidence(record)
        if source.startswith("module:"):
            assert untrusted == trusted == record.result.confidence
        elif source == "program":
            assert untrusted is None and trusted == record.result.confidence
        else:
            assert untrusted is None and trusted is None
    # make_result has no default confidence any more: the program must say where it comes from.
    record = execute(world, program("return make_result('B')"))
    assert record.error_type == "TypeError" and "confidence" in record.error_message


class ScriptedPolicy:
    """Writes the refinement programs the runner asks for (predetermined replies)."""

    def __init__(self, replies: list[str]) -> None:
        self.replies = list(replies)
        self.prompts: list[str] = []

    def generate(self, prompt: str, **kwargs: Any) -> Any:
        from inference.backends.vlm import Generation

        self.prompts.append(prompt)
        text = self.replies.pop(0)
        return Generation(text=text, num_tokens=len(text))


NATIVE_REPLY = ("<planning>answer directly</planning>\n<code>\ndef execute_command(video, question):\n"
                "    r = query_native(video, question, choices)\n    r['answer'] = r['answer'] or 'B'\n"
                "    return r\n</code>")


@pytest.mark.parametrize("trust", [False, True])
def test_a_forged_confidence_is_refined_unless_trusted(world, trust):
    from inference.runner import AdaptiveRunner

    policy = ScriptedPolicy([NATIVE_REPLY])
    runner = AdaptiveRunner(policy, world["executor"], world["runtime"], max_refine_rounds=1, temperature=0.0,
                            max_new_tokens=16, trust_program_confidence=trust)
    result = runner.run(world["video"], QUESTION, ["APPLE", "RIVER", "TIGER", "CLOUD"], code=FORGED)
    first = result.rounds[0]
    assert first.execution.success and first.execution.result.confidence == 1.0
    assert first.execution.confidence_source == "program"
    if trust:
        assert [r.kind for r in result.rounds] == ["given"] and result.confidence == 1.0
        assert result.stopped_reason == "confident" and not policy.prompts
    else:  # the stated 1.0 counts as missing: refined like any unconfident answer
        assert [r.kind for r in result.rounds] == ["given", "program_refine"]
        assert result.rounds[1].execution.confidence_source == "module:query_native"
        assert result.confidence == result.rounds[1].execution.result.confidence < 1.0
    assert result.trust_program_confidence is trust


@pytest.mark.parametrize("trust", [False, True])
def test_the_synthesis_labeller_does_not_trust_a_forged_confidence(world, trust):
    from data_synthesis.labeling import ExecutorNativeAnswerer, label_record
    from data_synthesis.runtime import SandboxProgramRunner
    from inference.types import QARecord

    scene = world["synthetic"].scenes[0]
    choices = [scene.text] + [s.text for s in world["synthetic"].scenes[1:4]]
    record = QARecord(id="q", video=world["video"], question=QUESTION, choices=choices, answer="A", duration=40.0)
    runner = SandboxProgramRunner(world["executor"], roots_for=world["runtime"].program_roots)
    answerer = ExecutorNativeAnswerer(runner, trust_program_confidence=trust)
    answerer.code = program("r = query_native(video, question, choices)\nreturn make_result('A', 1.0)")
    label = label_record(record, answerer, 0.75)
    assert label.correct  # 'A' is the truth, stated with confidence 1.0 by the program
    assert (label.confidence, label.mode_label) == ((1.0, "native") if trust else (0.0, "program"))


# ------------------------------------------------------------------------------ 3. faults are the program's
def test_an_over_long_file_name_is_the_programs_fault(world):
    inside = str(world["clip_folder"] / ("a" * 300 + ".mp4"))
    record = execute(world, program(f"return extract_frames({inside!r}, 1)"))
    assert record.error_type == "ValueError" and "File name too long" in record.error_message, record.error_log()
    assert record.host_error is None
    outside = str(world["root"] / ("b" * 300 + ".mp4"))
    record = execute(world, program(f"return extract_frames({outside!r}, 1)"))
    assert record.error_type == "SandboxViolation" and record.host_error is None


def test_oversized_detector_text_and_prompt_are_the_programs_fault(world):
    start = time.perf_counter()
    too_long = execute(world, program("f = extract_frames(video, 1)[0]\nreturn detect_object(f, 'red ball ' * 2222)"))
    many_tokens = execute(world, program("f = extract_frames(video, 1)[0]\nreturn detect_object(f, 'ball. ' * 300)"))
    huge_choices = execute(world, program(
        "frames = extract_frames(video, 2)\nreturn query_mc(frames, question, [c * 20000 for c in "
        "'ABCDEFGHIJKLMNOPQRSTUVWXYZ'])"))
    for record, message in ((too_long, "at most 8000"), (many_tokens, "tokens"), (huge_choices, "at most 8000")):
        assert record.error_type == "ValueError" and message in record.error_message, record.error_log()
        assert record.host_error is None
    assert time.perf_counter() - start < 60  # refused before any model ran on them


def test_word_number_is_capped_at_what_programs_use(world):
    record = execute(world, program("return get_subtitle_hints(video, question, choices, duration, 20000)"))
    assert record.error_type == "SandboxViolation" and "word_number=20000 exceeds the limit of 1000" in \
        record.error_message
    assert record.host_error is None


@pytest.mark.slow
def test_an_ocr_flood_ends_as_the_programs_fault_within_the_budget(world):
    limits = SandboxLimits(module_time_s=8.0)  # many OCR calls' worth, on a loaded 2-core machine too
    with ProgramExecutor(world["runtime"].functions(), limits=limits) as executor:
        start = time.perf_counter()
        record = execute(world, program("""
            frames = extract_frames(video, 127)
            texts = []
            for i in range(127):
                texts.append(run_ocr(crop(frames[i], [0, i % 40, 320, 240])))
            return make_result('A', query_mc(frames[:2], question, choices)['confidence'])
        """), executor=executor)
        elapsed = time.perf_counter() - start
    assert record.error_type == "ModuleTimeLimitExceeded", record.error_log()
    assert record.host_error is None
    ocr_calls = [c for c in record.module_calls if c.name == "run_ocr"]
    assert 1 <= len(ocr_calls) < 127
    charged = sum(c.duration_s for c in record.module_calls)
    slowest = max(c.duration_s for c in record.module_calls)
    assert charged <= limits.module_time_s + slowest + 1.0
    assert elapsed < limits.module_time_s + 3 * slowest + 10.0


def test_the_vlm_stops_at_the_budget_in_the_middle_of_a_call(world, toy_assets):
    """A single transformers generate call is cut at the deadline (max_time), not after it."""
    runtime = ModuleRuntime(runtime_config(toy_assets, world["clip_dir"], hints_summarize=True,
                                           max_hint_words=1000))
    code = program("return get_subtitle_hints(video, question, choices, duration, 1000)")
    with ProgramExecutor(runtime.functions(), limits=SandboxLimits(module_time_s=1.5)) as executor:
        execute(world, program("return get_informative_subtitles(video, 'a word')"), executor=executor)  # embed
        record = execute(world, code, executor=executor)
    call = next(c for c in record.module_calls if c.name == "get_subtitle_hints")
    assert call.duration_s < 1.5 + 2.0, call  # 2,000 new tokens would take far longer
    # One call that started with the whole budget and used it up: the backend is too slow for
    # the budget, which is the host's, not the program's fault.
    assert record.host_error is not None and "too slow for SandboxLimits.module_time_s" in record.host_error


class FakeEndpoint:
    """An OpenAI-compatible HTTP endpoint on 127.0.0.1 that lists one model (with vLLM's ``root``)
    and answers chat completions with a given HTTP status and vLLM's error body: what a vLLM
    server answers to a request beyond its context (400) or while overloaded (503). The real
    vLLM server is exercised in the ``vllm``-marked tests below."""

    def __init__(self) -> None:
        self.root = "/ckpt/step-1"
        self.status = 400
        self.delay_s = 0.0
        self.message = ("This model's maximum context length is 4096 tokens. However, you requested 40960 tokens "
                        "(960 in the messages, 40000 in the completion). Please reduce the length.")
        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._send(200, {"object": "list", "data": [{"id": "tiny", "object": "model", "owned_by": "vllm",
                                                             "root": endpoint.root, "parent": None}]})

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(endpoint.delay_s)
                self._send(endpoint.status, {"object": "error", "message": endpoint.message,
                                             "type": "BadRequestError", "param": None, "code": endpoint.status})

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint() -> Iterator[FakeEndpoint]:
    server = FakeEndpoint()
    yield server
    server.close()


def test_an_endpoint_4xx_to_the_programs_request_is_a_program_fault(world, endpoint, toy_assets):
    from inference.runner import AdaptiveRunner

    runtime = ModuleRuntime(runtime_config(toy_assets, world["clip_dir"], vlm_backend="openai",
                                           vlm_base_url=endpoint.base_url, vlm_model="tiny", vlm_timeout=30.0))
    code = program("return get_subtitle_hints(video, question, choices, duration, 900)")
    with ProgramExecutor(runtime.functions(), cache=CallCache(), cache_identity=runtime.cache_identity) as executor:
        record = execute(world, code, executor=executor)
        assert record.error_type == "ValueError" and "RequestRejectedError" in record.error_message
        assert "maximum context length" in record.error_message and record.host_error is None
        # The runner asks for a bug fix (the program's arguments made the request impossible).
        runner = AdaptiveRunner(ScriptedPolicy(["no program"]), executor, runtime, max_refine_rounds=1,
                                max_new_tokens=16, temperature=0.0)
        result = runner.run(world["video"], QUESTION, ["APPLE", "RIVER"], code=code)
        assert [r.kind for r in result.rounds] == ["given", "bugfix"] and result.host_error is None
        # An overloaded server (503) is the host's: no bug fix, the record says so.
        endpoint.status = 503
        record = execute(world, code, executor=executor)
        assert record.host_error is not None and "503" in record.host_error


def test_the_openai_backend_stops_at_the_budget(world, endpoint, toy_assets):
    """The request timeout is cut to the module-time budget left (the endpoint takes 20 s)."""
    endpoint.delay_s = 20.0
    runtime = ModuleRuntime(runtime_config(toy_assets, world["clip_dir"], vlm_backend="openai",
                                           vlm_base_url=endpoint.base_url, vlm_model="tiny", vlm_timeout=60.0))
    code = program("return get_subtitle_hints(video, question, choices, duration, 300)")
    with ProgramExecutor(runtime.functions(), limits=SandboxLimits(module_time_s=3.0)) as executor:
        execute(world, program("return get_informative_subtitles(video, 'a word')"), executor=executor)  # embed
        start = time.perf_counter()
        record = execute(world, code, executor=executor)
        assert time.perf_counter() - start < 3.0 + 5.0
    call = next(c for c in record.module_calls if c.name == "get_subtitle_hints")
    assert call.duration_s < 3.0 + 2.0, call
    assert record.host_error is not None and "too slow for SandboxLimits.module_time_s" in record.host_error
    endpoint.delay_s = 0.0


# ------------------------------------------------------------------------------ 4. the cache's identity
def test_the_cache_misses_after_the_served_weights_change(world, endpoint, toy_assets):
    runtime = ModuleRuntime(runtime_config(toy_assets, world["clip_dir"], vlm_backend="openai",
                                           vlm_base_url=endpoint.base_url, vlm_model="tiny",
                                           vlm_identity_refresh_s=0.0))
    code = program("return extract_frames(video, 2)")
    with ProgramExecutor(runtime.functions(), cache=CallCache(), cache_identity=runtime.cache_identity) as executor:
        first, second = execute(world, code, executor=executor), execute(world, code, executor=executor)
        assert (first.cache_misses, second.cache_hits) == (1, 1)
        endpoint.root = "/ckpt/step-2"  # a checkpoint swapped behind the same URL and model name
        assert execute(world, code, executor=executor).cache_misses == 1
        runtime.set_weights_version("grpo-step-3")  # GRPO bumps this after every optimiser step
        assert execute(world, code, executor=executor).cache_misses == 1
        assert execute(world, code, executor=executor).cache_hits == 1
    assert "/ckpt/step-2" in runtime.identity()["vlm"] and runtime.identity()["weights_version"] == "grpo-step-3"


def test_the_cache_misses_for_another_clip_folder(world, tmp_path, toy_assets):
    cache = CallCache()
    code = program("""
        intervals, clips = get_informative_clips(video, 'a word', top_k=1)
        print(clips)
        frames = extract_frames(clips[0], 2)
        return query_mc(frames, question, choices)
    """)
    records = []
    for folder in (tmp_path / "clips_a", tmp_path / "clips_b"):
        runtime = ModuleRuntime(runtime_config(toy_assets, folder))
        with ProgramExecutor(runtime.functions(), cache=cache, cache_identity=runtime.cache_identity) as executor:
            records.append(executor.execute(code, video=world["video"], question=QUESTION, choices=["A1", "B2"],
                                            allowed_roots=runtime.program_roots(world["video"])))
    first, second = records
    assert first.success and second.success, second.error_log()  # no violation the program did not commit
    assert second.cache_hits == 0 and "clips_b" in second.stdout and "clips_a" not in second.stdout


def test_the_cache_is_bounded_in_bytes(world, tmp_path):
    cache = CallCache(tmp_path / "cache", max_memory_bytes=60_000, max_disk_bytes=100_000)
    code = program("""
        for i in range(250):
            trim_frames(video, i * 0.1, i * 0.1 + 20.0, 64)
        return make_result('A', 0.5)
    """)
    runtime: ModuleRuntime = world["runtime"]
    with ProgramExecutor(runtime.functions(), cache=cache, cache_identity=runtime.cache_identity) as executor:
        record = execute(world, code, executor=executor)
    assert record.success, record.error_log()
    files = list((tmp_path / "cache").glob("*/*.json"))
    on_disk = sum(f.stat().st_size for f in files)
    largest = max(f.stat().st_size for f in files)
    assert on_disk <= 100_000 + largest and len(files) < 250
    assert cache.stats()["memory_bytes"] <= 60_000 and cache.stats()["evicted"] > 0
    assert cache.disk_bytes() == on_disk


# ------------------------------------------------------------------------------ 5. strict, host-free records
def test_records_are_strict_json_without_host_paths(world, toy_assets):
    record = execute(world, program(ASK + textwrap.dedent("""
        print(r["metadata"])
        r["metadata"]["nan"] = float("nan")
        r["metadata"]["bounds"] = [float("inf"), -float("inf"), 1.5]
        return r
    """)))
    assert record.success, record.error_log()
    meta = record.result.metadata
    assert meta["nan"] is None and meta["bounds"] == [None, None, 1.5] and meta["non_finite_nulled"] == 3
    text = json.dumps(record.to_dict(), allow_nan=False)
    json.loads(text, parse_constant=lambda name: pytest.fail(f"non-strict JSON constant {name}"))
    # What the program was handed names no host path (the checkpoint's folder).
    assert str(toy_assets.qwen3_vl) not in record.stdout and str(toy_assets.qwen3_vl) not in text
    assert meta["backend"] == "transformers"


def test_cli_output_is_strict_json(world, toy_assets, tmp_path):
    from inference.cli import main

    code_file, out = tmp_path / "prog.py", tmp_path / "result.json"
    code_file.write_text(program(ASK + textwrap.dedent("""
        r["metadata"]["ratio"] = float("inf")
        return r
    """)))
    argv = ["--video", world["video"], "--question", QUESTION, "--choices", "APPLE", "RIVER",
            "--clip-save-folder", str(tmp_path / "clips"), "--checkpoint", str(toy_assets.qwen3_vl),
            "--code-file", str(code_file), "--max-refine-rounds", "0", "--output", str(out), "--quiet",
            "--video_max_frames", "4", "--max_query_frames", "4", "--subtitle_embedder", "packaged:all-minilm-l6-v2",
            "--clip_model", str(toy_assets.clip), "--device", "cpu"]
    main(argv)
    data = json.loads(out.read_text(), parse_constant=lambda name: pytest.fail(f"non-strict JSON constant {name}"))
    assert data["rounds"][0]["execution"]["result"]["metadata"]["ratio"] is None


# ------------------------------------------------------------------------------ with the real vLLM server
@pytest.mark.vllm
def test_vllm_context_overflow_is_a_program_fault_and_its_root_is_the_identity(world, vllm_server, toy_assets):
    runtime = ModuleRuntime(runtime_config(toy_assets, world["clip_dir"], vlm_backend="openai",
                                           vlm_base_url=vllm_server.base_url, vlm_model=vllm_server.model,
                                           max_hint_words=100_000))
    assert str(vllm_server.checkpoint) in runtime.identity()["vlm"]  # the weights the server loaded
    limits = SandboxLimits(count_limits={"word_number": 100_000})
    code = program("return get_subtitle_hints(video, question, choices, duration, 20000)")
    with ProgramExecutor(runtime.functions(), limits=limits) as executor:
        record = execute(world, code, executor=executor)
    assert record.error_type == "ValueError" and "RequestRejectedError" in record.error_message, record.error_log()
    assert "HTTP 400" in record.error_message and record.host_error is None
