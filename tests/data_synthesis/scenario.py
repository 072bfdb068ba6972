"""Purpose-built synthesis cases: fake module functions (plain Python), a scripted teacher, and
questions whose path through the pipeline is known.

=========  ==========================  =============================  ===========================
question   native (answer, conf)       teacher's first program        expected trajectories
=========  ==========================  =============================  ===========================
q-sky      correct, 0.90               correct                        R1
q-word     wrong, 0.95                 correct                        R2; R4 low-conf native
q-balls    correct, 0.50 (< tau)       crashes (IndexError)           R3 buggy program;
                                                                      (native refine rejected)
q-flash    wrong, 0.30                 runs, answers wrong            R4 low-conf program;
                                                                      R4 low-conf native
=========  ==========================  =============================  ===========================

The modules are ordinary functions handed to the real ``ProgramExecutor``; their answers are
looked up from the question text the program passes, so a program that asks the right
question gets the right answer and one that asks about "unrelated focus" does not.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from inference.types import Frame, QARecord

CHOICES = ["red", "blue", "green", "white"]
QUESTIONS = {  # id: (question, truth, native answer, native confidence)
    "q-sky": ("What colour is the sky in the opening scene?", "B", "B", 0.90),
    "q-word": ("Which word is written at the very end?", "C", "A", 0.95),
    "q-balls": ("What colour are the balls that bounce twice?", "C", "C", 0.50),
    "q-flash": ("What colour flashes after the loud bang?", "D", "A", 0.30),
}

PLAN = "<planning>\nRetrieve the relevant clip, sample its frames and ask about them.\n</planning>\n"


def program(body: str) -> str:
    return PLAN + "<code>\ndef execute_command(video, question):\n" + body + "</code>"


CORRECT = program(
    "    intervals, clips = get_informative_clips(video, question, top_k=1)\n"
    "    frames = extract_frames(clips[0], 4)\n"
    "    return query_mc(frames, question, choices)\n")
CRASH = program(
    "    intervals, clips = get_informative_clips(video, question, top_k=1)\n"
    "    frames = extract_frames(clips[5], 4)\n"
    "    return query_mc(frames, question, choices)\n")
WRONG = program(
    "    intervals, clips = get_informative_clips(video, question, top_k=1)\n"
    "    frames = extract_frames(clips[0], 4)\n"
    "    return query_mc(frames, 'unrelated focus', choices)\n")
CORRECT_WIDER = program(
    "    intervals, clips = get_informative_clips(video, question, top_k=2)\n"
    "    frames = []\n"
    "    for clip in clips:\n"
    "        frames.extend(extract_frames(clip, 4))\n"
    "    return query_mc(frames, question, choices)\n")
NATIVE_ONLY = ("<planning>\nThe VideoLLM can answer directly.\n</planning>\n<code>\n"
               "def execute_command(video, question):\n    return query_native(video, question, choices)\n</code>")

FIRST_PROGRAM = {"q-sky": CORRECT, "q-word": CORRECT, "q-balls": CRASH, "q-flash": WRONG}
NATIVE_REFINE = {"q-sky": CORRECT, "q-word": CORRECT_WIDER, "q-balls": NATIVE_ONLY, "q-flash": CORRECT_WIDER}


def make_records(root: Path) -> list[QARecord]:
    video_dir = root / "videos"
    video_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for qid, (question, truth, _, _) in QUESTIONS.items():
        video = video_dir / f"{qid}.mp4"
        video.write_bytes(b"not decoded by the fake modules")
        records.append(QARecord(id=qid, video=str(video), question=question, choices=list(CHOICES),
                                answer=truth, duration=600.0, source="scenario"))
    return records


def write_qa_jsonl(root: Path) -> Path:
    path = root / "qa.jsonl"
    path.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in make_records(root)))
    return path


# ------------------------------------------------------------------------- fake modules

def _by_question(question: str) -> tuple[str, str, float] | None:
    for qid, (text, truth, _native, conf) in QUESTIONS.items():
        if text == question:
            return qid, truth, conf
    return None


def query_native(video: str, question: str, choices: list[str]) -> dict[str, Any]:
    for text, _, answer, conf in QUESTIONS.values():
        if text == question:
            return {"answer": answer, "confidence": conf, "raw_output": answer, "metadata": {"mode": "native"}}
    return {"answer": "A", "confidence": 0.25, "raw_output": "A", "metadata": {"mode": "native"}}


def get_informative_clips(video: str, query: str, top_k: int = 3, total_duration: float | None = None):
    folder = os.path.dirname(video)
    intervals = [(10.0 * i, 10.0 * i + 10.0) for i in range(top_k)]
    return intervals, [os.path.join(folder, f"clip{i}.mp4") for i in range(top_k)]


def accept_video(video: str) -> None:
    """The scenario's videos are placeholders the fake modules never decode: accept them all."""


def clip_roots(video: str) -> list[str]:
    """The fake clips live next to the video, so programs may name files in its folder."""
    return [os.path.dirname(os.path.abspath(video))]


def extract_frames(video: str, num_frames: int = 8) -> list[Frame]:
    # Frame handles (never decoded): the sandbox passes frames to frame parameters only as such.
    return [Frame(video, float(i), float(i)) for i in range(num_frames)]


def query_mc(frames: list[Any], question: str, choices: list[str]) -> dict[str, Any]:
    hit = _by_question(question)
    if hit is None:
        return {"answer": "A", "confidence": 0.4, "raw_output": "A", "metadata": {"mode": "mc"}}
    return {"answer": hit[1], "confidence": 0.9, "raw_output": hit[1],
            "metadata": {"mode": "mc", "frames": len(frames)}}


def make_result(answer: str, confidence: float = 1.0, raw_output: str = "", **metadata: Any) -> dict[str, Any]:
    return {"answer": answer, "confidence": confidence, "raw_output": raw_output, "metadata": metadata}


FAKE_MODULES = {"query_native": query_native, "get_informative_clips": get_informative_clips,
                "extract_frames": extract_frames, "query_mc": query_mc, "make_result": make_result}


# ------------------------------------------------------------------------- scripted teacher

def teacher_reply(request: dict[str, Any]) -> str:
    """What the scripted teacher answers to one chat request (by the student prompt it carries)."""
    from data_synthesis.teacher_prompts import StudentPrompts

    prompt = request["messages"][-1]["content"]
    for qid, (question, truth, _, _) in QUESTIONS.items():
        if question not in prompt:
            continue
        record = QARecord(id=qid, video="v", question=question, choices=list(CHOICES), answer=truth)
        if prompt == StudentPrompts.adaptive(record):
            return FIRST_PROGRAM[qid]
        if prompt == StudentPrompts.native_refine(record):
            return NATIVE_REFINE[qid]
        if "IndexError" in prompt:
            return CORRECT  # bug fix
        if "unrelated focus" in prompt:
            return CORRECT  # program refinement of the wrong program
        return WRONG  # any other refinement stays wrong (so it is rejected)
    raise AssertionError(f"scripted teacher got an unknown prompt: {prompt[:200]!r}")


class FakeChatClient:
    """Duck-types ``openai.OpenAI`` for ``chat.completions.create``; counts calls."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.chat = SimpleNamespace(completions=SimpleNamespace(create=self._create))

    def _create(self, **request: Any) -> Any:
        self.calls.append(request)
        text = teacher_reply(request)
        data = {"id": "fake", "model": request["model"], "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 2000, "completion_tokens": 400,
                      "completion_tokens_details": {"reasoning_tokens": 100}}}
        return SimpleNamespace(model_dump=lambda: data)
