"""The synthetic benchmark: determinism, real-format round trips, pixels vs boxes, motion vs windows, difficulty."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import av
import numpy as np
import pytest

from bridge_stg.annotations import load_annotations
from bridge_stg.data import synthetic
from bridge_stg.data.synthetic import (
    COLOURS_RGB,
    DIRECTIONS,
    SyntheticConfig,
    add_synth_arguments,
    annotation_paths,
    generate_benchmark,
    generate_split,
    label_map,
    load_split,
    make_scene,
    matches_query,
    render_scene,
    run_synth,
    to_hcstvg_record,
    to_vidstg_record,
)
from bridge_stg.data.synthetic import write as synthetic_write
from bridge_stg.ops.boxes import paired_box_iou
from bridge_stg.ops.segments import segment_iou
from bridge_stg.structures import SentenceRecord

CFG = SyntheticConfig()
SMALL = {"train": 3, "test": 4}
N_SCENES = 50
_AXIS_SIGN = {"left": (0, -1), "right": (0, 1), "up": (1, -1), "down": (1, 1)}


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> tuple[Path, dict[str, list[SentenceRecord]]]:
    out = tmp_path_factory.mktemp("synth")
    return out, generate_benchmark(CFG, out, SMALL)


@pytest.fixture(scope="module")
def scenes() -> list[synthetic.Scene]:
    return [make_scene(CFG, "test", i) for i in range(N_SCENES)]


def assert_same_records(got: list[SentenceRecord], want: list[SentenceRecord]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        for f in dataclasses.fields(SentenceRecord):
            a, b = getattr(g, f.name), getattr(w, f.name)
            if isinstance(a, np.ndarray):
                assert a.dtype == b.dtype and np.array_equal(a, b), (g.sentence_id, f.name)
            else:
                assert a == b and type(a) is type(b), (g.sentence_id, f.name, a, b)


def decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def moves_towards(boxes_xyxy: np.ndarray, direction: str) -> np.ndarray:
    """Per frame f >= 1: the box centre moved in ``direction`` (and not across it) since frame f - 1."""
    step = np.diff((boxes_xyxy[:, :2] + boxes_xyxy[:, 2:]) / 2, axis=0)
    axis, sign = _AXIS_SIGN[direction]
    return (sign * step[:, axis] > 0) & (step[:, 1 - axis] == 0)


# ------------------------------------------------------------------------------------------- determinism, files


def test_same_seed_gives_identical_records_files_and_frames(bench, tmp_path):
    out, records = bench
    again = generate_benchmark(CFG, tmp_path, SMALL)
    for split in SMALL:
        assert_same_records(again[split], records[split])
        for key in ("vidstg", "hcstvg"):
            assert annotation_paths(tmp_path, split)[key].read_bytes() == annotation_paths(out, split)[key].read_bytes()
    name = records["test"][0].video_path
    # The mp4 bytes are identical almost always, but not always: under full-suite load an encode of the same frames
    # has come out different (seen 1 in ~6 suite runs; not reproduced alone). The annotations, which decide every
    # metric, are compared exactly above; the videos must decode to the same picture up to encoder noise.
    again_frames, frames = decode(tmp_path / "videos" / name), decode(out / "videos" / name)
    assert again_frames.shape == frames.shape
    assert np.abs(again_frames.astype(np.int16) - frames).mean() < 1.0


def test_other_seed_or_split_gives_other_videos(bench, tmp_path):
    _, records = bench
    other = generate_split(dataclasses.replace(CFG, seed=1), "test", tmp_path, 2)
    assert not np.array_equal(other[0].boxes_xyxy_px, records["test"][0].boxes_xyxy_px)
    assert not np.array_equal(records["train"][0].boxes_xyxy_px, records["test"][0].boxes_xyxy_px)
    frame = decode(tmp_path / "videos" / other[0].video_path)[0]
    assert not np.array_equal(frame, decode(bench[0] / "videos" / records["test"][0].video_path)[0])


def test_a_split_is_the_prefix_of_a_longer_one(bench, tmp_path):
    _, records = bench
    assert_same_records(generate_split(CFG, "test", tmp_path, 2), records["test"][:2])


def test_records_follow_the_contract(bench):
    out, records = bench
    for split, recs in records.items():
        assert [r.sentence_id for r in recs] == list(range(SMALL[split]))
        for r in recs:
            assert r.dataset == "synthetic" and r.sentence_type is None and r.annotation_frame_base == 0
            assert r.video_path == f"{split}/{r.video_id}.mp4" and (out / "videos" / r.video_path).is_file()
            assert r.segment == (0, 100) and r.frame_count == 100 and r.fps == 5.0
            assert np.array_equal(r.box_frame_ids, np.arange(100))
            b = r.boxes_xyxy_px
            assert (b[:, :2] >= 0).all() and (b[:, 2] <= r.width).all() and (b[:, 3] <= r.height).all()
            assert (b[:, 2:] > b[:, :2]).all()


def test_both_formats_load_back_as_the_records(bench):
    out, records = bench
    for split, recs in records.items():
        paths = annotation_paths(out, split)
        vidstg, _ = load_annotations(paths["vidstg"], "vidstg", vidor_dir=paths["vidor_dir"])
        assert_same_records(vidstg, [to_vidstg_record(r) for r in recs])
        hcstvg, _ = load_annotations(paths["hcstvg"], "hcstvg_v1")
        assert_same_records(hcstvg, [to_hcstvg_record(r) for r in recs])
        for h, r in zip(hcstvg, recs, strict=True):
            assert h.tube == r.tube and np.array_equal(h.boxes_xyxy_px, r.boxes_xyxy_px[r.tube[0]:r.tube[1]])
        assert_same_records(load_split(out, split), recs)


def test_up_to_date_benchmark_is_not_regenerated(bench, monkeypatch):
    out, records = bench
    calls = []
    monkeypatch.setattr(synthetic_write, "encode_mp4", lambda *a, **k: calls.append(a))
    again = generate_benchmark(CFG, out, SMALL)
    assert calls == []
    for split in SMALL:
        assert_same_records(again[split], records[split])
    generate_benchmark(CFG, out, SMALL, overwrite=True)
    assert len(calls) == sum(SMALL.values())


def test_hcstvg_needs_20_second_clips(tmp_path):
    cfg = SyntheticConfig(seconds=10.0, num_train=1, num_val=0, num_test=0)
    records = generate_benchmark(cfg, tmp_path)
    assert records["train"][0].frame_count == 50 and records["val"] == []
    assert not annotation_paths(tmp_path, "train")["hcstvg"].exists()
    assert annotation_paths(tmp_path, "train")["vidstg"].exists()


def test_bad_config_is_refused():
    for bad in ({"width_px": 111}, {"window_fraction": (0.3, 0.6)}, {"colours": ("red", "pink")},
                {"speed_px_per_s": (2.0, 10.0)}, {"size_px": (12,)}, {"objects": (0, 2)}):
        with pytest.raises(ValueError, match="SyntheticConfig"):
            SyntheticConfig(**bad)


def test_cli_generates_and_rejects_bad_options(tmp_path, capsys):
    parser = add_synth_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--out", str(tmp_path), "--train", "1", "--val", "0", "--test", "1", "--seed", "3"])
    assert run_synth(args) == 0
    assert (tmp_path / "benchmark.json").is_file() and (tmp_path / "videos/test/syn_test_00000.mp4").is_file()
    assert run_synth(parser.parse_args(["--out", str(tmp_path), "--width", "111"])) == 2
    assert "even" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ pixels


def test_decoded_video_shows_the_target_inside_its_box(bench):
    out, records = bench
    for index, rec in enumerate(records["test"]):
        frames = decode(out / "videos" / rec.video_path)
        assert frames.shape == (100, 112, 112, 3)
        scene = make_scene(CFG, "test", index)
        rendered = render_scene(scene)
        assert np.abs(frames.astype(np.int16) - rendered).mean() < 3.0
        visible = (label_map(scene) == scene.target_id).sum(axis=(1, 2))
        colour = np.array(COLOURS_RGB[scene.objects[scene.target_id].attributes.colour])
        for f in (0, rec.tube[0], (rec.tube[0] + rec.tube[1]) // 2, rec.tube[1] - 1, 99):
            x1, y1, x2, y2 = rec.boxes_xyxy_px[f].astype(int)
            inside = frames[f, y1:y2, x1:x2].astype(np.int16)
            near = (np.abs(inside - colour).max(axis=-1) <= 48).sum()
            assert near >= 0.7 * visible[f] > 0, (rec.video_id, f)


def test_decord_sees_every_frame(bench):
    decord = pytest.importorskip("decord")
    out, records = bench
    reader = decord.VideoReader(str(out / "videos" / records["train"][0].video_path))
    assert len(reader) == 100 and reader.get_avg_fps() == pytest.approx(5.0)


def test_gt_boxes_are_the_tight_boxes_of_the_drawn_target(scenes):
    for scene in scenes[:10]:
        alone = dataclasses.replace(scene, objects=(scene.objects[scene.target_id],), target_id=0)
        drawn = (render_scene(alone) != scene.background_rgb).any(axis=-1)
        rows, cols = drawn.any(axis=2), drawn.any(axis=1)
        tight = np.stack([cols.argmax(1), rows.argmax(1), 112 - cols[:, ::-1].argmax(1),
                          112 - rows[:, ::-1].argmax(1)], axis=1)
        assert np.array_equal(tight, scene.objects[scene.target_id].boxes_xyxy_px)


# ---------------------------------------------------------------------------------------------- semantics


def test_target_moves_the_stated_way_exactly_in_its_window(scenes):
    for scene in scenes:
        boxes = scene.objects[scene.target_id].boxes_xyxy_px
        in_window = np.zeros(100, dtype=bool)
        in_window[scene.window[0]:scene.window[1]] = True
        assert np.array_equal(moves_towards(boxes, scene.direction), in_window[1:]), scene.video_id
        assert scene.direction in scene.query


def test_phases_describe_the_boxes(scenes):
    for scene in scenes[:10]:
        for obj in scene.objects:
            assert obj.phases[0].start_frame == 0 and obj.phases[-1].end_frame == 100
            for phase in obj.phases:
                frames = np.arange(max(phase.start_frame, 1), phase.end_frame)
                if phase.direction == "still":
                    assert (np.diff(obj.boxes_xyxy_px, axis=0)[frames - 1] == 0).all()
                else:
                    assert moves_towards(obj.boxes_xyxy_px, phase.direction)[frames - 1].all()


def test_windows_are_short_and_the_query_is_unambiguous(scenes):
    lo, hi = CFG.window_frames
    assert (lo, hi) == (10, 30)
    for scene in scenes:
        assert lo <= scene.window[1] - scene.window[0] <= hi
        target = scene.objects[scene.target_id].attributes
        assert f"{target.colour} {target.shape}" in scene.query
        assert (target.size in scene.query.split()) == scene.mentions_size
        others = [o for i, o in enumerate(scene.objects) if i != scene.target_id]
        assert not any(matches_query(o.attributes, target, scene.mentions_size) for o in others)


def test_distractors_defeat_single_cue_shortcuts(scenes):
    for scene in scenes:
        target = scene.objects[scene.target_id].attributes
        others = [o for i, o in enumerate(scene.objects) if i != scene.target_id]
        assert all(o.attributes.colour == target.colour or o.attributes.shape == target.shape for o in others)
        same_way = [p for o in others for p in o.phases if p.direction == scene.direction]
        start, end = scene.window
        assert any(p.end_frame <= start or p.start_frame >= end for p in same_way), scene.video_id
        assert any(p.start_frame < end and p.end_frame > start for p in same_way), scene.video_id
    assert {s.direction for s in scenes} == set(DIRECTIONS)


def test_trivial_baseline_scores_low(scenes):
    """Whole clip + the mean box centred in the frame: the benchmark must not reward it."""
    tubes = np.array([s.window for s in scenes])
    tiou = segment_iou(tubes[:, 0], tubes[:, 1], 0, 100)
    assert tiou.mean() < 0.35
    targets = [s.objects[s.target_id].boxes_xyxy_px for s in scenes]
    wh = np.concatenate([b[:, 2:] - b[:, :2] for b in targets]).mean(axis=0)
    centred = np.concatenate([56 - wh / 2, 56 + wh / 2])
    viou = [paired_box_iou(b[s.window[0]:s.window[1]], centred).sum() / 100 for s, b in zip(scenes, targets)]
    assert np.mean(viou) < 0.05
