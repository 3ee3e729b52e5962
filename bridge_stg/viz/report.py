"""The static evaluation report of ``bridge-stg-report``: where a prediction file succeeds and fails, as one folder.

Scoring goes through the library only: the dataset registry's reader, :func:`~bridge_stg.eval.protocols.build_targets`,
:func:`~bridge_stg.eval.prediction_files.read_predictions`, :func:`~bridge_stg.eval.metrics.score` and
:func:`~bridge_stg.eval.metrics.summarize`. So the summary holds the numbers ``bridge-stg-eval`` prints, and every
per-sentence number shown (tIoU, vIoU, gt_vIoU) is an entry of the scorer's :class:`SentenceScores`; nothing here
computes a metric.

The folder holds ``index.html`` (inline CSS and a few lines of inline JavaScript for the gallery filters; nothing is
fetched from the network, so the page opens offline and can be archived as is), ``assets/*.png`` and
``metrics.json`` (the :func:`~bridge_stg.eval.metrics.summarize` dict). The page shows

* the summary table (per sentence type when the dataset's registry record has types, as VidSTG);
* how many sentences fail in which way (:func:`failure_kind`), per sentence type;
* tIoU and vIoU histograms, and vIoU against the GT tube's length and against the GT box size;
* a gallery of the best, median and worst sentences by vIoU: a contact sheet (predicted against GT boxes), a timeline
  (predicted and GT spans, and the prediction's probabilities when its tube line carries them), the sentence and its
  numbers, filterable by failure kind and sentence type.

Frames come from the videos when a video folder is given (a few frames per gallery sample, read with
:func:`~bridge_stg.data.video_io.read_frames`); otherwise, or when a video cannot be read, boxes are drawn on blank
canvases and the page says so.
"""

from __future__ import annotations

import html
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from bridge_stg.annotations.load import ReadOptions
from bridge_stg.data.video_io import VideoReadError, read_frames
from bridge_stg.eval.datasets import get_dataset
from bridge_stg.eval.metrics import PredictionTable, SentenceScores
from bridge_stg.eval.prediction_files import detect_format
from bridge_stg.eval.score_files import score_files
from bridge_stg.eval.tables import metric_label
from bridge_stg.ops.boxes import make_valid_xyxy
from bridge_stg.structures import SentenceRecord
from bridge_stg.viz.figures import contact_sheet, save_png, timeline_figure

# ------------------------------------------------------------------------------------------------- failure kinds

SPAN_OK_TIOU = 0.5  # a predicted span with tIoU >= this is "right"
BOX_OK_GT_VIOU = 0.5  # boxes with gt_vIoU >= this (mean box IoU over the GT frames) are "right"
WRONG_SPAN = "wrong-span"
WRONG_BOX = "wrong-box"
GOOD = "good"
FAILURE_KINDS: dict[str, str] = {WRONG_SPAN: "wrong span", WRONG_BOX: "right span, wrong box", GOOD: "good"}
KIND_COLOURS: dict[str, str] = {WRONG_SPAN: "#d62728", WRONG_BOX: "#ff7f0e", GOOD: "#2ca02c"}


def failure_kind(tiou: float, gt_viou: float) -> str:
    """How a sentence fails, from its tIoU and gt_vIoU (keys of :data:`FAILURE_KINDS`).

    ``wrong-span``: tIoU < :data:`SPAN_OK_TIOU`, whatever the boxes (the span error dominates vIoU). ``wrong-box``:
    the span is right (tIoU >= :data:`SPAN_OK_TIOU`) but the boxes miss the target on the GT frames (gt_vIoU <
    :data:`BOX_OK_GT_VIOU`). ``good``: both right. gt_vIoU, not vIoU, separates the box failures because vIoU mixes
    in the span error; it is the box quality a perfect span would get.
    """
    if tiou < SPAN_OK_TIOU:
        return WRONG_SPAN
    if gt_viou < BOX_OK_GT_VIOU:
        return WRONG_BOX
    return GOOD


