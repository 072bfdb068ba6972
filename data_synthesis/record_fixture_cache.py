"""Write the recorded teacher cache the quickstart replays (``data_synthesis/fixtures/teacher_cache_synthetic``).

The replies are **hand-written stand-ins for GPT-5 responses for synthetic questions**: a
program per question type of ``inference.toy.synthetic_video`` (colour at a time, text in a window,
moving object, motion direction, event order, needle code, needle context), written the way
the paper's teacher writes them, plus their bug fixes and refinements. Two first programs are
deliberately buggy (an out-of-range index, a reversed time window) so the quickstart shows R3.
Every cache entry says so in its ``note`` and has ``via: "fixture"`` and zero cost.

The cache is keyed by the full teacher request, so it is recorded by running the quickstart
pipeline itself with this responder in place of the API: every request the quickstart makes
is then in the cache. Refinement requests that depend only on the question (native refine)
or on a hand-written program (program refine) are recorded for every question as well, so a
machine whose tiny models answer differently still replays without a miss.

    python -m data_synthesis.record_fixture_cache [WORK_DIR]
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

FIXTURE_NOTE = "hand-written stand-in for GPT-5 responses for synthetic questions"
FIXTURE_MODEL = "hand-written-stand-in-for-gpt-5"


def _seconds(clock: str) -> float:
    parts = [float(p) for p in clock.split(":")]
    return sum(v * 60 ** i for i, v in enumerate(reversed(parts)))


def _reply(planning: str, body: str) -> str:
    return f"<planning>\n{planning}\n</planning>\n<code>\ndef execute_command(video, question):\n{body}</code>"


_MATCH_CHOICE = ("    for i, choice in enumerate(choices):\n"
                 "        if choice.upper() in seen.upper():\n"
                 "            return make_result(\"ABCDEFGH\"[i], 0.9, seen)\n")


def hand_written_program(question: str, *, variant: str) -> str:
    """The stand-in teacher's program for one synthetic question.

    ``variant``: ``first`` (the first attempt; buggy for two question types), ``fixed`` (bug
    fixed / native refinement) or ``wide`` (program refinement: more frames, wider windows).
    """
    wide = variant == "wide"
    n = 8 if wide else 4
    if m := re.search(r"background colour of the screen at (\d+:\d+)", question):
        t = _seconds(m.group(1))
        return _reply("The colour at one instant is visible in the frames around that time; sample them and ask.",
                      f"    frames = trim_around(video, {t}, {4 if wide else 2}, {n})\n"
                      "    return query_mc(frames, question, choices)\n")
    if m := re.search(r"written on the screen between (\d+:\d+) and (\d+:\d+)", question):
        a, b = _seconds(m.group(1)), _seconds(m.group(2))
        return _reply("The word is burned into the bottom band: read it with OCR in that window and match it "
                      "to the choices; fall back to asking the model about the frames.",
                      f"    frames = trim_frames(video, {a}, {b}, {n})\n"
                      "    seen = \" \".join(run_ocr(crop_bottom(frame)) for frame in frames)\n"
                      + _MATCH_CHOICE + "    return query_mc(frames, question, choices)\n")
    if m := re.search(r"(?:What moves across the screen|In which direction does .* move) between (\d+:\d+) and (\d+:\d+)",
                      question):
        a, b = _seconds(m.group(1)), _seconds(m.group(2))
        start, end = (b, a) if variant == "first" and "direction" in question else (a, b)  # first try: reversed window
        return _reply("The motion happens inside the given window: sample frames across it in time order and ask.",
                      f"    frames = trim_frames(video, {start}, {end}, {8 if wide else 6})\n"
                      "    return query_mc(frames, question, choices)\n")
    if m := re.search(r"In which order do these words appear on screen: (.+)\?", question):
        words = [w.strip() for w in m.group(1).split(",")]
        return _reply("The subtitles announce every word as it is written; find when each word is mentioned, "
                      "sort the words by time and match the order to the choices.",
                      f"    words = {words!r}\n"
                      "    times = []\n"
                      "    for word in words:\n"
                      f"        found = get_informative_subtitles(video, \"the word \" + word + \" is written below\", top_k={2 if wide else 1})\n"
                      "        times.append(found[0][0] if found else duration)\n"
                      "    order = [w for _, w in sorted(zip(times, words))]\n"
                      "    seen = \", \".join(order)\n"
                      + _MATCH_CHOICE + "    frames = extract_frames(video, 16)\n"
                      "    return query_mc(frames, question, choices)\n")
    if m := re.search(r"Right after the word (\w+) is shown", question):
        word = m.group(1)
        index = 1 if variant == "first" else 0  # first try: off-by-one on a one-element list
        return _reply("A subtitle announces the flash; retrieve that subtitle window, read the number with OCR "
                      "on its frames and match it to the choices.",
                      f"    intervals = get_informative_subtitles(video, \"right after the word {word}, a secret number flashes\", top_k=1)\n"
                      f"    start, end = intervals[{index}]\n"
                      f"    frames = trim_frames(video, start, end + {2 if wide else 0}, {n})\n"
                      "    seen = \" \".join(run_ocr(frame) for frame in frames)\n"
                      + _MATCH_CHOICE + "    return query_mc(frames, question, choices)\n")
    if m := re.search(r"shown just before the secret number (\d+) flashes", question):
        return _reply("Find the flash through its subtitle, then read the word in the frames just before it.",
                      "    intervals = get_informative_subtitles(video, \"a secret number flashes on a white screen\", top_k=1)\n"
                      "    if not intervals:\n"
                      "        return query_native(video, question, choices)\n"
                      f"    frames = trim_before(video, intervals[0][0], {8 if wide else 4}, {n})\n"
                      "    seen = \" \".join(run_ocr(crop_bottom(frame)) for frame in frames)\n"
                      + _MATCH_CHOICE + "    return query_mc(frames, question, choices)\n")
    raise ValueError(f"no hand-written program for question {question!r}")


def hand_written_reply(request: dict[str, Any]) -> str:
    """Answer a teacher request from the hand-written programs, by the prompt type it carries."""
    prompt = request["messages"][-1]["content"]
    # The adaptive prompt shows the paper's example question first; the real one comes last.
    questions = re.findall(r"^Question: (.*)$", prompt, re.MULTILINE)
    if not questions:
        raise ValueError("request without a 'Question:' line")
    q = questions[-1].strip()
    if "Buggy visual program:" in prompt or "Current native visual program:" in prompt:
        return hand_written_program(q, variant="fixed")
    if "Current visual program:" in prompt:
        return hand_written_program(q, variant="wide")
    return hand_written_program(q, variant="first")


class HandWrittenClient:
    """Duck-types ``openai.OpenAI.chat.completions.create`` with :func:`hand_written_reply`."""

    def __init__(self) -> None:
        self.chat = SimpleNamespace(completions=SimpleNamespace(create=self._create))

    @staticmethod
    def _create(**request: Any) -> Any:
        data = {"id": "fixture", "model": FIXTURE_MODEL, "usage": {},
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": hand_written_reply(request)}}]}
        return SimpleNamespace(model_dump=lambda: data)


def record(work_dir: str | Path, cache_dir: str | Path | None = None) -> Path:
    """Run the quickstart with the hand-written teacher and write its cache to ``cache_dir``."""
    from data_synthesis.config import SynthesisConfig
    from data_synthesis.pipeline import run_pipeline
    from data_synthesis.quickstart import FIXTURE_CACHE, prepare_quickstart, quickstart_argv
    from data_synthesis.teacher import TeacherClient, TeacherSettings
    from data_synthesis.teacher_prompts import StudentPrompts, teacher_messages, teacher_system_prompt
    from inference.config import parse_config

    cache = Path(cache_dir or FIXTURE_CACHE)
    if cache.exists():
        shutil.rmtree(cache)
    paths = prepare_quickstart(work_dir)
    run_dir = Path(tempfile.mkdtemp(prefix="record-", dir=work_dir))
    cfg = parse_config(SynthesisConfig, quickstart_argv(paths, ["--teacher_mode", "live", "--output_dir", str(run_dir),
                                                                "--teacher_cache_dir", str(cache)]))
    teacher = TeacherClient(TeacherSettings.from_config(cfg), client=HandWrittenClient())
    # Requests that do not depend on the tiny models' answers, for every question.
    from data_synthesis.pipeline import load_records

    system = teacher_system_prompt(cfg.num_few_shot, with_module_spec=True)
    requests = []
    for rec in load_records(cfg):
        requests.append(teacher.build_request(teacher_messages(system, StudentPrompts.native_refine(rec))))
        for variant in ("first", "fixed", "wide"):
            code = _code(hand_written_program(rec.question, variant=variant))
            requests.append(teacher.build_request(teacher_messages(system, StudentPrompts.program_refine(rec, code))))
    teacher.complete_many(requests, tag="prewarm")
    # Everything else the quickstart asks, by running it.
    run_pipeline(cfg, teacher=teacher)
    for path in cache.glob("*/*.json"):
        entry = json.loads(path.read_text())
        entry.update(via="fixture", cost_usd=0.0, note=FIXTURE_NOTE, response_model=FIXTURE_MODEL)
        path.write_text(json.dumps(entry, ensure_ascii=False, indent=1, sort_keys=True))
    (cache / "README.md").write_text(
        "# Recorded teacher cache for the quickstart\n\n"
        f"Every entry here is a **{FIXTURE_NOTE}** (`data_synthesis/record_fixture_cache.py`), "
        "not a real GPT-5 reply. The quickstart replays them (`teacher_mode: replay`) so that it "
        "runs offline and costs nothing. Regenerate with `python -m data_synthesis.record_fixture_cache`.\n")
    shutil.rmtree(run_dir, ignore_errors=True)
    return cache


def _code(reply: str) -> str:
    from inference.programs import parse_model_output

    return parse_model_output(reply).code


def main(argv: Sequence[str] | None = None) -> int:
    import logging

    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cache = record(argv[0] if argv else "outputs/quickstart/synthesis")
    print(f"recorded {sum(1 for _ in cache.glob('*/*.json'))} teacher replies in {cache}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
