"""``bridge-stg-data check`` end to end on tiny datasets: annotation files written by the project's writers and
generated videos, some of them missing, corrupt, damaged in the middle, shorter than annotated or at the wrong frame
rate."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from bridge_stg.annotations import write_hcstvg, write_vidstg_official
from bridge_stg.cli import data as data_cli
from bridge_stg.data.video_io import SKIP_OVERRIDE, VideoReadError, read_frames, write_video
from bridge_stg.structures import SentenceRecord

ANNOTATED_FRAMES = 24


def clip(n: int) -> np.ndarray:
    return np.repeat((10 * np.arange(n, dtype=np.uint8))[:, None, None, None], 48 * 64 * 3).reshape(n, 48, 64, 3)


def noisy_clip(n: int) -> np.ndarray:
    """Frames with noise in their bottom rows: the encoded frames, not the mp4 index, fill most of the file."""
    frames = clip(n).copy()
    frames[:, 24:] = np.random.default_rng(0).integers(0, 256, frames[:, 24:].shape, dtype=np.uint8)
    return frames


def damage_middle_third(path: Path) -> None:
    """Overwrite the middle third of the file's bytes with garbage (the mp4 index, written last, stays whole)."""
    data = bytearray(path.read_bytes())
    third = len(data) // 3
    data[third:2 * third] = np.random.default_rng(1).integers(0, 256, third, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


def hcstvg_record(sentence_id: int, video_path: str) -> SentenceRecord:
    tube = (4, 10)
    return SentenceRecord(
        sentence_id=sentence_id, dataset="hcstvg_v1", video_id=Path(video_path).stem, video_path=video_path,
        fps=ANNOTATED_FRAMES / 20, frame_count=ANNOTATED_FRAMES, width=64, height=48,
        segment=(0, ANNOTATED_FRAMES), tube=tube, query=f"the person {sentence_id} walks to the door.",
        box_frame_ids=np.arange(*tube), boxes_xyxy_px=np.tile([[1.0, 2.0, 20.0, 30.0]], (tube[1] - tube[0], 1)),
        annotation_frame_base=1, source_tube_end="inclusive")


def vidstg_record(sentence_id: int, vid: str, fps: float, sentence_type: str) -> SentenceRecord:
    return SentenceRecord(
        sentence_id=sentence_id, dataset="vidstg", video_id=vid, video_path=f"{vid}.mp4", fps=fps,
        frame_count=ANNOTATED_FRAMES, width=64, height=48, segment=(2, 20), tube=(4, 10),
        query="who walks?" if sentence_type == "interrogative" else "the adult walks.",
        sentence_type=sentence_type, target_id=1)


@pytest.fixture
def hcstvg(tmp_path: Path) -> tuple[Path, Path]:
    """train: ok / missing / corrupt videos; test: a short video and the ok one again."""
    videos = tmp_path / "videos"
    write_video(videos / "0_ok.mp4", clip(ANNOTATED_FRAMES), 24.0)
    write_video(videos / "3_short.mp4", clip(12), 24.0)
    (videos / "2_corrupt.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4000, np.uint8).tobytes())
    write_hcstvg([hcstvg_record(i, n) for i, n in enumerate(["0_ok.mp4", "1_missing.mp4", "2_corrupt.mp4"])],
                 tmp_path / "train.json")
    write_hcstvg([hcstvg_record(i, n) for i, n in enumerate(["3_short.mp4", "0_ok.mp4"])], tmp_path / "test.json")
    return tmp_path, videos


def run_json(capsys, *args: str, workers: int = 1) -> tuple[int, dict]:
    code = data_cli.main(["check", *args, "--json", "--workers", str(workers)])
    return code, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(("mode", "workers"), [("quick", 1), ("deep", 2)])
def test_hcstvg_problems_are_counted_and_listed(hcstvg, capsys, mode, workers):
    root, videos = hcstvg
    deep = ["--deep"] if mode == "deep" else []
    code, out = run_json(capsys, "--dataset", "hcstvg_v1", "--annotations", str(root / "train.json"),
                         str(root / "test.json"), "--video-dir", str(videos), *deep, workers=workers)
    assert code == 1 and out["mode"] == mode
    assert out["splits"] == {"train": {"sentences": 3, "types": {"all": 3}},
                             "test": {"sentences": 2, "types": {"all": 2}}}
    assert (out["sentences"], out["videos"], out["videos_checked"]) == (5, 4, 4)
    assert out["problem_counts"] == {"missing": 1, "unreadable": 1, "short": 1, "corrupt": 0, "fps_mismatch": 0}
    problems = out["problems"]
    assert [(p["video"], p["sentence_ids"]) for p in problems["missing"]] == [("1_missing.mp4", {"train": [1]})]
    assert [(p["video"], p["sentence_ids"]) for p in problems["unreadable"]] == [("2_corrupt.mp4", {"train": [2]})]
    short = problems["short"][0]
    assert (short["sentences"], short["sentence_ids"]) == (1, {"test": [0]})
    assert (short["video"], short["frames_needed"], short["annotated_frames"], short["decodable_frames"]) == (
        "3_short.mp4", 24, 24, 12)
    assert "3_short.mp4: frame 23 requested but the video has 12 decodable frames (annotation says 24 frames)" in (
        short["reason"])
    assert str(videos / "1_missing.mp4") in problems["missing"][0]["reason"]


def test_clean_dataset_and_limit_exit_0(hcstvg, capsys):
    root, videos = hcstvg
    write_hcstvg([hcstvg_record(0, "0_ok.mp4")], root / "clean.json")
    code, out = run_json(capsys, "--dataset", "hcstvg_v1", "--annotations", str(root / "clean.json"),
                         "--video-dir", str(videos))
    assert code == 0 and sum(out["problem_counts"].values()) == 0
    code, out = run_json(capsys, "--dataset", "hcstvg_v1", "--annotations", str(root / "train.json"),
                         "--video-dir", str(videos), "--limit", "1", "--deep")
    assert code == 0 and (out["videos"], out["videos_checked"], out["mode"]) == (3, 1, "deep")


def test_exclude_videos_and_readable_report(hcstvg, capsys):
    root, videos = hcstvg
    code = data_cli.main(["check", "--dataset", "hcstvg_v1", "--annotations", str(root / "train.json"),
                          "--video-dir", str(videos), "--exclude-videos", "1_missing.mp4", "--workers", "1"])
    text = capsys.readouterr().out
    assert code == 1
    assert "excluded 1 sentences" in text and "unreadable (corrupt or not a video): 1 videos" in text
    assert "    1 sentences of 2_corrupt.mp4: train 2\n" in text
    assert "mode: quick (each video opened and its last needed frame decoded)" in text
    assert "missing:" not in text and "result: 1 problems in 2 checked videos (quick check)" in text


def test_vidstg_types_and_fps_mismatch(tmp_path, capsys):
    videos = tmp_path / "videos"
    write_video(videos / "1001.mp4", clip(ANNOTATED_FRAMES), 24.0)
    write_video(videos / "1002.mp4", clip(ANNOTATED_FRAMES), 24.0)
    records = [vidstg_record(0, "1001", 24.0, "interrogative"), vidstg_record(1, "1001", 24.0, "declarative"),
               vidstg_record(2, "1002", 30.0, "declarative"), vidstg_record(3, "1002", 30.0, "declarative")]
    write_vidstg_official(records, tmp_path / "val_annotations.json")  # sentence 3 repeats sentence 2
    code, out = run_json(capsys, "--dataset", "vidstg", "--annotations", str(tmp_path / "val_annotations.json"),
                         "--video-dir", str(videos))
    assert code == 1
    assert out["splits"] == {"val_annotations": {"sentences": 4,
                                                 "types": {"declarative": 3, "interrogative": 1}}}
    assert out["problem_counts"] == {"missing": 0, "unreadable": 0, "short": 0, "corrupt": 0, "fps_mismatch": 1}
    mismatch = out["problems"]["fps_mismatch"][0]
    assert (mismatch["video"], mismatch["annotated_fps"], mismatch["video_fps"]) == ("1002.mp4", 30.0, 24.0)
    assert mismatch["sentence_ids"] == {"val_annotations": [2, 3]}
    [warning] = out["annotation_warnings"]
    assert (warning["split"], warning["kind"], warning["video"], warning["sentence_ids"]) == (
        "val_annotations", "duplicate", "1002", [3])
    assert "repeats sentence 2" in warning["message"]


def test_annotation_and_usage_errors_exit_2(hcstvg, capsys):
    root, videos = hcstvg
    (root / "broken.json").write_text("{not json")
    for args in (["--dataset", "hcstvg_v1", "--annotations", str(root / "broken.json")],
                 ["--dataset", "vidstg", "--annotations", str(root / "train.json")]):
        assert data_cli.main(["check", *args, "--video-dir", str(videos)]) == 2
        assert capsys.readouterr().err.startswith("bridge-stg-data: error: ")
    assert data_cli.main(["check", "--dataset", "hcstvg_v1", "--annotations", str(root / "train.json"),
                          "--video-dir", str(root / "nowhere")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert data_cli.main(["check", "--dataset", "hcstvg_v1", "--annotations", str(root / "train.json"),
                          "--video-dir", str(videos), "--workers", "0"]) == 2
    assert "--workers must be >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        data_cli.main([])
    assert info.value.code == 2


def test_deep_check_finds_a_video_damaged_in_its_middle(tmp_path, capsys):
    videos = tmp_path / "videos"
    write_video(videos / "0_ok.mp4", noisy_clip(ANNOTATED_FRAMES), 24.0)
    write_video(videos / "1_damaged.mp4", noisy_clip(ANNOTATED_FRAMES), 24.0)
    damage_middle_third(videos / "1_damaged.mp4")
    write_hcstvg([hcstvg_record(0, "0_ok.mp4"), hcstvg_record(1, "1_damaged.mp4")], tmp_path / "train.json")
    args = ["--dataset", "hcstvg_v1", "--annotations", str(tmp_path / "train.json"), "--video-dir", str(videos)]
    # the quick check decodes only the last needed frame (decord seeks to it): the damage goes unseen ...
    code, out = run_json(capsys, *args)
    assert code == 0 and out["mode"] == "quick" and sum(out["problem_counts"].values()) == 0
    # ... but the loader reads sampled frames through it and fails
    with pytest.raises(VideoReadError, match="shorter than annotated"):
        read_frames(videos / "1_damaged.mp4", range(0, ANNOTATED_FRAMES, 3), expected_frame_count=ANNOTATED_FRAMES)
    code, out = run_json(capsys, *args, "--deep")
    assert code == 1 and out["mode"] == "deep"
    assert out["problem_counts"] == {"missing": 0, "unreadable": 0, "short": 0, "corrupt": 1, "fps_mismatch": 0}
    [damaged] = out["problems"]["corrupt"]
    assert (damaged["video"], damaged["sentences"], damaged["sentence_ids"]) == ("1_damaged.mp4", 1, {"train": [1]})
    assert (damaged["frames_needed"], damaged["annotated_frames"]) == (ANNOTATED_FRAMES, ANNOTATED_FRAMES)
    assert 0 < damaged["decodable_frames"] < ANNOTATED_FRAMES
    reason = damaged["reason"]
    assert reason.startswith(f"{videos / '1_damaged.mp4'}: frame {damaged['decodable_frames']} fails to decode (PyAV")
    assert f"frames up to {ANNOTATED_FRAMES - 1} are needed" in reason and SKIP_OVERRIDE in reason
    data_cli.main(["check", *args, "--deep", "--workers", "1"])
    text = capsys.readouterr().out
    assert "damaged (a needed frame fails to decode): 1 videos" in text
    assert "    1 sentences of 1_damaged.mp4: train 1\n" in text
    assert "mode: deep (every frame from the start through the last needed one decoded)" in text
    assert "result: 1 problems in 2 checked videos (deep check)" in text


def test_problem_lists_name_every_sentence_id_in_json_and_a_few_in_text():
    need = data_cli.VideoNeed("v.mp4", 10, 10, 5.0, {"train": list(range(25)), "test": [3]})
    assert need.sentences == 26
    assert data_cli._describe_ids(need.sentence_ids) == (
        f"train {', '.join(map(str, range(20)))}, ... (+5 more); test 3")


def _crash(need: data_cli.VideoNeed) -> list:
    os._exit(1)  # what a decoder crash inside a worker looks like to the parent


def test_a_crashed_worker_names_the_way_to_find_its_video():
    needs = [data_cli.VideoNeed(f"{i}.mp4", 1, 1, 5.0) for i in range(2)]
    with pytest.raises(RuntimeError, match="a check worker process died .* rerun with --workers 1"):
        data_cli._check_in_workers(needs, _crash, 2, lambda: None)
