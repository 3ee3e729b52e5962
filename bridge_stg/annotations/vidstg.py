"""VidSTG: the official sentence files (+ VidOR per-video box files) and TubeDETR's preprocessed files.

Official release (``{train,val,test}_annotations.json``): one item per (video, relation segment) holding
several sentences. Sentences are enumerated as TubeDETR does: item by item in file order, within an item every
``questions`` entry (interrogative) before every ``captions`` entry (declarative); ``sentence_id`` runs from 0
over the file. ``used_segment.end_fid`` is inclusive and ``temporal_gt.end_fid`` exclusive; records hold both
as half-open spans. Boxes come from VidOR files ``<vidor_dir>/**/<vid>.json``: the target's box on frame ``f``
is the entry of ``trajectories[f]`` whose ``tid`` is the sentence's ``target_id``.

TubeDETR's preprocessed files (``{"videos": [...], "trajectories": {...}}``) hold one element per sentence
whose ``video_id`` is the sentence id; boxes are
``trajectories[original_video_id][str(target_id)][str(frame)].bbox`` (``xywh``).

In both formats a record holds every annotated box of its target, also outside the tube; records of the same
(video, target) share one read-only box array.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bridge_stg.annotations.errors import AnnotationError, Where
from bridge_stg.annotations.parsing import (
    get_dict,
    get_float,
    get_int,
    get_list,
    get_sentence,
    get_str,
    number_rows,
    read_json,
    read_only,
    tubedetr_entry_id,
    write_json,
)
from bridge_stg.annotations.report import Collector
from bridge_stg.annotations.validate import DEFAULT_BOX_MARGIN, SourceFields, check_record
from bridge_stg.ops.boxes import xywh_to_xyxy, xyxy_to_xywh
from bridge_stg.structures import SentenceRecord, SentenceType

DATASET = "vidstg"
SENTENCE_LISTS: tuple[tuple[str, SentenceType], ...] = (
    ("questions", "interrogative"),
    ("captions", "declarative"),
)
Track = tuple[np.ndarray, np.ndarray]  # (frame ids [N] int64, boxes [N, 4] xyxy px)

_EMPTY_TRACK: Track = (read_only(np.zeros(0, dtype=np.int64)), read_only(np.zeros((0, 4), dtype=np.float64)))


# ----------------------------------------------------------------------------------------- VidOR boxes


@dataclass(frozen=True)
class VidorVideo:
    """Boxes of one VidOR video, per track id."""

    file: Path
    video_path: str | None
    tracks: dict[int, Track]


class VidorBoxes:
    """VidOR box files found under ``root`` (indexed once by file stem), parsed on first use and cached."""

    def __init__(self, root: Path, annotation_path: Path) -> None:
        if not root.is_dir():
            raise AnnotationError(f"vidor_dir '{root}' is not a folder", path=annotation_path,
                                  field="vidor_dir",
                                  fix="point vidor_dir at the VidOR annotation root (holding training/ and "
                                      "validation/), or leave it out to load sentences without boxes")
        self.root = root
        self._files: dict[str, list[Path]] = {}
        for file in sorted(root.rglob("*.json")):
            self._files.setdefault(file.stem, []).append(file)
        self._videos: dict[str, VidorVideo] = {}

    def video(self, vid: str, where: Where) -> VidorVideo:
        if vid not in self._videos:
            self._videos[vid] = read_vidor_file(self._locate(vid, where), where)
        return self._videos[vid]

    def _locate(self, vid: str, where: Where) -> Path:
        files = self._files.get(vid, [])
        if not files:
            raise where.error("vid", f"no VidOR box file '{vid}.json' under vidor_dir '{self.root}'",
                              fix="point vidor_dir at the VidOR annotation root of this split (VidSTG "
                                  "train/val are in VidOR training/, test in validation/), or exclude the "
                                  "video with exclude_videos")
        if len(files) > 1:
            raise where.error("vid", f"several VidOR box files for '{vid}': {[str(f) for f in files]}",
                              fix="remove the duplicates from vidor_dir")
        return files[0]


def read_vidor_file(file: Path, where: Where) -> VidorVideo:
    """Tracks of one VidOR box file. Errors name the VidOR file and the sentences that need it."""
    fw = Where(file, where.entry, where.video_id, where.sentence_ids)
    data = read_json(file)
    trajectories = get_list(data, "trajectories", fw)
    video_path = data.get("video_path")
    frames: dict[int, list[int]] = {}
    rows: dict[int, list[list[Any]]] = {}
    try:
        for f, entries in enumerate(trajectories):
            for entry in entries:
                tid, box = entry["tid"], entry["bbox"]
                if type(tid) is not int:
                    raise TypeError
                frames.setdefault(tid, []).append(f)
                rows.setdefault(tid, []).append([box["xmin"], box["ymin"], box["xmax"], box["ymax"]])
    except (KeyError, TypeError):
        _diagnose_trajectories(trajectories, fw)
        raise fw.error("trajectories", "malformed entries") from None
    tracks = {}
    for tid, track_frames in frames.items():
        frame_ids = np.asarray(track_frames, dtype=np.int64)
        dup = np.flatnonzero(np.diff(frame_ids) == 0)
        if len(dup):
            f = int(frame_ids[dup[0]])
            raise fw.error(f"trajectories[{f}]", f"two boxes for tid {tid} on frame {f}")
        try:
            boxes = number_rows(rows[tid], 4, fw, f"trajectories (tid {tid}) bbox")
        except AnnotationError:
            _diagnose_trajectories(trajectories, fw)
            raise
        tracks[tid] = (read_only(frame_ids), read_only(boxes))
    return VidorVideo(file, video_path if isinstance(video_path, str) else None, tracks)


def _diagnose_trajectories(trajectories: list, where: Where) -> None:
    """Raise the precise error for the first malformed trajectory entry (the slow path of
    :func:`read_vidor_file`)."""
    for f, entries in enumerate(trajectories):
        if not isinstance(entries, list):
            raise where.error(f"trajectories[{f}]", "expected a list of boxes (one list per frame)")
        for k, entry in enumerate(entries):
            prefix = f"trajectories[{f}][{k}]."
            get_int(entry, "tid", where, prefix)
            box = get_dict(entry, "bbox", where, prefix)
            for key in ("xmin", "ymin", "xmax", "ymax"):
                get_float(box, key, where, prefix + "bbox.")


# ------------------------------------------------------------------------------------- official reader


@dataclass(frozen=True)
class _Item:
    vid: str
    fps: float
    frame_count: int
    width: int
    height: int
    segment: tuple[int, int]
    tube: tuple[int, int]
    sentences: list[tuple[str, SentenceType, Any]]  # (source list name, type, sentence object)
    vidor: VidorVideo | None


def read_vidstg_official(
    items: list,
    path: Path,
    collect: Collector,
    vidor_dir: Path | None = None,
    box_margin: float = DEFAULT_BOX_MARGIN,
) -> None:
    """Add a record per sentence of the official VidSTG sentence file ``items`` to ``collect``.

    Without ``vidor_dir`` records carry no boxes (and the tube-coverage check is off). Excluded or skipped
    items keep their sentence ids, so the remaining ids stay those of the full file.
    """
    vidor = VidorBoxes(vidor_dir, path) if vidor_dir is not None else None
    next_id = 0
    for index, item in enumerate(items):
        n = _count_sentences(item)
        vid = item.get("vid") if isinstance(item, dict) else None
        where = Where(path, index, vid if isinstance(vid, str) else "?", tuple(range(next_id, next_id + n)))
        next_id += n
        if not collect.admit(where):
            continue
        parsed = collect.attempt(where, _parse_item, item, where, vidor)
        if parsed is None:
            continue
        for sentence_id, (list_name, kind, sentence) in zip(where.sentence_ids, parsed.sentences,
                                                             strict=True):
            sw = where.sentence(sentence_id)
            rec = collect.attempt(sw, _sentence_record, parsed, list_name, kind, sentence, sw, box_margin)
            if rec is not None:
                collect.add(rec, sw)


def _count_sentences(item: Any) -> int:
    """Sentences of an item, also of a malformed one (what is not a list counts 0), so ids stay aligned."""
    if not isinstance(item, dict):
        return 0
    return sum(len(item[name]) for name, _ in SENTENCE_LISTS if isinstance(item.get(name), list))


def _parse_item(item: Any, where: Where, vidor: VidorBoxes | None) -> _Item:
    if not isinstance(item, dict):
        raise where.error("<entry>", f"expected a JSON object, got {type(item).__name__}")
    vid = get_str(item, "vid", where)
    segment = get_dict(item, "used_segment", where)
    tube = get_dict(item, "temporal_gt", where)
    sentences = []
    for name, kind in SENTENCE_LISTS:
        sentences.extend((f"{name}[{k}]", kind, s) for k, s in enumerate(get_list(item, name, where)))
    return _Item(
        vid=vid,
        fps=get_float(item, "fps", where),
        frame_count=get_int(item, "frame_count", where),
        width=get_int(item, "width", where),
        height=get_int(item, "height", where),
        segment=(get_int(segment, "begin_fid", where, "used_segment."),
                 get_int(segment, "end_fid", where, "used_segment.") + 1),
        tube=(get_int(tube, "begin_fid", where, "temporal_gt."),
              get_int(tube, "end_fid", where, "temporal_gt.")),
        sentences=sentences,
        vidor=vidor.video(vid, where) if vidor is not None else None,
    )


def _sentence_record(
    item: _Item, list_name: str, kind: SentenceType, sentence: Any, where: Where, box_margin: float
) -> SentenceRecord:
    prefix = list_name + "."
    query = get_sentence(sentence, "description", where, prefix)
    target_id = get_int(sentence, "target_id", where, prefix)
    frame_ids, boxes = _EMPTY_TRACK
    video_path = f"{item.vid}.mp4"
    boxes_field = _no_boxes_field
    if item.vidor is not None:
        frame_ids, boxes = item.vidor.tracks.get(target_id, _EMPTY_TRACK)
        video_path = item.vidor.video_path or video_path
        file = item.vidor.file

        def boxes_field(frame: int, _: int | None) -> str:
            return f"trajectories[{frame}] (tid {target_id}) of VidOR file {file}"
    rec = SentenceRecord(
        sentence_id=where.sentence_ids[0],
        dataset=DATASET,
        video_id=item.vid,
        video_path=video_path,
        fps=item.fps,
        frame_count=item.frame_count,
        width=item.width,
        height=item.height,
        segment=item.segment,
        tube=item.tube,
        query=query,
        sentence_type=kind,
        target_id=target_id,
        box_frame_ids=frame_ids,
        boxes_xyxy_px=boxes,
        annotation_frame_base=0,
        source_tube_end="exclusive",
    )
    fields = SourceFields(segment="used_segment", tube="temporal_gt", boxes=boxes_field)
    check_record(rec, where, fields, box_margin=box_margin, boxes_loaded=item.vidor is not None)
    return rec


def _no_boxes_field(frame: int, _: int | None) -> str:
    return "trajectories"


# ------------------------------------------------------------------------------------- TubeDETR reader


def read_tubedetr_vidstg(
    data: dict, path: Path, collect: Collector, box_margin: float = DEFAULT_BOX_MARGIN
) -> None:
    """Add a record per element of ``data["videos"]`` (TubeDETR's preprocessed VidSTG) to ``collect``."""
    file_where = Where(path)
    videos = get_list(data, "videos", file_where)
    trajectories = get_dict(data, "trajectories", file_where)
    tracks: dict[tuple[str, int], Track] = {}
    seen: dict[int, int] = {}
    for index, video in enumerate(videos):
        sid = video.get("video_id") if isinstance(video, dict) else None
        vid = video.get("original_video_id") if isinstance(video, dict) else None
        ids = (sid,) if type(sid) is int else ()
        where = Where(path, index, vid if isinstance(vid, str) else "?", ids)
        collect.entry(where, _tubedetr_record, video, where, trajectories, tracks, seen, box_margin)


def _tubedetr_record(
    video: Any,
    where: Where,
    trajectories: dict,
    tracks: dict[tuple[str, int], Track],
    seen: dict[int, int],
    box_margin: float,
) -> SentenceRecord:
    sentence_id = tubedetr_entry_id(video, where, seen)
    vid = get_str(video, "original_video_id", where)
    target_id = get_int(video, "target_id", where)
    qtype = get_str(video, "qtype", where)
    if qtype not in ("declarative", "interrogative"):
        raise where.error("qtype", f"expected 'declarative' or 'interrogative', got {qtype!r}")
    if (vid, target_id) not in tracks:
        tracks[vid, target_id] = _tubedetr_track(trajectories, vid, target_id, where)
    frame_ids, boxes = tracks[vid, target_id]
    rec = SentenceRecord(
        sentence_id=sentence_id,
        dataset=DATASET,
        video_id=vid,
        video_path=get_str(video, "video_path", where),
        fps=get_float(video, "fps", where),
        frame_count=get_int(video, "frame_count", where),
        width=get_int(video, "width", where),
        height=get_int(video, "height", where),
        segment=(get_int(video, "start_frame", where), get_int(video, "end_frame", where) + 1),
        tube=(get_int(video, "tube_start_frame", where), get_int(video, "tube_end_frame", where)),
        query=get_sentence(video, "caption", where),
        sentence_type=qtype,
        target_id=target_id,
        box_frame_ids=frame_ids,
        boxes_xyxy_px=boxes,
        annotation_frame_base=0,
        source_tube_end="exclusive",
    )

    def boxes_field(frame: int, _: int | None) -> str:
        return f"trajectories['{vid}']['{target_id}']['{frame}'].bbox"

    fields = SourceFields(segment="start_frame/end_frame", tube="tube_start_frame/tube_end_frame",
                          boxes=boxes_field)
    check_record(rec, where, fields, box_margin=box_margin)
    seen[sentence_id] = where.entry if where.entry is not None else -1
    return rec


def _tubedetr_track(trajectories: dict, vid: str, target_id: int, where: Where) -> Track:
    field = f"trajectories['{vid}']['{target_id}']"
    per_video = trajectories.get(vid)
    if not isinstance(per_video, dict) or not isinstance(per_video.get(str(target_id)), dict):
        raise where.error(field, f"no boxes for target {target_id} of video '{vid}'",
                          fix="the file's 'trajectories' must hold every target of 'videos'; re-generate it")
    by_frame: dict = per_video[str(target_id)]
    try:
        frame_ids = np.fromiter((int(k) for k in by_frame), dtype=np.int64, count=len(by_frame))
        rows = [v["bbox"] for v in by_frame.values()]
    except (ValueError, TypeError, KeyError):
        for key, value in by_frame.items():
            if not key.lstrip("-").isdigit():
                raise where.error(f"{field}['{key}']", "frame keys must be integers in strings") from None
            get_list(value, "bbox", where, f"{field}['{key}'].")
        raise where.error(field, "malformed entries") from None
    order = np.argsort(frame_ids, kind="stable")
    frame_ids = frame_ids[order]
    dup = np.flatnonzero(np.diff(frame_ids) == 0)
    if len(dup):
        raise where.error(field, f"two boxes for frame {frame_ids[dup[0]]} (keys written differently)")
    boxes = xywh_to_xyxy(number_rows(rows, 4, where, f"{field}[...].bbox"))
    return read_only(frame_ids), read_only(boxes[order])


# --------------------------------------------------------------------------------------------- writers


def write_vidstg_official(
    records: Sequence[SentenceRecord],
    path: Path | str,
    vidor_dir: Path | str | None = None,
    *,
    vidor_group: str = "0000",
) -> None:
    """Write ``records`` as an official VidSTG sentence file, and their boxes as VidOR files under
    ``vidor_dir/<vidor_group>/<video_id>.json`` (skipped when ``vidor_dir`` is None).

    Consecutive records sharing video, segment and tube become one item, with interrogative sentences in
    ``questions`` and declarative ones in ``captions``; an interrogative record after a declarative one starts
    a new item, so the file's enumeration order is the records' order. ``sentence_id`` must therefore be
    ``0..N-1`` in order (it is not stored: the reader recomputes it). Boxes of one (video, target) are merged
    over records and must agree. Not written because records do not hold them: ``used_relation``,
    ``subject/objects`` categories, the sentences' ``type``. Reading back gives equal records when every
    record of a video holds the same boxes per target and, without ``vidor_dir``, when ``video_path`` is
    ``'<video_id>.mp4'``.
    """
    _require_running_ids(records)
    items = [_item_json(group) for group in group_vidstg_items(records)]
    if vidor_dir is not None:
        videos = _vidor_videos(records)
        for vid, video in videos.items():
            write_json(Path(vidor_dir) / vidor_group / f"{vid}.json", video)
    write_json(Path(path), items)


def group_vidstg_items(records: Sequence[SentenceRecord]) -> list[list[SentenceRecord]]:
    """Split ``records`` into runs that form one VidSTG item each (see :func:`write_vidstg_official`)."""
    groups: list[list[SentenceRecord]] = []
    for rec in records:
        last = groups[-1][-1] if groups else None
        same = last is not None and _item_key(last) == _item_key(rec)
        if same and not (last.sentence_type == "declarative" and rec.sentence_type == "interrogative"):
            groups[-1].append(rec)
        else:
            groups.append([rec])
    return groups


def _item_key(rec: SentenceRecord) -> tuple:
    return rec.video_id, rec.segment, rec.tube, rec.fps, rec.frame_count, rec.width, rec.height


def _require_running_ids(records: Sequence[SentenceRecord]) -> None:
    for i, rec in enumerate(records):
        if rec.sentence_id != i:
            raise ValueError(f"record {i} has sentence_id {rec.sentence_id}: this format does not store "
                             "ids (the reader numbers sentences 0..N-1 in file order), so records must be "
                             "given in that order with those ids")


def _item_json(group: list[SentenceRecord]) -> dict:
    first = group[0]
    if first.tube is None:
        raise ValueError(f"sentence {first.sentence_id} ({first.video_id}) has no tube: VidSTG needs one")
    sentences: dict[str, list[dict]] = {"questions": [], "captions": []}
    for rec in group:
        if rec.sentence_type is None or rec.target_id is None:
            raise ValueError(f"sentence {rec.sentence_id} ({rec.video_id}) needs sentence_type and target_id "
                             "for VidSTG")
        name = "questions" if rec.sentence_type == "interrogative" else "captions"
        sentences[name].append({"description": rec.query, "target_id": int(rec.target_id)})
    return {
        "vid": first.video_id,
        "fps": float(first.fps),
        "frame_count": int(first.frame_count),
        "width": int(first.width),
        "height": int(first.height),
        "used_segment": {"begin_fid": int(first.segment[0]), "end_fid": int(first.segment[1]) - 1},
        "temporal_gt": {"begin_fid": int(first.tube[0]), "end_fid": int(first.tube[1])},
        **sentences,
    }


def merge_tracks(records: Sequence[SentenceRecord]) -> dict[tuple[str, int], Track]:
    """The box track of every (video_id, target_id), merged over ``records`` (sorted frames, one box each).

    Raises ``ValueError`` when two records give the same target different boxes on one frame.
    """
    parts: dict[tuple[str, int], list[SentenceRecord]] = {}
    for rec in records:
        if rec.target_id is None:
            raise ValueError(f"sentence {rec.sentence_id} ({rec.video_id}) needs a target_id for VidSTG")
        same = parts.setdefault((rec.video_id, int(rec.target_id)), [])
        if not any(_same_track(o, rec) for o in same):
            same.append(rec)
    return {key: _merge(recs) for key, recs in parts.items()}


def _same_track(a: SentenceRecord, b: SentenceRecord) -> bool:
    return a.box_frame_ids is b.box_frame_ids and a.boxes_xyxy_px is b.boxes_xyxy_px


def _merge(records: list[SentenceRecord]) -> Track:
    frames = np.concatenate([r.box_frame_ids for r in records]).astype(np.int64)
    boxes = np.concatenate([r.boxes_xyxy_px for r in records]).reshape(-1, 4).astype(np.float64)
    owner = np.repeat(np.arange(len(records)), [len(r.box_frame_ids) for r in records])
    order = np.argsort(frames, kind="stable")
    frames, boxes, owner = frames[order], boxes[order], owner[order]
    repeat = frames[1:] == frames[:-1]
    clash = np.flatnonzero(repeat & (boxes[1:] != boxes[:-1]).any(axis=1))
    if len(clash):
        rec = records[owner[clash[0] + 1]]
        raise ValueError(f"sentence {rec.sentence_id} ({rec.video_id}): target {rec.target_id} has two "
                         f"different boxes on frame {frames[clash[0]]} across records")
    keep = np.concatenate([[True], ~repeat])
    return frames[keep], boxes[keep]


def _vidor_videos(records: Sequence[SentenceRecord]) -> dict[str, dict]:
    """One VidOR box file payload per video, holding the merged tracks of all its targets."""
    meta: dict[str, tuple] = {}
    for rec in records:
        key = (rec.video_path, float(rec.fps), int(rec.frame_count), int(rec.width), int(rec.height))
        if meta.setdefault(rec.video_id, key) != key:
            raise ValueError(f"sentence {rec.sentence_id}: video '{rec.video_id}' has (video_path, fps, "
                             f"frame_count, width, height) {key}, another record has {meta[rec.video_id]}")
        if len(rec.box_frame_ids) == 0:
            raise ValueError(f"sentence {rec.sentence_id} ({rec.video_id}) has no boxes; pass "
                             "vidor_dir=None to write the sentence file only")
    tracks: dict[str, dict[int, Track]] = {}
    for (vid, tid), track in merge_tracks(records).items():
        frame_count = meta[vid][2]
        if track[0][0] < 0 or track[0][-1] >= frame_count:
            raise ValueError(f"video '{vid}': target {tid} has boxes outside the video's {frame_count} "
                             "frames")
        tracks.setdefault(vid, {})[tid] = track
    return {vid: _vidor_json(vid, meta[vid], tracks[vid]) for vid in tracks}


def _vidor_json(vid: str, meta: tuple, tracks: dict[int, Track]) -> dict:
    video_path, fps, frame_count, width, height = meta
    trajectories: list[list[dict]] = [[] for _ in range(frame_count)]
    for tid in sorted(tracks):
        frames, boxes = tracks[tid]
        for frame, (x1, y1, x2, y2) in zip(frames.tolist(), boxes.tolist(), strict=True):
            trajectories[frame].append({"tid": tid, "bbox": {"xmin": x1, "ymin": y1, "xmax": x2, "ymax": y2},
                                        "generated": 0, "tracker": "none"})
    return {
        "video_id": vid,
        "video_path": video_path,
        "frame_count": frame_count,
        "fps": fps,
        "width": width,
        "height": height,
        "subject/objects": [{"tid": tid} for tid in sorted(tracks)],
        "trajectories": trajectories,
    }


def write_tubedetr_vidstg(records: Sequence[SentenceRecord], path: Path | str) -> None:
    """Write ``records`` as TubeDETR's preprocessed VidSTG file, ``video_id`` = ``sentence_id`` (unique ints).

    Boxes of one (video, target) are merged over records and must agree; reading back gives each record the
    merged track. The sentences' ``type`` (target category) is not written: records do not hold it.
    """
    videos, seen = [], set()
    for rec in records:
        if rec.tube is None or rec.sentence_type is None or rec.target_id is None:
            raise ValueError(f"sentence {rec.sentence_id} ({rec.video_id}) needs a tube, sentence_type "
                             "and target_id for VidSTG")
        if rec.sentence_id in seen:
            raise ValueError(f"sentence id {rec.sentence_id} is used twice; ids must be unique")
        seen.add(rec.sentence_id)
        videos.append({
            "original_video_id": rec.video_id,
            "frame_count": int(rec.frame_count),
            "fps": float(rec.fps),
            "width": int(rec.width),
            "height": int(rec.height),
            "start_frame": int(rec.segment[0]),
            "end_frame": int(rec.segment[1]) - 1,
            "tube_start_frame": int(rec.tube[0]),
            "tube_end_frame": int(rec.tube[1]),
            "video_path": rec.video_path,
            "caption": rec.query,
            "target_id": int(rec.target_id),
            "video_id": int(rec.sentence_id),
            "qtype": rec.sentence_type,
        })
    trajectories: dict[str, dict[str, dict]] = {}
    for (vid, tid), (frames, boxes) in merge_tracks(records).items():
        xywh = xyxy_to_xywh(boxes).tolist()
        trajectories.setdefault(vid, {})[str(tid)] = {
            str(f): {"bbox": box} for f, box in zip(frames.tolist(), xywh, strict=True)}
    write_json(Path(path), {"videos": videos, "trajectories": trajectories})
