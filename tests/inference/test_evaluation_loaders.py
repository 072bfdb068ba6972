"""Benchmark loaders on small files written in each benchmark's exact published format and quirks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from inference.evaluation.benchmarks import load_benchmark
from inference.evaluation.benchmarks.lvbench import split_question_options
from inference.qa_sources import load_qa_records
from inference.subtitles import load_subtitles

ROOT = Path(__file__).resolve().parents[2]


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not a real video")  # loaders only check that the file exists
    return path


def by_id(data):
    return {r.id: r for r in data.records}


# ------------------------------------------------------------------------------ LVBench

def lvbench_line(key, qas, **extra):
    return json.dumps({"key": key, "type": "cartoon", "video_info": {"duration_minutes": 61.5, "fps": 25.0,
                       "resolution": {"width": 640, "height": 360}}, "qa": qas, **extra})


def test_lvbench_options_in_text_uid_types_multi_type_and_video_map(tmp_path):
    root = tmp_path / "LVBench"
    lines = [
        lvbench_line("4Pm8-K4ZJhg", [
            {"uid": 1, "question": "What year appears in the opening caption of the video?\n(A) 1636\n(B) 1366\n"
                                   "(C) 1363\n(D) 1633", "answer": "A", "question_type": ["key information retrieval"],
             "time_reference": "00:15-00:19"},
            {"uid": "2", "question": "Why does the man (the one in red) leave? (A) he is late (B) it rains "
                                     "(C) a call (D) none", "answer": "C",
             "question_type": ["reasoning", "event understanding"], "time_reference": "01:00-01:10"},
            {"uid": 3, "question": "No options here?", "answer": "B", "question_type": ["reasoning"]},
            {"uid": 4, "question": "Which?\n(A) x\n(B) y", "answer": "D", "question_type": ["reasoning"]},
        ]),
        lvbench_line("notdownloaded", [{"uid": 5, "question": "Q?\n(A) a\n(B) b", "answer": "A",
                                        "question_type": ["summarization"]}]),
        "",
    ]
    (root / "data").mkdir(parents=True)
    (root / "data" / "video_info.meta.jsonl").write_text("\n".join(lines))
    # video2dataset names the file by its own counter, not by the key: a key -> file map resolves it
    video = touch(root / "videos" / "00000" / "00000000.mp4")
    (root / "keys.json").write_text(json.dumps({"4Pm8-K4ZJhg": "videos/00000/00000000.mp4"}))
    data = load_benchmark("lvbench", root, video_map=str(root / "keys.json"))
    records = by_id(data)
    assert sorted(records) == ["lvbench-1", "lvbench-2"]
    r1 = records["lvbench-1"]
    assert r1.question == "What year appears in the opening caption of the video?"
    assert r1.choices == ["1636", "1366", "1363", "1633"] and r1.answer == "A"
    assert Path(r1.video) == video.resolve() or Path(r1.video).resolve() == video.resolve()
    assert r1.duration == pytest.approx(61.5 * 60)
    # options inline after the question; a parenthesised word in the question is not an option
    r2 = records["lvbench-2"]
    assert r2.question == "Why does the man (the one in red) leave?"
    assert r2.choices == ["he is late", "it rains", "a call", "none"] and r2.answer == "C"
    assert r2.meta["question_type"] == ["reasoning", "event understanding"]
    reasons = {i.id: i.reason for i in data.skipped}
    assert "options" in reasons["lvbench-3"] and "video" in reasons["lvbench-5"]
    assert [i.id for i in data.unscorable] == ["lvbench-4"]  # answer D among two options


def test_lvbench_finds_video2dataset_sidecars_without_a_map(tmp_path):
    root = tmp_path
    (root / "video_info.meta.jsonl").write_text(lvbench_line("abcDEF12345", [
        {"uid": 7, "question": "Q?\n(A) a\n(B) b\n(C) c\n(D) d", "answer": "B", "question_type": ["reasoning"]}]))
    mp4 = touch(root / "videos" / "00000" / "00000003.mp4")
    (root / "videos" / "00000" / "00000003.json").write_text(json.dumps(
        {"url": "https://www.youtube.com/watch?v=abcDEF12345", "key": "00000003", "status": "success"}))
    data = load_benchmark("lvbench", root)
    assert [Path(r.video).resolve() for r in data.records] == [mp4.resolve()]


def test_split_question_options_needs_a_b_sequence():
    assert split_question_options("Q (B) first? (A) x (B) y") == ("Q (B) first?", ["x", "y"])
    assert split_question_options("Only (A) one") is None


# ------------------------------------------------------------------------------ Video-MME

def write_videomme(root: Path, rows: list[dict]) -> None:
    import pandas as pd

    (root / "videomme").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(root / "videomme" / "test-00000-of-00001.parquet")


def videomme_row(qid, video_id, duration, options, answer, **kw):
    row = {"video_id": qid.split("-")[0], "duration": duration, "domain": "Knowledge",
           "sub_category": "Humanity & History", "url": f"https://www.youtube.com/watch?v={video_id}",
           "videoID": video_id, "question_id": qid, "task_type": "Counting Problem",
           "question": "How many people appear?", "options": options, "answer": answer}
    row.update(kw)
    return row


def test_videomme_long_subset_by_label_strips_letters_and_subtitles(tmp_path):
    root = tmp_path / "Video-MME"
    write_videomme(root, [
        videomme_row("601-1", "longA", "long", ["A. 2.", "B. 3.", "C. 4.", "D. 5."], "C", domain="Sports Competition"),
        videomme_row("601-2", "longA", "long", ["A. red", "B. blue", "C. green", "D. A. B. both"], "D",
                     task_type="OCR Problems"),
        videomme_row("001-1", "shortB", "short", ["A. x", "B. y", "C. z", "D. w"], "A"),
        videomme_row("602-1", "longMissing", "long", ["A. x", "B. y", "C. z", "D. w"], "B"),
    ])
    touch(root / "data" / "longA.mp4")
    touch(root / "data" / "shortB.MP4")
    (root / "subtitle").mkdir()
    srt = root / "subtitle" / "longA.srt"
    srt.write_text('1\n00:00:01,000 --> 00:00:04,000\n<font color="white" size=".72c">Hello there</font>\n\n'
                   '2\n00:00:02,500 --> 00:00:05,000\n<font color="white" size=".72c">overlapping &amp; cue</font>\n')
    data = load_benchmark("videomme", root)
    records = by_id(data)
    assert sorted(records) == ["videomme-601-1", "videomme-601-2"]
    assert records["videomme-601-1"].choices == ["2.", "3.", "4.", "5."]
    assert records["videomme-601-2"].choices == ["red", "blue", "green", "A. B. both"]
    assert records["videomme-601-1"].subtitles == str(srt)
    assert records["videomme-601-1"].meta["duration_label"] == "long"
    assert data.settings["subset_rule"] == "duration label == 'long'"
    assert [i.id for i in data.skipped] == ["videomme-602-1"]
    cues = load_subtitles(srt)
    assert [c.text for c in cues] == ["Hello there", "overlapping & cue"] and cues[1].start < cues[0].end
    # all durations; the short video named .MP4 is found, and has no subtitle file (not an error)
    everything = by_id(load_benchmark("videomme", root, subset="all", require_video=False))
    assert records.keys() < everything.keys() and everything["videomme-001-1"].subtitles is None


def test_videomme_duration_rule_probes_videos(tmp_path, synthetic_video):
    root = tmp_path
    write_videomme(root, [videomme_row("700-1", "vid", "medium", ["A. a", "B. b", "C. c", "D. d"], "A")])
    (root / "data").mkdir()
    (root / "data" / "vid.mp4").symlink_to(synthetic_video.video_path)
    assert [r.id for r in load_benchmark("videomme", root, min_duration_s=30).records] == ["videomme-700-1"]
    data = load_benchmark("videomme", root, min_duration_s=600)
    assert data.records == [] and "probed video duration >= 600 s" == data.settings["subset_rule"]


# ------------------------------------------------------------------------------ LongVideoBench

def lvb_item(i, **kw):
    item = {"video_id": f"vid{i}", "question": f"Question {i}?", "question_wo_referring_query": "q",
            "candidates": ["red", "green", "blue", "black", "white"], "correct_choice": 2, "position": [1],
            "topic_category": "NP-News-Programs", "question_category": "T3E", "level": "L2-Relation",
            "id": f"vid{i}_0", "video_path": f"vid{i}.mp4", "subtitle_path": f"vid{i}_en.json",
            "duration_group": 600, "starting_timestamp_for_subtitles": 0, "duration": 450.5, "view_count": 1}
    item.update(kw)
    return item


def test_longvideobench_val_zero_based_choice_subtitle_schemas_and_offset(tmp_path):
    root = tmp_path
    items = [lvb_item(0), lvb_item(1, correct_choice=0, starting_timestamp_for_subtitles=100.0, duration_group=3600),
             lvb_item(2, correct_choice=7), lvb_item(3)]
    (root / "lvb_val.json").write_text(json.dumps(items))
    for i in (0, 1, 2):
        touch(root / "videos" / f"vid{i}.mp4")
    (root / "subtitles").mkdir()
    (root / "subtitles" / "vid0_en.json").write_text(json.dumps(
        [{"start": "00:00:01.500", "end": "00:00:03.000", "line": "first line"}]))
    (root / "subtitles" / "vid1_en.json").write_text(json.dumps(
        [{"timestamp": [101.0, 104.5], "text": "whisper style"}, {"timestamp": [110.0, None], "text": "open end"}]))
    data = load_benchmark("longvideobench", root)
    records = by_id(data)
    assert records["longvideobench-vid0_0"].answer == "C" and records["longvideobench-vid1_0"].answer == "A"
    assert len(records["longvideobench-vid0_0"].choices) == 5
    assert records["longvideobench-vid1_0"].meta["subtitle_offset_s"] == 100.0
    assert [i.id for i in data.unscorable] == ["longvideobench-vid2_0"]
    assert [i.id for i in data.skipped] == ["longvideobench-vid3_0"]  # no video
    first = load_subtitles(records["longvideobench-vid0_0"].subtitles)
    assert [(c.start, c.end, c.text) for c in first] == [(1.5, 3.0, "first line")]
    shifted = load_subtitles(records["longvideobench-vid1_0"].subtitles, offset_s=100.0, duration=450.5)
    assert [(c.start, c.end, c.text) for c in shifted][0] == (1.0, 4.5, "whisper style")
    assert shifted[1].start == 10.0 and shifted[1].end > shifted[1].start


def test_longvideobench_test_file_has_no_answers(tmp_path):
    item = lvb_item(0)
    del item["correct_choice"]
    (tmp_path / "lvb_test_wo_gt.json").write_text(json.dumps([item]))
    data = load_benchmark("longvideobench", tmp_path, "test", require_video=False)
    assert not data.labelled and data.records[0].answer is None and not data.unscorable


# ------------------------------------------------------------------------------ MLVU

def test_mlvu_dev_text_answers_duplicates_generation_tasks_unscorable(tmp_path):
    root = tmp_path / "MLVU"
    (root / "json").mkdir(parents=True)
    (root / "json" / "1_plotQA.json").write_text(json.dumps([
        {"video": "movie101_66.mp4", "duration": 246, "question": "What color is the main male character?",
         "candidates": ["Yellow", "Red", "Green", "Blue"], "answer": "Yellow", "question_type": "plotQA"},
        {"video": "movie101_66.mp4", "duration": 246, "question": "Duplicate candidates?",
         "candidates": ["Red", "Blue", "Red", "Green"], "answer": "Red", "question_type": "plotQA"},
        {"video": "movie101_66.mp4", "duration": 246, "question": "Answer not a candidate?",
         "candidates": ["Red", "Blue"], "answer": "Purple", "question_type": "plotQA"},
    ]))
    (root / "json" / "2_needle.json").write_text(json.dumps([
        {"video": "needle_1.mp4", "duration": 500, "question": "Q?", "candidates": ["a", "b", "c", "d"],
         "answer": "d", "question_type": "findNeedle"}]))
    (root / "json" / "9_summary.json").write_text(json.dumps([
        {"video": "217.mp4", "duration": 480.0, "question": "Please summarize this video.", "answer": "The video ...",
         "question_type": "summary"}]))
    touch(root / "video" / "1_plotQA" / "movie101_66.mp4")
    touch(root / "video" / "2_needle" / "needle_1.mp4")
    data = load_benchmark("mlvu", root, "dev")
    records = by_id(data)
    assert [r.answer for r in records.values()] == ["A", "C", "D"]  # duplicates: the last match, as the scorer
    assert {r.meta["task"] for r in records.values()} == {"plotQA", "needle"}
    assert [i.reason for i in data.unscorable] == ["answer text is not among the candidates"]
    assert len(data.skipped) == 1 and "generation task" in data.skipped[0].reason
    assert data.settings["records_with_duplicate_answer_candidates"] == 1


def test_mlvu_test_six_options_e_and_f_scorable(tmp_path):
    root = tmp_path
    (root / "test-ground-truth").mkdir()
    (root / "test-ground-truth" / "test_mcq_gt.json").write_text(json.dumps([
        {"question_id": "AR_0", "question_type": "anomaly_reco", "video": "test_ar_0.mp4", "duration": 300,
         "question": "Does this surveillance footage contain any anomalies?",
         "candidates": ["Shoplifting", "Robbery", "Arson", "Fighting", "Normal", "Vandalism"], "answer": "Vandalism"},
        {"question_id": "TR_3", "question_type": "topic_reasoning", "video": "test_tr_3.mp4", "duration": 400,
         "question": "What is the video about?", "candidates": ["a", "b", "c", "d", "e", "f"], "answer": "e"}]))
    touch(root / "video" / "test_ar_0.mp4")
    touch(root / "video" / "test_tr_3.mp4")
    records = by_id(load_benchmark("mlvu", root))
    assert records["mlvu-test-AR_0"].answer == "F" and records["mlvu-test-TR_3"].answer == "E"
    from inference.scoring import is_correct

    assert is_correct("F", records["mlvu-test-AR_0"].answer, len(records["mlvu-test-AR_0"].choices))


# ------------------------------------------------------------------------------ CG-Bench

def cg_item(qid, uid, right="E", n=7):
    return {"qid": qid, "video_uid": uid, "question": f"Q{qid}?", "answer": "x",
            "choices": [f"c{i}" for i in range(n)], "right_answer": right, "clue_intervals": [[8, 11]],
            "domain": "Art & Culture" if qid % 2 else "Electonic/Social Gaming", "sub_category": "Entity Perception",
            "duration": 2741}


def test_cgbench_eight_options_and_training_overlap_guard(tmp_path):
    root = tmp_path
    mini = [cg_item(1, "vidA", "H", n=8), cg_item(2, "vidB", "B")]
    full = mini + [cg_item(3, "vidA", "C"), cg_item(4, "vidC", "A")]
    (root / "cgbench.json").write_text(json.dumps(full))
    (root / "cgbench_mini.json").write_text(json.dumps(mini))
    for uid in ("vidA", "vidB", "vidC"):
        touch(root / "cg_videos_720p" / f"{uid}.mp4")
    sft = tmp_path / "sft.jsonl"
    sft.write_text(json.dumps({"messages": [], "videos": [str(root / "cg_videos_720p" / "vidB.mp4")]}) + "\n")
    data = load_benchmark("cgbench", root, training_files=[str(sft)])
    records = by_id(data)
    assert records["cgbench-1"].answer == "H" and len(records["cgbench-1"].choices) == 8
    assert records["cgbench-1"].meta["clue_intervals"] == [[8, 11]]
    overlap = data.settings["training_overlap"]["sources"]
    assert overlap["cgbench train split (full minus mini)"]["questions_on_shared_videos"] == 1  # vidA
    assert overlap[str(sft)]["example_video_uids"] == ["vidB"]
    # synthesis reads the same loader: train = full minus mini, videos not required
    assert [r.id for r in load_qa_records("cgbench", "train", root=root)] == ["cgbench-3", "cgbench-4"]
    # every evaluation benchmark is a QA source too
    assert [r.id for r in load_qa_records("cgbench", "mini", root=root)] == ["cgbench-1", "cgbench-2"]


def test_records_command_prints_jsonl_and_reasons(tmp_path):
    (tmp_path / "cgbench_mini.json").write_text(json.dumps([cg_item(1, "vidA"), cg_item(2, "gone", "Z")]))
    touch(tmp_path / "cg_videos_720p" / "vidA.mp4")
    touch(tmp_path / "cg_videos_720p" / "gone.mp4")
    out = subprocess.run([sys.executable, "-m", "inference.evaluation", "records", "--benchmark", "cgbench",
                          "--root", str(tmp_path)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["id"] for r in lines] == ["cgbench-1"] and lines[0]["answer"] == "E"
    assert "1 unscorable" in out.stderr and "right_answer 'Z'" in out.stderr
    bad = subprocess.run([sys.executable, "-m", "inference.evaluation", "records", "--benchmark", "lvbench",
                          "--root", str(tmp_path)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert bad.returncode == 2 and "video_info.meta.jsonl" in bad.stderr


def test_subtitle_offset_reaches_the_module_runtime(tmp_path, synthetic_video, module_runtime):
    """LongVideoBench's starting_timestamp_for_subtitles: cues on the source timeline are shifted."""
    cues = load_subtitles(synthetic_video.subtitle_path)
    shifted = tmp_path / "shifted_en.json"
    shifted.write_text(json.dumps([{"timestamp": [c.start + 100.0, c.end + 100.0], "text": c.text} for c in cues]))
    runtime = module_runtime()
    video = str(synthetic_video.video_path)
    query = cues[len(cues) // 2].text
    runtime.register_subtitles(video, str(synthetic_video.subtitle_path))
    expected = runtime.get_informative_subtitles(video, query, top_k=2)
    runtime.register_subtitles(video, str(shifted), offset_s=100.0)
    assert runtime.get_informative_subtitles(video, query, top_k=2) == expected
    runtime.register_subtitles(video, str(shifted))  # without the offset every cue lies after the video
    assert runtime.get_informative_subtitles(video, query, top_k=2) != expected


# ------------------------------------------------------------------------------ real-format quirks

def test_mlvu_dev_from_the_hub_snapshot_root_with_empty_and_padded_texts(tmp_path):
    """The Hugging Face MLVU dev download nests everything under ``MLVU/`` (``MLVU/json``,
    ``MLVU/video/<n>_<task>``); real dev items have empty answers / options / questions and
    answers with a trailing space (3_ego)."""
    base = tmp_path / "MLVU"
    (base / "json").mkdir(parents=True)
    (base / "json" / "3_ego.json").write_text(json.dumps([
        {"video": "ego_35.mp4", "duration": 408.63333328750014, "question": "What did I put in the orange trashcan ",
         "candidates": ["a lemon green sponge", "near the window ", "a red apple", "a yellow banana"],
         "answer": "near the window ", "question_type": "ego"},
        {"video": "ego_26.mp4", "duration": 375.36, "question": "Where was the drill before I picked it up?",
         "candidates": ["In the garage", "In the toolbox", "", "On the shelf"], "answer": "", "question_type": "ego"},
    ], indent=4))
    (base / "json" / "7_topic_reasoning.json").write_text(json.dumps([
        {"video": "movie101_89.mp4", "duration": 677, "question": "", "candidates": ["", "", "", ""], "answer": "",
         "question_type": "topic_reasoning"},
        {"video": "AWA-6.mp4", "duration": 450.0, "question": "What is shown?",
         "candidates": ["", "There is an archery scene", "There is no archery scene", ""],
         "answer": "There is an archery scene", "question_type": "topic_reasoning"},
    ], indent=4))
    touch(base / "video" / "3_ego" / "ego_35.mp4")
    touch(base / "video" / "3_ego" / "ego_26.mp4")
    touch(base / "video" / "7_topic_reasoning" / "movie101_89.mp4")
    touch(base / "video" / "7_topic_reasoning" / "AWA-6.mp4")
    data = load_benchmark("mlvu", tmp_path, "dev")  # the snapshot root, above MLVU/
    records = by_id(data)
    assert sorted(records) == ["mlvu-dev-3_ego-0", "mlvu-dev-7_topic_reasoning-1"]
    ego = records["mlvu-dev-3_ego-0"]
    assert ego.answer == "B" and ego.question == "What did I put in the orange trashcan"
    assert Path(ego.video).parent.name == "3_ego"
    assert records["mlvu-dev-7_topic_reasoning-1"].answer == "B"  # empty options keep their positions
    assert records["mlvu-dev-7_topic_reasoning-1"].choices[0] == ""
    assert {i.id: i.reason for i in data.unscorable} == {"mlvu-dev-3_ego-1": "answer text is empty"}
    assert {i.id: i.reason for i in data.skipped} == {"mlvu-dev-7_topic_reasoning-0": "empty question text"}
    assert data.settings["records_with_empty_candidates"] == 1


def test_mlvu_test_videos_in_a_nested_folder_are_found_and_reported(tmp_path):
    """MLVU_Test ships its videos as ``MLVU_Test/test_video.tar.gz.part-*``; wherever the archive
    unpacks under the root, a video is found by name (and the count is reported)."""
    (tmp_path / "test-ground-truth").mkdir()
    (tmp_path / "test-ground-truth" / "test_mcq_gt.json").write_text(json.dumps([
        {"video": "test_surveil_27.mp4", "duration": 297.57, "question": "Is there anything unusual?",
         "candidates": ["Fighting", "Shoplifting", "Arrest", "Normal", "Shooting", "Vandalism"],
         "answer": "Shooting", "question_type": "anomaly_reco", "question_id": "AR_0"},
        {"video": "test_missing.mp4", "duration": 100, "question": "Q?", "candidates": ["a", "b"], "answer": "a",
         "question_type": "count", "question_id": "AC_1"}]))
    video = touch(tmp_path / "MLVU_Test" / "test_video" / "anomaly_reco" / "test_surveil_27.mp4")
    data = load_benchmark("mlvu", tmp_path)
    records = by_id(data)
    assert list(records) == ["mlvu-test-AR_0"] and records["mlvu-test-AR_0"].answer == "E"
    assert Path(records["mlvu-test-AR_0"].video) == video
    assert data.settings["videos_found_by_search"] == 1
    assert [i.id for i in data.skipped] == ["mlvu-test-AC_1"]


def lvb_parquet_row(i, options, correct, **kw):
    row = {"video_id": f"vid{i}", "question": f"Question {i}?", "question_wo_referring_query": "q",
           "correct_choice": correct, "position": [1], "topic_category": "NP-News-Programs",
           "question_category": "T3E", "level": "L2-Relation", "id": f"vid{i}_0", "video_path": f"vid{i}.mp4",
           "subtitle_path": f"vid{i}_en.json", "duration_group": 600, "starting_timestamp_for_subtitles": 0.0,
           "duration": 450.5, "view_count": 1}
    row.update({f"option{k}": options[k] if k < len(options) else "N/A" for k in range(5)})
    row.update(kw)
    return row


def test_longvideobench_hub_parquet_options_padded_with_na_and_numpy_ints(tmp_path):
    """The Hub download's ``validation-00000-of-00001.parquet`` (what lmms-eval reads) has
    ``option0``..``option4`` padded with "N/A" and int64 ``correct_choice``; read when
    ``lvb_val.json`` is absent. A test item with a repeated option (LongVideoBench issue #9) is
    kept and counted."""
    import pandas as pd

    rows = [lvb_parquet_row(0, ["red", "green", "blue", "black"], 3),
            lvb_parquet_row(1, ["a", "b", "c", "d", "e"], 4, duration_group=3600),
            lvb_parquet_row(2, ["x", "x", "y", "z"], 0, id="@healthfood-735_0", video_id="@healthfood-735",
                            video_path="@healthfood-735.mp4", topic_category=None)]
    pd.DataFrame(rows).to_parquet(tmp_path / "validation-00000-of-00001.parquet")
    for name in ("vid0.mp4", "vid1.mp4", "@healthfood-735.mp4"):
        touch(tmp_path / "videos" / name)
    data = load_benchmark("longvideobench", tmp_path)
    records = by_id(data)
    assert records["longvideobench-vid0_0"].choices == ["red", "green", "blue", "black"]
    assert records["longvideobench-vid0_0"].answer == "D"
    assert records["longvideobench-vid1_0"].answer == "E" and len(records["longvideobench-vid1_0"].choices) == 5
    assert records["longvideobench-vid1_0"].meta["duration_group"] == 3600
    odd = records["longvideobench-@healthfood-735_0"]
    assert odd.answer == "A" and odd.meta["topic_category"] is None
    assert data.settings["records_with_repeated_options"] == 1
    assert [p.name for p in data.files] == ["validation-00000-of-00001.parquet"]


def test_longvideobench_nan_fields_and_missing_video_path_are_reported(tmp_path):
    items = [lvb_item(0, duration=None, starting_timestamp_for_subtitles=None, subtitle_path=None),
             lvb_item(1, video_path=None), lvb_item(2, correct_choice="1")]
    (tmp_path / "lvb_val.json").write_text(json.dumps(items))
    touch(tmp_path / "videos" / "vid0.mp4")
    touch(tmp_path / "videos" / "vid2.mp4")
    data = load_benchmark("longvideobench", tmp_path)
    records = by_id(data)
    r0 = records["longvideobench-vid0_0"]
    assert r0.duration is None and r0.subtitles is None and r0.meta["subtitle_offset_s"] == 0.0
    assert records["longvideobench-vid2_0"].answer == "B"  # a digit string is an index too
    assert {i.id: i.reason for i in data.skipped} == {"longvideobench-vid1_0": "item without 'video_path'"}


def test_videomme_nan_cells_flattened_video_folder_and_nested_zip_layout(tmp_path):
    """pandas reads empty parquet cells as NaN (a NaN category would never equal itself in a
    breakdown); VLMEvalKit unpacks the videos into ``video/``; a zip unpacked one level deeper
    (``data/data/<id>.mp4``) is found by search."""
    import numpy as np

    root = tmp_path
    write_videomme(root, [
        videomme_row("601-1", "vlmA", "long", ["A. 2.", "B. 3.", "C. 4.", "D. 5."], "B", sub_category=np.nan),
        videomme_row("602-1", "deepB", "long", ["A. x", "B. y", "C. z", "D. w"], "D", task_type=None),
        videomme_row("603-1", "gone", "long", ["A. x", "B. y", "C. z", "D. w"], "A"),
    ])
    touch(root / "video" / "vlmA.mp4")
    deep = touch(root / "data" / "data" / "deepB.mkv")
    (root / "subtitle").mkdir()
    (root / "subtitle" / "vlmA.srt").write_text("1\n00:00:01,000 --> 00:00:02,000\nhi\n")
    data = load_benchmark("videomme", root)
    records = by_id(data)
    assert sorted(records) == ["videomme-601-1", "videomme-602-1"]
    assert records["videomme-601-1"].meta["sub_category"] is None and records["videomme-601-1"].answer == "B"
    assert records["videomme-601-1"].subtitles.endswith("vlmA.srt")
    assert Path(records["videomme-602-1"].video) == deep and records["videomme-602-1"].meta["task_type"] is None
    assert data.settings["videos_found_by_search"] == 1
    assert [i.id for i in data.skipped] == ["videomme-603-1"]


def test_lvbench_bom_crlf_answer_spellings_line_options_and_nested_videos(tmp_path):
    """A meta file saved with a BOM and CRLF line ends; answers written "(B)" / "c"; options on
    their own lines as "A. ..."; videos unpacked one level deeper (``all_videos/all_videos/``)."""
    root = tmp_path
    lines = [
        lvbench_line("keyOne", [
            {"uid": 11, "question": "What year?\r\n(A) 1636\r\n(B) 1366\r\n(C) 1363\r\n(D) 1633", "answer": "(B)",
             "question_type": ["key information retrieval"], "time_reference": "00:15-00:19"},
            {"uid": 12, "question": "Who enters first?\nA. the cat\nB. the dog\nC. the bird\nD. nobody", "answer": "c",
             "question_type": "entity recognition", "time_reference": ""},
            {"uid": 13, "question": "Which?\n(A) x\n(B) y", "answer": "Apple", "question_type": ["reasoning"]},
        ]),
    ]
    (root / "video_info.meta.jsonl").write_bytes(("\ufeff" + "\r\n".join(lines) + "\r\n").encode("utf-8"))
    mp4 = touch(root / "all_videos" / "all_videos" / "keyOne.mp4")
    data = load_benchmark("lvbench", root)
    records = by_id(data)
    assert sorted(records) == ["lvbench-11", "lvbench-12"]
    r11 = records["lvbench-11"]
    assert r11.question == "What year?" and r11.choices == ["1636", "1366", "1363", "1633"] and r11.answer == "B"
    r12 = records["lvbench-12"]
    assert r12.choices == ["the cat", "the dog", "the bird", "nobody"] and r12.answer == "C"
    assert r12.meta["question_type"] == ["entity recognition"]  # a bare string is one type
    assert Path(r11.video) == mp4 and data.settings["videos_found_by_search"] == 1
    assert [i.id for i in data.unscorable] == ["lvbench-13"]  # not a letter


def test_cgbench_bom_meta_in_run_folder_other_extension_and_repeated_choices(tmp_path):
    """``video_meta_info.json`` sits in ``run/`` in the CG-Bench repository; annotation files
    re-saved with a BOM still load (the overlap guard reads them too); a video stored as .mkv or
    one folder deeper is found; repeated choices (5 mini items) keep ``right_answer``'s letter."""
    root = tmp_path
    first = cg_item(1, "BV1rG41157TY", "C")
    first["choices"] = ["Red", "Blue", "Red", "Green", "Black"]
    del first["duration"]
    mini = [first, cg_item(2, "3ZpmN3-2-Zo", "B")]
    full = mini + [cg_item(3, "BV1rG41157TY", "A")]
    (root / "cgbench_mini.json").write_bytes(("\ufeff" + json.dumps(mini, indent=4)).encode("utf-8"))
    (root / "cgbench.json").write_bytes(("\ufeff" + json.dumps(full)).encode("utf-8"))
    (root / "run").mkdir()
    (root / "run" / "video_meta_info.json").write_text(json.dumps(
        {"BV1rG41157TY": {"duration": 1172.5380333333333, "max_frame": 35140, "fps": 29.97002997002997}}))
    mkv = touch(root / "cg_videos_720p" / "BV1rG41157TY.mkv")
    deep = touch(root / "cg_videos_720p" / "cg_videos_720p" / "3ZpmN3-2-Zo.mp4")
    data = load_benchmark("cgbench", root)
    records = by_id(data)
    assert Path(records["cgbench-1"].video) == mkv and Path(records["cgbench-2"].video) == deep
    assert records["cgbench-1"].answer == "C" and records["cgbench-1"].choices[2] == "Red"
    assert records["cgbench-1"].duration == pytest.approx(1172.538, abs=1e-3)
    overlap = data.settings["training_overlap"]["sources"]["cgbench train split (full minus mini)"]
    assert overlap["example_video_uids"] == ["BV1rG41157TY"]


def test_video_search_follows_symlinked_folders_without_looping(tmp_path):
    from inference.evaluation.benchmarks.base import VideoSearch

    disk = tmp_path / "disk"
    video = touch(disk / "nested" / "abc.webm")
    root = tmp_path / "bench"
    root.mkdir()
    (root / "linked").symlink_to(disk, target_is_directory=True)
    (disk / "loop").symlink_to(root, target_is_directory=True)  # a link back up the tree
    search = VideoSearch(root)
    assert search.find("abc.mp4").resolve() == video.resolve()  # same stem, other extension
    assert search.find("abc").resolve() == video.resolve()
    assert search.find("missing.mp4") is None
