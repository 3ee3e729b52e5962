"""Datasets over generated videos and images: every source type, skipping, the weighted mixture."""

import dataclasses
import json

import numpy as np
import pytest
from PIL import Image

from bridge_stg.annotations.charades import read_charades_sta
from bridge_stg.annotations.load import ReadOptions
from bridge_stg.annotations.referring import read_referring_jsonl
from bridge_stg.data.dataset import GroundingDataset, MixtureDataset, SkippedSample, drop_skipped
from bridge_stg.data.frames import FrameBudget, make_even
from bridge_stg.data.video_io import VideoReadError, probe_video, write_video
from bridge_stg.ops.sampling import sample_frame_ids
from bridge_stg.structures import SentenceRecord

W, H, N, FPS = 96, 64, 50, 10.0


def moving_box_video(path, boxes):
    frames = np.zeros((N, H, W, 3), dtype=np.uint8)
    for i, (x1, y1, x2, y2) in enumerate(boxes.astype(int)):
        frames[i, y1:y2, x1:x2] = (255, 0, 0)
    write_video(path, frames, FPS)


@pytest.fixture
def tube_source(tmp_path):
    x = np.linspace(5, 60, N)
    boxes = np.stack([x, np.full(N, 10.0), x + 30, np.full(N, 40.0)], axis=1)
    moving_box_video(tmp_path / "v0.mp4", boxes)
    rec = SentenceRecord(sentence_id=7, dataset="synthetic", video_id="v0", video_path="v0.mp4", fps=FPS,
                         frame_count=N, width=W, height=H, segment=(0, N), tube=(20, 35), query="the red box",
                         box_frame_ids=np.arange(N), boxes_xyxy_px=boxes)
    return tmp_path, rec


def test_tube_sample_has_even_frames_span_and_boxes_of_the_tube(tube_source):
    root, rec = tube_source
    ds = GroundingDataset([rec], root, FrameBudget(fps=5.0, max_frames=16, max_pixels=56 * 84), source="syn")
    s = ds[0]
    assert s.task == "tube" and s.sample_id == "syn:7" and s.frames.shape == (16, 56, 84, 3)
    assert s.frame_ids.tolist() == make_even(sample_frame_ids(0, N, FPS, 5.0, 16)).tolist()
    inside = (s.frame_ids >= 20) & (s.frame_ids < 35)
    assert s.box_mask.tolist() == inside.tolist()
    # sampled frames 20..30 stand for intervals inside the tube [20, 35), frame 34 for [34, 36): half inside, so in
    assert s.frame_ids[7:12].tolist() == [20, 24, 28, 30, 34] and s.span == (7, 12)
    i = int(np.flatnonzero(inside)[0])
    x1, y1, x2, y2 = rec.boxes_xyxy_px[s.frame_ids[i]]
    np.testing.assert_allclose(s.boxes_cxcywh01[i], [(x1 + x2) / 2 / W, (y1 + y2) / 2 / H, (x2 - x1) / W,
                                                     (y2 - y1) / H], rtol=1e-6)
    assert (s.boxes_cxcywh01[~s.box_mask] == 0).all()
    # the red box is where the GT box says, after resizing
    f = s.frames[i].astype(int)
    cx, cy = s.boxes_cxcywh01[i][:2] * (84, 56)
    assert f[int(cy), int(cx), 0] > 150 and f[int(cy), int(cx), 2] < 100
    assert s.timestamps_s[1] == pytest.approx((s.frame_ids[1] - s.frame_ids[0]) / FPS)


def test_training_crops_are_seeded_per_epoch(tube_source):
    root, rec = tube_source
    budget = FrameBudget(fps=10.0, max_frames=8, crop_prob=1.0, crop_min_fraction=0.3)
    ds = GroundingDataset([rec], root, budget, source="syn", train=True, seed=1)
    a, b = ds[0].frame_ids, ds[0].frame_ids
    ds.set_epoch(1)
    c = ds[0].frame_ids
    assert a.tolist() == b.tolist() and a.tolist() != c.tolist()


def test_missing_video_raises_or_is_skipped_on_request(tube_source):
    root, rec = tube_source
    from dataclasses import replace
    bad = replace(rec, video_path="gone.mp4")
    with pytest.raises(VideoReadError, match="gone.mp4"):
        GroundingDataset([bad], root, FrameBudget(), source="syn")[0]
    item = GroundingDataset([bad], root, FrameBudget(), source="syn", skip_bad_videos=True)[0]
    assert isinstance(item, SkippedSample) and "gone.mp4" in item.reason
    kept, skipped = drop_skipped([item])
    assert kept == [] and skipped == [item]