# ------------------------------------------------------------------------------------------------------ scoring

DEFAULT_GALLERY_SIZE = 8  # samples per gallery group (best, median, worst)
DEFAULT_FRAMES_PER_SAMPLE = 8  # frames on a gallery sample's contact sheet
GALLERY_GROUPS = ("best", "median", "worst")
# optional tube-line keys, named as the predictor's output (bridge_stg.inference.GroundedTube): one row of
# PROBABILITY_COLUMNS per frame of PROBABILITY_FRAMES_KEY (of the line's frame_ids when it has no such key)
PROBABILITY_KEY = "probabilities"
PROBABILITY_COLUMNS = ("start", "end", "inside")
PROBABILITY_FRAMES_KEY = "sampled_frame_ids"
REPORT_ENTRIES = frozenset({"index.html", "assets", "metrics.json"})  # what a report folder holds


@dataclass(frozen=True)
class Evaluation:
    """A scored prediction file: the records, the predictions and the scorer's results, aligned by sentence id.

    ``scores`` is :func:`~bridge_stg.eval.metrics.score`'s result (one row per annotated sentence, in annotation
    order) and ``metrics`` :func:`~bridge_stg.eval.metrics.summarize`'s. ``sentence_types``: the registry record's
    types (empty for datasets without them).
    """

    dataset: str
    title: str
    annotations: Path
    predictions_path: Path
    protocol: str
    records: dict[int, SentenceRecord]
    predictions: PredictionTable
    scores: SentenceScores
    metrics: dict
    sentence_types: tuple[str, ...]


def evaluate_files(dataset: str, annotations: Path, predictions: Path, protocol: str = "tubedetr",
                   vidor_dir: Path | None = None, thresholds: Sequence[float] = (0.3, 0.5)) -> Evaluation:
    """Read and score ``predictions`` against ``annotations`` as ``bridge-stg-eval`` does (same reader, targets and
    scorer). Raises ``ValueError`` (unknown dataset, bad files, predictions that do not match the annotation, such as
    sentence ids absent from it or missing sentences) or ``OSError``."""
    if not Path(annotations).is_file():
        raise FileNotFoundError(f"annotation file not found: {annotations}")
    scored = score_files(dataset, annotations, predictions, protocol, thresholds, ReadOptions(vidor_dir=vidor_dir))
    info = get_dataset(dataset)
    return Evaluation(dataset=dataset, title=info.title, annotations=Path(annotations),
                      predictions_path=Path(predictions), protocol=scored.scores.protocol,
                      records={r.sentence_id: r for r in scored.records}, predictions=scored.predictions,
                      scores=scored.scores, metrics=scored.metrics, sentence_types=info.sentence_types)


