"""Hand-computed protocol cases, and the vectorised scorer against the per-frame reference loop."""

import zlib

import numpy as np
import pytest

from bridge_stg.eval.metrics import MissingPredictionError, PredictionTable, score, summarize
from bridge_stg.eval.protocols import build_targets, get_protocol
from bridge_stg.eval.reference_loop import sampled_frames, score_all
from bridge_stg.ops.sampling import sample_frame_ids
from bridge_stg.structures import SentenceRecord, TubePrediction

BOX = [10.0, 10.0, 30.0, 30.0]
FAR = [100.0, 100.0, 120.0, 120.0]


def record(sid=0, fps=25.0, segment=(0, 51), tube=(10, 30), stype=None, base=0, end="exclusive", box=BOX,
           dataset="vidstg", box_frames=None):
    frames = np.arange(*tube) if box_frames is None else np.asarray(box_frames)
    return SentenceRecord(
        sentence_id=sid, dataset=dataset, video_id=f"v{sid}", video_path=f"v{sid}.mp4", fps=fps,
        frame_count=segment[1], width=200, height=200, segment=segment, tube=tube, query="q", sentence_type=stype,
        box_frame_ids=frames.astype(np.int64), boxes_xyxy_px=np.tile(np.array(box, float), (len(frames), 1)),
        annotation_frame_base=base, source_tube_end=end)


def tube(sid, span, boxes: dict):
    frames = sorted(boxes)
    return TubePrediction(sid, span, np.array(frames, np.int64), np.array([boxes[f] for f in frames], float))


def run(records, preds, protocol="tubedetr", **kw):
    targets = build_targets(records, get_protocol(protocol))
    return score(targets, PredictionTable.from_tubes(preds), **kw)


# --- frame sampling ---------------------------------------------------------------------------------------------

def test_sampling_25fps_takes_every_fifth_frame():
    assert sample_frame_ids(0, 50, 25.0).tolist() == list(range(0, 50, 5))


def test_sampling_matches_literal_rule_at_29_97_fps_with_offset_start():
    for start, end, fps in [(496, 595, 29.97), (13, 1000, 30000 / 1001), (0, 480, 24.0), (7, 300, 23.976)]:
        assert sample_frame_ids(start, end, fps).tolist() == sampled_frames(start, end, fps, 5.0, 200)


def test_sampling_29_97_hand_case():
    # rate = 5/29.97: int(f*rate) steps at f = 6, 12, 18, 24, 30 (29*rate=4.838, 30*rate=5.005)
    assert sample_frame_ids(0, 31, 29.97).tolist() == [0, 6, 12, 18, 24, 30]


def test_sampling_thins_to_200_frames():
    ids = sample_frame_ids(0, 3000, 25.0)  # 600 frames at 5 fps -> every third kept
    assert len(ids) == 200 and ids[:3].tolist() == [0, 15, 30] and ids[-1] == 2985


def test_sampling_rejects_upsampling_and_empty_segments():
    with pytest.raises(ValueError, match="only downsamples"):
        sample_frame_ids(0, 10, 4.0)
    with pytest.raises(ValueError, match="empty segment"):
        sample_frame_ids(5, 5, 25.0)


# --- tubedetr protocol, hand-computed -----------------------------------------------------------------------------

def test_nested_spans_hand_case():
    # eval frames 0,5,...,45 (segment end 51 minus its last frame, 5 fps of 25); GT [10,30) -> GT frames 10,15,20,25
    # pred [20,40): tIoU = 10/30; union frames 10..35 -> 6; intersection frames 20,25 exact boxes -> vIoU = 2/6
    boxes = {10: FAR, 15: FAR, 20: BOX, 25: BOX}
    s = run([record()], [tube(0, (20, 40), boxes)])
    assert s.tiou[0] == pytest.approx(1 / 3)
    assert s.viou[0] == pytest.approx(2 / 6)
    assert s.gt_viou[0] == pytest.approx(0.5)
    m = summarize(s)
    assert m["gt_viou@0.5"] == 0.0 and m["gt_viou@0.3"] == 1.0  # strict >