def test_video_shorter_than_annotated_is_reported(tube_source):
    root, rec = tube_source
    from dataclasses import replace
    longer = replace(rec, frame_count=80, segment=(0, 80))
    with pytest.raises(VideoReadError) as err:
        GroundingDataset([longer], root, FrameBudget(fps=10.0, max_frames=64), source="syn")[0]
    assert err.value.reason == "too_short"


def test_charades_sta_records_are_temporal_only(tmp_path):
    moving_box_video(tmp_path / "AB12C.mp4", np.tile([1.0, 1.0, 9.0, 9.0], (N, 1)))
    (tmp_path / "train.txt").write_text("AB12C 1.0 2.5##a person opens a door.\nAB12C 0 1.2##someone sits.\n")
    options = ReadOptions(media_root=tmp_path, probe=probe_video)
    recs, report = read_charades_sta(tmp_path / "train.txt", "charades", options)
    assert [r.tube for r in recs] == [(10, 25), (0, 12)] and recs[0].fps == FPS and recs[0].frame_count == N
    assert report.num_records == 2 and not report.has_boxes
    s = GroundingDataset(recs, tmp_path, FrameBudget(fps=5.0, max_frames=64), source="charades")[0]
    assert s.task == "temporal" and not s.has_boxes and s.span == (5, 13)
    (tmp_path / "bad.txt").write_text("AB12C 0 1.0##fine\n\nAB12C 3.0 1.0##backwards\n")
    with pytest.raises(ValueError, match=r"bad.txt: sentence 1 .*field 'line 3'.*0 <= start < end"):
        read_charades_sta(tmp_path / "bad.txt", "charades", options)
    recs, report = read_charades_sta(tmp_path / "bad.txt", "charades",
                                     dataclasses.replace(options, skip_invalid=True))
    assert [r.sentence_id for r in recs] == [0] and report.num_skipped_sentences == 1
    with pytest.raises(ValueError, match="needs the video folder"):
        read_charades_sta(tmp_path / "train.txt", "charades", ReadOptions())


def test_referring_expressions_are_two_frame_images_without_span(tmp_path):
    Image.fromarray(np.full((60, 80, 3), 200, dtype=np.uint8)).save(tmp_path / "img.jpg")
    (tmp_path / "refs.jsonl").write_text(json.dumps(
        {"image": "img.jpg", "bbox": [8, 6, 40, 30], "sentence": "the grey wall", "width": 80, "height": 60}) + "\n")
    recs, _ = read_referring_jsonl(tmp_path / "refs.jsonl", "refcoco", ReadOptions())
    s = GroundingDataset(recs, tmp_path, FrameBudget(), source="refcoco")[0]
    assert s.task == "image" and s.span is None and s.frames.shape[0] == 2 and s.box_mask.all()
    np.testing.assert_allclose(s.boxes_cxcywh01[0], [28 / 80, 21 / 60, 40 / 80, 30 / 60], rtol=1e-6)
    (tmp_path / "blank.jsonl").write_text(json.dumps(
        {"image": "img.jpg", "bbox": [8, 6, 40, 30], "sentence": " ", "width": 80, "height": 60}) + "\n")
    with pytest.raises(ValueError, match=r"blank.jsonl: sentence 0 \(video 'img'.*field 'line 1': empty sentence"):
        read_referring_jsonl(tmp_path / "blank.jsonl", "refcoco", ReadOptions())
    (tmp_path / "mixed.jsonl").write_text("not json\n" + (tmp_path / "refs.jsonl").read_text())
    recs, report = read_referring_jsonl(tmp_path / "mixed.jsonl", "refcoco", ReadOptions(skip_invalid=True))
    assert [r.sentence_id for r in recs] == [1] and report.num_skipped_sentences == 1 and report.num_entries == 2


class _Constant:
    def __init__(self, name, n):
        self.name, self.n = name, n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return self.name, i


def test_mixture_follows_weights_deterministically_and_covers_sources():
    mix = MixtureDataset({"a": (_Constant("a", 10), 3.0), "b": (_Constant("b", 1000), 1.0)}, length=4000, seed=0)
    first = [mix[i] for i in range(len(mix))]
    share = sum(name == "a" for name, _ in first) / len(first)
    assert 0.72 < share < 0.78
    a_indices = [i for name, i in first if name == "a"]
    assert sorted(a_indices[:10]) == list(range(10))  # a whole pass over a source before repeating
    second = [mix[len(mix) + i] for i in range(len(mix))]  # index epoch * length + i addresses a later epoch
    assert second != first and mix.epoch == 1
    assert [mix[i] for i in range(len(mix))] == first  # and back: the schedule is a function of (seed, epoch)
    with pytest.raises(ValueError, match="weights"):
        MixtureDataset({"a": (_Constant("a", 1), -1.0)}, length=3)