def read_probabilities(path: Path, sentence_ids: Sequence[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """``{sentence_id: (frame_ids [T], probabilities [T, 3])}`` for the given sentences whose tube line
    carries :data:`PROBABILITY_KEY` (the tube format allows extra keys; the scorer ignores them). The probabilities
    belong to the line's :data:`PROBABILITY_FRAMES_KEY` when present, else to its ``frame_ids``. Reference-format
    files carry none. Probabilities that do not pair with their frames are a ``ValueError`` naming the line."""
    path = Path(path)
    if detect_format(path) != "tubes":
        return {}
    wanted = {int(i) for i in sentence_ids}
    key = f'"{PROBABILITY_KEY}"'.encode()
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            if key not in line:
                continue
            entry = json.loads(line)
            sid, probs = entry.get("sentence_id"), entry.get(PROBABILITY_KEY)
            if sid not in wanted or probs is None:
                continue
            frames = np.asarray(entry.get(PROBABILITY_FRAMES_KEY, entry.get("frame_ids", [])), dtype=np.int64)
            try:
                probs = np.asarray(probs, dtype=np.float64)
            except ValueError:
                probs = np.zeros(0)  # ragged rows
            if probs.shape != (len(frames), len(PROBABILITY_COLUMNS)) or not np.isfinite(probs).all():
                raise ValueError(f"{path}: line {n}: '{PROBABILITY_KEY}' must hold one finite row "
                                 f"{list(PROBABILITY_COLUMNS)} per frame of '{PROBABILITY_FRAMES_KEY}' (else of "
                                 f"'frame_ids'): {len(frames)} frames, probabilities of shape {list(probs.shape)}")
            out[sid] = (frames, probs)
    return out


# ------------------------------------------------------------------------------------------------------ samples


@dataclass(frozen=True)
class Sample:
    """One scored sentence as the report shows it (scores from :class:`SentenceScores`, facts from its record)."""

    record: SentenceRecord
    tiou: float
    viou: float
    gt_viou: float
    kind: str
    pred_span: tuple[int, int]
    tube_seconds: float
    box_area_01: float  # mean GT box area over the tube, as a fraction of the frame


def samples_of(ev: Evaluation) -> list[Sample]:
    """A :class:`Sample` per scored sentence, in the scores' order."""
    s = ev.scores
    pred_at = {int(sid): j for j, sid in enumerate(ev.predictions.sentence_ids)}
    out = []
    for i, sid in enumerate(s.sentence_ids.tolist()):
        rec = ev.records[sid]
        j = pred_at[sid]
        ts, te = rec.tube
        inside = (rec.box_frame_ids >= ts) & (rec.box_frame_ids < te)
        boxes = rec.boxes_xyxy_px[inside]
        area = float(np.mean((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))) if len(boxes) else 0.0
        out.append(Sample(
            record=rec, tiou=float(s.tiou[i]), viou=float(s.viou[i]), gt_viou=float(s.gt_viou[i]),
            kind=failure_kind(float(s.tiou[i]), float(s.gt_viou[i])),
            pred_span=(int(ev.predictions.span_start[j]), int(ev.predictions.span_end[j])),
            tube_seconds=(te - ts) / rec.fps, box_area_01=area / max(rec.width * rec.height, 1)))
    return out


def select_gallery(viou: np.ndarray, count: int) -> dict[str, list[int]]:
    """Positions of the ``count`` best, median and worst sentences by vIoU (ties in annotation order).

    Each sentence appears in one group: the worst are taken first, then the best from the rest, then the ``count``
    around the middle of what remains. Best are listed from the highest vIoU, median and worst from the lowest.
    """
    order = np.argsort(np.asarray(viou), kind="stable").tolist()
    worst = order[:count]
    rest = order[count:]
    best = rest[::-1][:count]
    rest = rest[:max(len(rest) - count, 0)]
    start = max(len(rest) // 2 - count // 2, 0)
    return {"best": best, "median": rest[start:start + count], "worst": worst}


def sheet_frame_ids(record: SentenceRecord, pred_span: tuple[int, int], pred_frames: np.ndarray,
                    count: int) -> np.ndarray:
    """Up to ``count`` frame ids for a sample's contact sheet.

    They are spread evenly from the earlier of the two span starts to the later end (so a gap between disjoint spans
    shows too); one that falls in the predicted span moves to the nearest frame carrying a predicted box inside it,
    so that the sheet draws the file's own boxes and never an interpolation.
    """
    (ts, te), (ps, pe) = record.tube, pred_span
    lo = max(min(ts, ps), 0)
    hi = min(max(te, pe), record.frame_count)
    if hi <= lo:
        lo, hi = ts, te
    ids = np.unique(np.linspace(lo, hi - 1, count).round().astype(np.int64))
    boxed = pred_frames[(pred_frames >= ps) & (pred_frames < pe)]
    in_pred = (ids >= ps) & (ids < pe)
    if len(boxed) and in_pred.any():
        ids[in_pred] = boxed[np.abs(boxed[None, :] - ids[in_pred][:, None]).argmin(axis=1)]
    return np.unique(ids)


def _boxes_by_frame(frame_ids: np.ndarray, box_frames: np.ndarray, boxes: np.ndarray,
                    span: tuple[int, int]) -> dict[int, tuple[float, float, float, float]]:
    """The boxes of ``box_frames`` on those of ``frame_ids`` that lie in ``span`` (exact frames only)."""
    out = {}
    for f in frame_ids.tolist():
        if span[0] <= f < span[1]:
            at = np.flatnonzero(box_frames == f)
            if len(at):
                out[f] = tuple(float(v) for v in make_valid_xyxy(boxes[at[0]]))
    return out


def load_frames(videos: Path | None, record: SentenceRecord, frame_ids: np.ndarray) -> tuple[np.ndarray | None, str]:
    """The sample's frames (uint8 RGB) read from ``videos / record.video_path``, or None and why not.

    Only ``frame_ids`` are decoded, never the whole video. A missing or unreadable video is not an error: the report
    draws the boxes on blank canvases and says why.
    """
    if videos is None:
        return None, "no video folder given"
    path = videos / record.video_path
    try:
        return read_frames(path, frame_ids, expected_frame_count=record.frame_count), ""
    except (VideoReadError, ValueError) as e:
        reason = getattr(e, "reason", "unreadable")
        return None, f"video {reason}: {path}"


# ------------------------------------------------------------------------------------------------------- charts


def _figure(width_in: float = 5.0, height_in: float = 3.4) -> Figure:
    """A matplotlib figure on the Agg canvas (no pyplot: no global state, no display needed)."""
    fig = Figure(figsize=(width_in, height_in), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def histogram_figure(values: np.ndarray, groups: np.ndarray | None, group_names: Sequence[str], label: str) -> Figure:
    """Histogram of a per-sentence score in [0, 1], stacked by sentence type when ``groups`` is given."""
    fig = _figure()
    ax = fig.add_subplot()
    bins = np.linspace(0.0, 1.0, 21)
    if groups is None:
        ax.hist(values, bins=bins, color="#4c72b0", edgecolor="white")
    else:
        ax.hist([values[groups == g] for g in group_names], bins=bins, stacked=True, edgecolor="white",
                label=[f"{g} ({int((groups == g).sum())})" for g in group_names])
        ax.legend(frameon=False)
    ax.set(xlabel=label, ylabel="sentences", xlim=(0, 1), title=f"{label} of {len(values)} sentences")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    return fig


def scatter_figure(x: np.ndarray, viou: np.ndarray, kinds: Sequence[str], xlabel: str,
                   fraction_log_x: bool = False) -> Figure:
    """vIoU against a per-sentence quantity, coloured by failure kind. ``fraction_log_x``: ``x`` is a fraction shown
    in percent on a log axis (box sizes span orders of magnitude), ticked at 1, 2 and 5 of each decade."""
    fig = _figure()
    ax = fig.add_subplot()
    kinds = np.asarray(kinds)
    for kind, name in FAILURE_KINDS.items():
        sel = kinds == kind
        if sel.any():
            ax.scatter(x[sel], viou[sel], s=14, alpha=0.75, color=KIND_COLOURS[kind],
                       label=f"{name} ({int(sel.sum())})")
    if fraction_log_x and len(x) and (x > 0).all():
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{100 * v:g}%"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set(xlabel=xlabel, ylabel="vIoU", ylim=(-0.02, 1.02))
    ax.legend(frameon=False, fontsize="small")
    return fig


# --------------------------------------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1.5em auto;max-width:1400px;
  padding:0 1em;color:#222;background:#fff}
h1{font-size:1.5em;margin-bottom:.2em} h2{margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0} th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
thead th{background:#f3f3f3} tbody th{text-align:left;background:#fafafa}
.meta{color:#555;font-size:.9em} .meta code{font-size:.95em}
.note{background:#fff7e0;border:1px solid #f0d58a;padding:.5em .8em;border-radius:4px}
.charts{display:flex;flex-wrap:wrap;gap:1em} .charts img{border:1px solid #ddd;max-width:100%}
.filters{position:sticky;top:0;background:#fff;padding:.5em 0;border-bottom:1px solid #eee;z-index:1}
.filters label{margin-right:1.2em}
.group{margin-top:1em}
.card{border:1px solid #ddd;border-left:6px solid #999;border-radius:4px;padding:.6em .8em;margin:.8em 0}
.card.wrong-span{border-left-color:#d62728} .card.wrong-box{border-left-color:#ff7f0e}
.card.good{border-left-color:#2ca02c}
.card h3{margin:.1em 0 .3em;font-size:1.05em} .card .query{font-size:1.05em;margin:.3em 0}
.card img{display:block;max-width:100%;margin:.4em 0;border:1px solid #eee}
.card table{font-size:.9em} .card .frames-note{color:#8a6d00;font-size:.85em}
.badge{display:inline-block;padding:0 .5em;border-radius:3px;color:#fff;font-size:.85em;margin-left:.4em}
.badge.wrong-span{background:#d62728} .badge.wrong-box{background:#ff7f0e} .badge.good{background:#2ca02c}
.badge.qtype{background:#4c72b0}
[hidden]{display:none !important}
"""

_JS = """
(function () {
  var kind = document.getElementById('filter-kind');
  var qtype = document.getElementById('filter-qtype');
  var cards = Array.prototype.slice.call(document.querySelectorAll('.card'));
  var groups = Array.prototype.slice.call(document.querySelectorAll('.group'));
  var shown = document.getElementById('shown');
  function apply() {
    var n = 0;
    cards.forEach(function (c) {
      var ok = (kind.value === 'all' || c.dataset.kind === kind.value) &&
               (!qtype || qtype.value === 'all' || c.dataset.qtype === qtype.value);
      c.hidden = !ok;
      if (ok) { n += 1; }
    });
    groups.forEach(function (g) { g.hidden = !g.querySelector('.card:not([hidden])'); });
    shown.textContent = n + ' of ' + cards.length + ' samples shown';
  }
  kind.addEventListener('change', apply);
  if (qtype) { qtype.addEventListener('change', apply); }
  apply();
})();
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _pct(value: float) -> str:
    return f"{100 * value:.2f}"


def summary_table(ev: Evaluation) -> str:
    """The summary as ``bridge-stg-eval`` prints it (values ×100): one row per sentence type present (VidSTG) or one
    row ``all``, the columns m_tIoU, m_vIoU, vIoU@R..., m_gt_vIoU, gt_vIoU@R...; VidSTG adds the average m_vIoU."""
    m, thresholds = ev.metrics, ev.scores.thresholds
    names = ["tiou", "viou", *(f"viou@{t:g}" for t in thresholds), "gt_viou", *(f"gt_viou@{t:g}" for t in thresholds)]
    groups = [t for t in ev.sentence_types if f"{t}_count" in m] or [""]
    head = "".join(f"<th>{_e(metric_label(n))}</th>" for n in names)
    rows = []
    for g in groups:
        prefix = f"{g}_" if g else ""
        label = f"{g} ({m[prefix + 'count']})" if g else f"all ({m['count']})"
        cells = "".join(f"<td>{_pct(m[prefix + n])}</td>" for n in names)
        rows.append(f"<tr><th>{_e(label)}</th>{cells}</tr>")
    if "average_viou" in m:
        rows.append(f'<tr class="average"><th>average m_vIoU</th><td>{_pct(m["average_viou"])}</td>'
                    f'<td colspan="{len(names) - 1}"></td></tr>')
    return (f'<table id="summary" class="summary"><thead><tr><th>sentences</th>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


def kinds_table(samples: Sequence[Sample], types: Sequence[str]) -> str:
    """Sentences per failure kind (and per sentence type when the dataset has types)."""
    present = [t for t in types if any(s.record.sentence_type == t for s in samples)]
    cols = [("all", None), *((t, t) for t in present)]
    head = "".join(f"<th>{_e(name)}</th>" for name, _ in cols)
    rows = []
    for kind, name in FAILURE_KINDS.items():
        cells = []
        for _, t in cols:
            pool = [s for s in samples if t is None or s.record.sentence_type == t]
            n = sum(s.kind == kind for s in pool)
            cells.append(f"<td>{n} ({100 * n / max(len(pool), 1):.1f}%)</td>")
        rows.append(f'<tr><th><span class="badge {kind}">{_e(name)}</span></th>{"".join(cells)}</tr>')
    return (f'<table id="kinds"><thead><tr><th>failure kind</th>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


@dataclass(frozen=True)
class Card:
    """A rendered gallery sample: its sample, its group and rank, its asset names and a note on its frames."""

    sample: Sample
    group: str
    rank: int
    sheet: str
    timeline: str
    frames_note: str


def _card_html(card: Card) -> str:
    s, rec = card.sample, card.sample.record
    qtype = rec.sentence_type or ""
    (ts, te), (ps, pe) = rec.tube, s.pred_span
    badges = f'<span class="badge {s.kind}">{_e(FAILURE_KINDS[s.kind])}</span>'
    if qtype:
        badges += f'<span class="badge qtype">{_e(qtype)}</span>'
    note = f'<p class="frames-note">blank canvases: {_e(card.frames_note)}</p>' if card.frames_note else ""
    return f"""
<article class="card {s.kind}" data-kind="{s.kind}" data-qtype="{_e(qtype)}" data-group="{card.group}"
  data-sentence="{rec.sentence_id}">
<h3>{_e(card.group)} #{card.rank} · sentence {rec.sentence_id} · video {_e(rec.video_id)}{badges}</h3>
<p class="query">“{_e(rec.query)}”</p>
<table class="numbers"><thead><tr><th>tIoU</th><th>vIoU</th><th>gt_vIoU</th><th>GT span (frames)</th>
<th>predicted span (frames)</th><th>fps</th></tr></thead>
<tbody><tr><td>{_pct(s.tiou)}</td><td>{_pct(s.viou)}</td><td>{_pct(s.gt_viou)}</td>
<td>[{ts}, {te}) = {te - ts} · {ts / rec.fps:.2f}–{te / rec.fps:.2f} s</td>
<td>[{ps}, {pe}) = {pe - ps} · {ps / rec.fps:.2f}–{pe / rec.fps:.2f} s</td><td>{rec.fps:g}</td></tr></tbody></table>
<img src="assets/{_e(card.sheet)}" alt="contact sheet of sentence {rec.sentence_id}: predicted against GT boxes">
<img src="assets/{_e(card.timeline)}" alt="timeline of sentence {rec.sentence_id}: predicted and GT spans">
{note}</article>"""


def render_html(ev: Evaluation, samples: Sequence[Sample], cards: Sequence[Card], charts: Sequence[tuple[str, str]],
                frames_note: str) -> str:
    """The page: header, summary, failure kinds, charts (``(asset, alt text)``), the filterable gallery."""
    kind_options = "".join(f'<option value="{k}">{_e(n)}</option>' for k, n in FAILURE_KINDS.items())
    qtype_filter = ""
    types = [t for t in ev.sentence_types if any(s.record.sentence_type == t for s in samples)]
    if types:
        options = "".join(f'<option value="{_e(t)}">{_e(t)}</option>' for t in types)
        qtype_filter = (f'<label>sentence type <select id="filter-qtype"><option value="all">all</option>{options}'
                        "</select></label>")
    groups = []
    for group in GALLERY_GROUPS:
        members = [c for c in cards if c.group == group]
        if members:
            groups.append(f'<section class="group" id="group-{group}"><h3>{group} ({len(members)})</h3>'
                          + "".join(_card_html(c) for c in members) + "</section>")
    chart_html = "".join(f'<img src="assets/{_e(a)}" alt="{_e(alt)}">' for a, alt in charts)
    m = ev.metrics
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Bridge-STG report: {_e(ev.title)}, {_e(ev.predictions_path.name)}</title>
<style>{_CSS}</style></head>
<body>
<h1>Evaluation report: {_e(ev.title)}</h1>
<p class="meta">predictions <code>{_e(ev.predictions_path)}</code> · annotations <code>{_e(ev.annotations)}</code>
· protocol <code>{_e(ev.protocol)}</code> · {m['count']} sentences · generated by <code>bridge-stg-report</code></p>

<h2>Summary</h2>
<p>The numbers <code>bridge-stg-eval</code> prints for the same files (×100; vIoU@R counts vIoU &gt; R).</p>
{summary_table(ev)}

<h2>Failure kinds</h2>
<p>wrong span: tIoU &lt; {SPAN_OK_TIOU:g}; right span, wrong box: tIoU ≥ {SPAN_OK_TIOU:g} and
gt_vIoU &lt; {BOX_OK_GT_VIOU:g}; good: otherwise (gt_vIoU is the mean box IoU over the GT frames).</p>
{kinds_table(samples, ev.sentence_types)}

<h2>Distributions</h2>
<div class="charts">{chart_html}</div>

<h2>Gallery</h2>
<p>The best, median and worst sentences by vIoU (numbers ×100). Contact sheets: the predicted box in orange (an
orange bar marks frames in the predicted span), the GT box in cyan, on frames spread over both spans. Timelines: the
predicted span shaded orange and the GT span hatched cyan over the whole video, with the start, end and inside
probabilities when the prediction file carries them.</p>
<p class="note" id="frames-note">{_e(frames_note)}</p>
<div class="filters"><label>failure kind <select id="filter-kind"><option value="all">all</option>{kind_options}
</select></label>{qtype_filter}<span id="shown"></span></div>
{''.join(groups)}
<script>{_JS}</script>
</body></html>
"""


# -------------------------------------------------------------------------------------------------------- write


def check_out_dir(out: Path) -> None:
    """Refuse an output folder that is a file, or that holds anything but an earlier report (so that a report never
    overwrites other files). A missing folder is fine: it is created."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder (it is created when missing)")
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in REPORT_ENTRIES)
        if foreign:
            raise ValueError(f"--out {out} holds files that are not a report's ({foreign[:5]}); give a new or empty "
                             "folder, or an earlier report's folder")


def write_report(ev: Evaluation, out: Path, videos: Path | None = None, gallery_size: int = DEFAULT_GALLERY_SIZE,
                 frames_per_sample: int = DEFAULT_FRAMES_PER_SAMPLE) -> Path:
    """Write the report of ``ev`` into the folder ``out`` and return its ``index.html``.

    The report is built in a sibling folder and moved into place at the end, so an interrupted run leaves the earlier
    report (or none), never a mix. ``videos``: the folder the annotation's video paths are relative to.
    """
    out = Path(out).resolve()  # absolute, so that its parent is never itself ("--out .")
    check_out_dir(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "assets").mkdir(parents=True)
    try:
        _write_into(ev, tmp, videos, gallery_size, frames_per_sample)
        if out.exists():
            check_out_dir(out)
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out / "index.html"


def _write_into(ev: Evaluation, folder: Path, videos: Path | None, gallery_size: int, frames_per_sample: int) -> None:
    assets = folder / "assets"
    samples = samples_of(ev)
    viou = np.array([s.viou for s in samples])
    tiou = np.array([s.tiou for s in samples])
    kinds = [s.kind for s in samples]
    types = [t for t in ev.sentence_types if any(s.record.sentence_type == t for s in samples)]
    groups = np.array([s.record.sentence_type for s in samples], dtype=object) if types else None

    charts = [
        ("hist_tiou.png", histogram_figure(tiou, groups, types, "tIoU"), "histogram of tIoU"),
        ("hist_viou.png", histogram_figure(viou, groups, types, "vIoU"), "histogram of vIoU"),
        ("viou_vs_tube_length.png", scatter_figure(np.array([s.tube_seconds for s in samples]), viou, kinds,
                                                   "GT tube length (s)"), "vIoU against GT tube length"),
        ("viou_vs_box_size.png", scatter_figure(np.array([s.box_area_01 for s in samples]), viou, kinds,
                                                "mean GT box area (% of the frame)", fraction_log_x=True),
         "vIoU against GT box size"),
    ]
    for name, fig, _ in charts:
        save_png(fig, assets / name)

    chosen = select_gallery(viou, gallery_size)
    picked = [samples[i] for g in GALLERY_GROUPS for i in chosen[g]]
    probabilities = read_probabilities(ev.predictions_path, [s.record.sentence_id for s in picked])
    pred_at = {int(sid): j for j, sid in enumerate(ev.predictions.sentence_ids)}
    cards, blank = [], 0
    for group in GALLERY_GROUPS:
        for rank, i in enumerate(chosen[group], 1):
            card = _render_sample(ev, samples[i], pred_at[samples[i].record.sentence_id], group, rank, assets,
                                  videos, frames_per_sample, probabilities)
            blank += bool(card.frames_note)
            cards.append(card)

    if videos is None:
        frames_note = ("No video folder was given (--videos): boxes are drawn on blank canvases of the frame size.")
    elif blank:
        frames_note = (f"Frames read from {videos}; {blank} of {len(cards)} samples could not read their video and "
                       "show boxes on blank canvases (each says why).")
    else:
        frames_note = f"Frames read from {videos}."
    page = render_html(ev, samples, cards, [(a, alt) for a, _, alt in charts], frames_note)
    (folder / "index.html").write_text(page, encoding="utf-8")
    metrics = dict(ev.metrics, dataset=ev.dataset, annotations=str(ev.annotations),
                   predictions=str(ev.predictions_path))
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")


def _render_sample(ev: Evaluation, s: Sample, pred_pos: int, group: str, rank: int, assets: Path,
                   videos: Path | None, frames_per_sample: int,
                   probabilities: dict[int, tuple[np.ndarray, np.ndarray]]) -> Card:
    """Draw one gallery sample's contact sheet and timeline into ``assets``."""
    rec, preds = s.record, ev.predictions
    own = np.flatnonzero(preds.box_owner == pred_pos)
    pred_frames, pred_boxes = preds.box_frame[own], preds.boxes_xyxy_px[own]
    frame_ids = sheet_frame_ids(rec, s.pred_span, pred_frames, frames_per_sample)
    frames, why = load_frames(videos, rec, frame_ids)
    sheet = contact_sheet(frames, frame_ids.tolist(), (rec.height, rec.width),
                          _boxes_by_frame(frame_ids, pred_frames, pred_boxes, s.pred_span),
                          _boxes_by_frame(frame_ids, rec.box_frame_ids, rec.boxes_xyxy_px, rec.tube),
                          (frame_ids / rec.fps).tolist())
    sid = rec.sentence_id
    sheet_name, timeline_name = f"sheet_{sid}.png", f"timeline_{sid}.png"
    save_png(sheet, assets / sheet_name)
    # ticks at the frames the probabilities belong to, else at the frames the file gives boxes for
    prob_frames, probs = probabilities.get(sid, (pred_frames, None))
    (ts, te), (ps, pe) = rec.tube, s.pred_span
    fig = timeline_figure(prob_frames / rec.fps, probs, (ps / rec.fps, pe / rec.fps), (ts / rec.fps, te / rec.fps),
                          f"sentence {sid}: {FAILURE_KINDS[s.kind]}", duration_s=rec.frame_count / rec.fps)
    save_png(fig, assets / timeline_name)
    return Card(sample=s, group=group, rank=rank, sheet=sheet_name, timeline=timeline_name, frames_note=why)