def test_identical_spans_perfect_boxes():
    s = run([record()], [tube(0, (10, 30), {f: BOX for f in range(10, 30, 5)})])
    assert (s.tiou[0], s.viou[0], s.gt_viou[0]) == (1.0, 1.0, 1.0)


def test_disjoint_spans_score_zero_but_keep_gt_viou():
    s = run([record()], [tube(0, (35, 45), {f: BOX for f in range(10, 30, 5)})])
    assert s.tiou[0] == 0.0 and s.viou[0] == 0.0 and s.gt_viou[0] == 1.0


def test_viou_exactly_half_does_not_count_at_half():
    # pred [10,50): union frames 10..45 = 8; boxes exact on the 4 GT frames -> vIoU = 4/8 = 0.5
    s = run([record()], [tube(0, (10, 50), {f: BOX for f in range(10, 30, 5)})])
    assert s.viou[0] == 0.5
    m = summarize(s)
    assert m["viou@0.5"] == 0.0 and m["viou@0.3"] == 1.0


def test_tube_end_equal_to_frame_count():
    # VidSTG: temporal_gt.end_fid may equal frame_count; the last segment frame is not evaluated
    rec = record(segment=(0, 50), tube=(20, 50))
    frames = sample_frame_ids(0, 49, 25.0)  # 0..45
    s = run([rec], [tube(0, (20, 50), {int(f): BOX for f in frames})])
    assert s.tiou[0] == 1.0 and s.viou[0] == 1.0 and s.gt_viou[0] == 1.0


def test_degenerate_boxes_are_sorted_and_never_nan():
    inverted = [30.0, 30.0, 10.0, 10.0]  # same box with corners swapped
    point = [5.0, 5.0, 5.0, 5.0]
    s = run([record()], [tube(0, (10, 30), {10: inverted, 15: inverted, 20: point, 25: point})])
    assert s.gt_viou[0] == pytest.approx(0.5)
    assert np.isfinite([s.tiou, s.viou, s.gt_viou]).all()
    # a zero-area prediction on a zero-area GT box: 0, not NaN
    s = run([record(box=[5, 5, 5, 5])], [tube(0, (10, 30), {f: point for f in range(10, 30, 5)})])
    assert s.gt_viou[0] == 0.0


def test_hcstvg_one_based_start_is_used_literally():
    # record tube [9, 19) from st_frame=10 (1-based); TubeDETR places the GT at frames [10, 20)
    rec = record(fps=25.0, segment=(0, 100), tube=(9, 19), base=1, end="inclusive", dataset="hcstvg_v1")
    s = run([rec], [tube(0, (10, 20), {10: BOX, 15: BOX})])
    assert s.tiou[0] == 1.0 and s.viou[0] == 1.0


def test_more_than_200sampled_frames():
    rec = record(fps=25.0, segment=(0, 2001), tube=(0, 1000))  # 400 sampled -> every second: step 10
    frames = sample_frame_ids(0, 2000, 25.0)
    assert len(frames) == 200 and frames[1] == 10
    s = run([rec], [tube(0, (0, 1000), {int(f): BOX for f in frames})])
    assert s.viou[0] == 1.0
    t = build_targets([rec], get_protocol("tubedetr"))
    assert len(t.gt_frame) == 100  # GT frames 0, 10, ..., 990


# --- stcat and hcstvg_official ------------------------------------------------------------------------------------

def test_stcat_reads_vidstg_end_as_inclusive_and_interpolates():
    # GT [10, 20) exclusive in VidSTG; STCAT's last GT frame is 20 (box repeated from 19), spans use [10, 20)
    rec = record(segment=(0, 100), tube=(10, 20))
    s = run([rec], [tube(0, (10, 20), {10: BOX, 20: BOX})], protocol="stcat")
    assert s.tiou[0] == 1.0
    assert s.viou[0] == 1.0  # 10 frames of intersection / 10 of union
    assert s.gt_viou[0] == 1.0
    t = build_targets([rec], get_protocol("stcat"))
    assert t.gt_frame.tolist() == list(range(10, 21))


def test_stcat_hcstvg_span_is_one_frame_shorter_than_its_boxes():
    rec = record(segment=(0, 100), tube=(9, 19), base=1, end="inclusive", dataset="hcstvg_v1")
    t = build_targets([rec], get_protocol("stcat"))
    assert (t.gt_start[0], t.gt_end[0]) == (9, 18)
    assert t.gt_frame.tolist() == list(range(9, 19))


def test_dense_interpolation_is_linear_between_predicted_frames():
    rec = record(segment=(0, 100), tube=(10, 13), base=1, end="inclusive", dataset="hcstvg_v1",
                 box=[10, 10, 20, 20])
    # boxes at 10 and 12 shifted by 0 and 4 px: frame 11 is interpolated to a 2 px shift
    pred = tube(0, (10, 13), {10: [10, 10, 20, 20], 12: [14, 10, 24, 20]})
    s = run([rec], [pred], protocol="hcstvg_official")
    ious = [1.0, 8 / 12, 6 / 14]
    assert s.gt_viou[0] == pytest.approx(np.mean(ious))


def test_stcat_vidstg_hand_case():
    # GT [10, 20) (VidSTG, end exclusive); STCAT's last GT frame is 20. Pred [15, 30): FAR boxes on 10..14, then BOX.
    # tIoU and the vIoU sums use [start, last): intersection [15, 20) = 5 frames, union [10, 30) = 20 -> 0.25 and
    # 5 * 1.0 / 20; gt_vIoU averages the 11 box frames 10..20: 0 on 10..14, 1 on 15..20 -> 6/11
    rec = record(segment=(0, 100), tube=(10, 20))
    s = run([rec], [tube(0, (15, 30), {10: FAR, 14: FAR, 15: BOX, 30: BOX})], protocol="stcat")
    assert (s.tiou[0], s.viou[0]) == (0.25, 0.25) and s.gt_viou[0] == pytest.approx(6 / 11)


@pytest.mark.parametrize("protocol,span,expected", [
    # HC-STVG st_frame 10 (1-based) with 10 boxes: 0-based box frames 9..18
    # stcat: span [9, 18) (its [start, last)); a prediction [9, 19) overlaps 9 of a 10-frame union
    ("stcat", (9, 19), 9 / 10), ("stcat", (10, 20), 8 / 11), ("stcat", (8, 18), 9 / 10),
    # hcstvg_official: span [9, 19), every box frame; one frame late or early: 9 of an 11-frame union
    ("hcstvg_official", (9, 19), 1.0), ("hcstvg_official", (10, 20), 9 / 11), ("hcstvg_official", (8, 18), 9 / 11),
])
def test_dense_protocols_hcstvg_hand_cases_and_one_frame_shifts(protocol, span, expected):
    rec = record(segment=(0, 100), tube=(9, 19), base=1, end="inclusive", dataset="hcstvg_v1")
    s = run([rec], [tube(0, span, {0: BOX, 99: BOX})], protocol=protocol)  # the exact box on every frame
    assert s.tiou[0] == pytest.approx(expected) and s.viou[0] == pytest.approx(expected)  # exact boxes: vIoU = tIoU
    assert s.gt_viou[0] == 1.0


def test_hcstvg_official_rejects_vidstg():
    with pytest.raises(ValueError, match="hcstvg"):
        build_targets([record(dataset="vidstg")], get_protocol("hcstvg_official"))


# --- missing, duplicate and unknown predictions -------------------------------------------------------------------

def test_missing_sentence_is_an_error_unless_missing_as_zero():
    recs = [record(0), record(1)]
    preds = [tube(0, (10, 30), {f: BOX for f in range(10, 30, 5)})]
    with pytest.raises(MissingPredictionError, match=r"\[1\]"):
        run(recs, preds)
    s = run(recs, preds, missing_as_zero=True)
    assert s.viou.tolist() == [1.0, 0.0]
    assert summarize(s)["missing_predictions"] == 1


def test_missing_gt_frame_box_is_an_error_naming_it():
    with pytest.raises(MissingPredictionError, match="0_15"):
        run([record()], [tube(0, (10, 30), {10: BOX, 20: BOX, 25: BOX})])
    s = run([record()], [tube(0, (10, 30), {10: BOX, 20: BOX, 25: BOX})], missing_as_zero=True)
    assert s.missing_boxes == 1 and s.gt_viou[0] == 0.75


def test_duplicate_and_unknown_ids_are_errors():
    p = tube(0, (10, 30), {f: BOX for f in range(10, 30, 5)})
    with pytest.raises(ValueError, match="duplicate"):
        run([record()], [p, p])
    with pytest.raises(ValueError, match="not in the annotation"):
        run([record()], [p, tube(7, (0, 1), {})])


def test_inverted_span_is_an_error():
    with pytest.raises(ValueError, match="inverted span"):
        run([record()], [tube(0, (30, 10), {f: BOX for f in range(10, 30, 5)})])


def test_no_predictions_at_all_score_every_sentence_zero_under_missing_as_zero():
    recs = [record(0, stype="declarative"), record(1, stype="interrogative")]
    with pytest.raises(MissingPredictionError, match="no prediction for 2 of 2 sentences"):
        run(recs, [])
    s = run(recs, [], missing_as_zero=True)
    assert s.tiou.tolist() == s.viou.tolist() == s.gt_viou.tolist() == [0.0, 0.0] and not s.predicted.any()
    m = summarize(s)
    assert m["missing_predictions"] == 2 and m["average_viou"] == 0.0 and m["declarative_viou@0.3"] == 0.0


def test_predicted_frame_ids_outside_the_key_range_are_rejected_not_aliased():
    # (position, frame) share one int64 key: frame 2^32 + 15 of sentence 0 would read as sentence 1's frame 15
    recs = [record(0), record(1)]
    aliasing = [tube(0, (10, 30), {**{f: BOX for f in range(10, 30, 5)}, (1 << 32) + 15: FAR}),
                tube(1, (10, 30), {10: BOX, 20: BOX, 25: BOX})]
    with pytest.raises(ValueError, match="sentence 0 has a box on frame 4294967311"):
        run(recs, aliasing)
    with pytest.raises(ValueError, match="sentence 1 has a box on frame -1"):
        run(recs, [tube(0, (10, 30), {f: BOX for f in range(10, 30, 5)}), tube(1, (10, 30), {-1: BOX})])


def test_annotation_frame_ids_outside_the_key_range_are_rejected():
    with pytest.raises(ValueError, match=r"sentence 3 \(v3\): GT box on frame 4294967296"):
        build_targets([record(3, box_frames=[*range(10, 30), 1 << 32])], get_protocol("tubedetr"))
    # a GT frame beyond the range finds no box (rather than sentence 1's boxes on frames 0 and 1)
    far = 1 << 32
    recs = [record(0, segment=(0, far + 5), tube=(far - 2, far + 2), box_frames=[far - 2, far - 1]),
            record(1, tube=(0, 2), box_frames=[0, 1])]
    with pytest.raises(ValueError, match=r"sentence 0 \(v0\): no GT box on frames \[4294967296, 4294967297"):
        build_targets(recs, get_protocol("stcat"))


@pytest.mark.parametrize("bad", [float("nan"), 1.5, 0.0, -0.3, float("inf")])
def test_thresholds_must_be_in_zero_one(bad):
    with pytest.raises(ValueError, match="is not a vIoU@R threshold"):
        get_protocol("tubedetr", (0.3, bad))


def test_threshold_one_is_allowed_and_never_met():
    targets = build_targets([record()], get_protocol("tubedetr", (0.5, 1.0)))
    m = summarize(score(targets, PredictionTable.from_tubes([tube(0, (10, 30), {f: BOX for f in range(10, 30, 5)})])))
    assert m["viou"] == 1.0 and m["viou@0.5"] == 1.0 and m["viou@1"] == 0.0  # strict >


# --- aggregation --------------------------------------------------------------------------------------------------

def test_summary_is_per_sentence_type_from_the_annotation():
    recs = [record(0, stype="declarative"), record(1, stype="interrogative"), record(2, stype="interrogative")]
    good = {f: BOX for f in range(10, 30, 5)}
    preds = [tube(0, (10, 30), good), tube(1, (10, 30), good), tube(2, (35, 45), good)]
    m = summarize(run(recs, preds))
    assert m["declarative_viou"] == 1.0 and m["interrogative_viou"] == 0.5
    assert m["average_viou"] == 0.75
    assert m["declarative_count"] == 1 and m["interrogative_count"] == 2
    assert set(m) >= {"declarative_viou@0.3", "interrogative_gt_viou@0.5", "protocol"}


# --- vectorised scorer == per-frame loop, on random inputs --------------------------------------------------------

def random_case(rng, n=60, dataset="vidstg", base=0, end="exclusive"):
    recs, preds = [], {}
    for i in range(n):
        fps = float(rng.choice([29.97, 30000 / 1001, 25.0, 24.0, 15.0, 10.0]))
        seg_start = int(rng.integers(0, 50))
        seg_end = seg_start + int(rng.integers(20, 1500))
        ts = int(rng.integers(seg_start, seg_end - 5))
        te = int(rng.integers(ts + 1, seg_end + 1))
        frames = np.arange(max(seg_start, ts - 3), min(seg_end, te + 3))
        xy = rng.uniform(0, 150, (len(frames), 2))
        wh = rng.uniform(1, 50, (len(frames), 2))
        recs.append(SentenceRecord(
            sentence_id=1000 + i, dataset=dataset, video_id=f"v{i}", video_path="", fps=fps, frame_count=seg_end,
            width=200, height=200, segment=(seg_start, seg_end), tube=(ts, te), query="q",
            sentence_type=["declarative", "interrogative"][i % 2] if dataset == "vidstg" else None,
            box_frame_ids=frames.astype(np.int64), boxes_xyxy_px=np.concatenate([xy, xy + wh], 1),
            annotation_frame_base=base, source_tube_end=end))
        ps = int(rng.integers(seg_start - 5, seg_end))
        pe = int(rng.integers(ps, seg_end + 5))
        pf = np.arange(max(seg_start - 2, 0), seg_end + 2)  # frame ids are >= 0 (negative ones are rejected)
        if rng.random() < 0.5:  # sparse predictions exercise interpolation
            pf = np.unique(np.concatenate([pf[:: int(rng.integers(2, 9))], pf[-1:]]))
        pxy = rng.uniform(0, 150, (len(pf), 2))
        pwh = rng.uniform(-5, 50, (len(pf), 2))  # some degenerate / inverted boxes
        preds[1000 + i] = TubePrediction(1000 + i, (ps, pe), pf, np.concatenate([pxy, pxy + pwh], 1))
    return recs, preds


@pytest.mark.parametrize("protocol,dataset,base,end", [
    ("tubedetr", "vidstg", 0, "exclusive"), ("tubedetr", "hcstvg_v2", 1, "inclusive"),
    ("stcat", "vidstg", 0, "exclusive"), ("stcat", "hcstvg_v1", 1, "inclusive"),
    ("hcstvg_official", "hcstvg_v2", 1, "inclusive"),
])
def test_vectorised_scorer_equals_reference_loop(protocol, dataset, base, end):
    rng = np.random.default_rng(zlib.crc32(f"{protocol}/{dataset}".encode()))  # fixed per case, every run
    recs, preds = random_case(rng, dataset=dataset, base=base, end=end)
    proto = get_protocol(protocol)
    if not proto.interpolate_boxes:  # sampled protocols need boxes on the sampled frames: predict every frame
        dense = {}
        for (k, p), r in zip(preds.items(), recs):
            frames = np.arange(r.segment[0], r.segment[1] + 2)
            xy = rng.uniform(0, 150, (len(frames), 2))
            dense[k] = TubePrediction(k, p.span, frames, np.concatenate([xy, xy + rng.uniform(-5, 50, xy.shape)], 1))
        preds = dense
    expected = score_all(recs, preds, proto)
    got = score(build_targets(recs, proto), PredictionTable.from_tubes(list(preds.values())))
    for key in ("tiou", "viou", "gt_viou"):
        np.testing.assert_allclose(getattr(got, key), [e[key] for e in expected], rtol=0, atol=1e-12)
