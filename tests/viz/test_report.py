"""bridge-stg-report end to end: a small synthetic benchmark (videos + VidSTG-format annotations) and simulated VidSTG
annotations (sentence types), scored through the library and checked against bridge-stg-eval; the page opened in
headless Chromium (every image loads, tables have rows, the filters work), skipped when no Chromium is installed."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bridge_stg.annotations import write_vidstg_official
from bridge_stg.cli import report as report_cli
from bridge_stg.cli import score as score_cli
from bridge_stg.data.synthetic import SyntheticConfig, annotation_paths, generate_benchmark
from bridge_stg.eval.prediction_files import write_tubes
from bridge_stg.eval.simulate import simulate_predictions, simulate_vidstg
from bridge_stg.viz.report import (
    BOX_OK_GT_VIOU,
    GOOD,
    SPAN_OK_TIOU,
    WRONG_BOX,
    WRONG_SPAN,
    failure_kind,
    read_probabilities,
    select_gallery,
)

TINY = SyntheticConfig(seconds=4.0, fps=5.0, width_px=64, height_px=64, size_px=(8, 14))
NUM_CLIPS = 6
GALLERY = 2  # per group: 3 groups x 2 = all 6 sentences
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless_shell")
CHROMIUM_TIMEOUT_S = 60


# ---------------------------------------------------------------------------------------------------- fixtures


class Page(HTMLParser):
    """What the tests read from a report page: images, tables (id -> body rows), gallery cards, select options."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.images: list[str] = []
        self.tables: list[dict] = []
        self.cards: list[dict[str, str]] = []
        self.options: dict[str, list[str]] = {}
        self.links: list[str] = []
        self._stack: list[dict] = []
        self._tbody = False
        self._select: str | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "img":
            self.images.append(a.get("src", ""))
        elif tag == "table":
            self._stack.append({"id": a.get("id", ""), "class": a.get("class", ""), "rows": 0})
        elif tag == "tbody":
            self._tbody = True
        elif tag == "tr" and self._tbody and self._stack:
            self._stack[-1]["rows"] += 1
        elif tag == "article":
            self.cards.append(a)
        elif tag == "select":
            self._select = a.get("id", "")
            self.options[self._select] = []
        elif tag == "option" and self._select is not None:
            self.options[self._select].append(a.get("value", ""))
        elif tag in ("link", "script", "a", "iframe", "source") and (a.get("href") or a.get("src")):
            self.links.append(a.get("href") or a.get("src") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self._tbody = False
        elif tag == "table" and self._stack:
            self.tables.append(self._stack.pop())
        elif tag == "select":
            self._select = None

    def table(self, table_id: str) -> dict:
        return next(t for t in self.tables if t["id"] == table_id)


def run_report(*args: object) -> int:
    return report_cli.main([str(a) for a in args])


def add_probabilities(path: Path, sentence_ids: set[int]) -> None:
    """Give some tube lines the optional per-frame probabilities (an extra key the scorer ignores)."""
    lines = []
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        if entry["sentence_id"] in sentence_ids:
            inside = np.linspace(0.1, 0.9, len(entry["frame_ids"])).round(3)
            entry["probabilities"] = np.stack([1 - inside, inside / 2, inside], axis=1).tolist()
        lines.append(json.dumps(entry))
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> dict[str, Path]:
    """A 6-clip synthetic benchmark (videos and VidSTG + VidOR files) and noisy predictions of it."""
    root = tmp_path_factory.mktemp("report_bench")
    records = generate_benchmark(TINY, root / "synthetic", {"test": NUM_CLIPS})["test"]
    paths = annotation_paths(root / "synthetic", "test")
    preds = root / "pred.jsonl"
    write_tubes(preds, simulate_predictions(records, span_noise=0.4, box_noise=0.25, seed=1))
    add_probabilities(preds, {records[0].sentence_id, records[1].sentence_id})
    return {"annotations": paths["vidstg"], "vidor_dir": paths["vidor_dir"], "predictions": preds,
            "videos": root / "synthetic" / "videos", "root": root}


def synthetic_args(bench: dict[str, Path], **override: object) -> list[object]:
    args = {"--dataset": "synthetic", "--annotations": bench["annotations"], "--vidor-dir": bench["vidor_dir"],
            "--predictions": bench["predictions"], **override}
    return [x for k, v in args.items() if v is not None for x in (k, v)]


@pytest.fixture(scope="module")
def report(bench) -> Path:
    """The report of the synthetic benchmark, with frames read from its videos."""
    out = bench["root"] / "report"
    assert run_report(*synthetic_args(bench), "--videos", bench["videos"], "--out", out,
                      "--gallery-size", GALLERY) == 0
    return out


# -------------------------------------------------------------------------------------------------- the rules


def test_failure_kind_rule_and_its_thresholds():
    assert (SPAN_OK_TIOU, BOX_OK_GT_VIOU) == (0.5, 0.5)
    assert failure_kind(0.49, 1.0) == WRONG_SPAN
    assert failure_kind(0.0, 0.0) == WRONG_SPAN
    assert failure_kind(0.5, 0.49) == WRONG_BOX
    assert failure_kind(0.5, 0.5) == GOOD
    assert failure_kind(1.0, 0.9) == GOOD


def test_gallery_groups_are_disjoint_and_ordered():
    viou = np.array([0.5, 0.1, 0.9, 0.3, 0.7, 0.0, 0.6, 0.2, 0.8, 0.4])
    g = select_gallery(viou, 3)
    assert [viou[i] for i in g["worst"]] == [0.0, 0.1, 0.2]
    assert [viou[i] for i in g["best"]] == [0.9, 0.8, 0.7]
    assert [viou[i] for i in g["median"]] == [0.4, 0.5, 0.6]
    small = select_gallery(viou[:4], 3)  # fewer sentences than 3 groups: each appears once
    assert sorted(i for ids in small.values() for i in ids) == [0, 1, 2, 3]


def test_probabilities_are_read_from_extra_tube_keys(bench, tmp_path):
    probs = read_probabilities(bench["predictions"], [0, 1, 2])
    assert set(probs) == {0, 1}
    frames, p = probs[0]
    assert p.shape == (len(frames), 3) and p[0, 2] == pytest.approx(0.1) and p[-1, 2] == pytest.approx(0.9)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"sentence_id": 0, "span": [0, 2], "frame_ids": [0, 1], "boxes_xyxy": [0] * 8,
                               "probabilities": [[0.5, 0.5, 0.5]]}) + "\n")
    with pytest.raises(ValueError, match=r"line 1: .* 2 frames, probabilities of shape \[1, 3\]"):
        read_probabilities(bad, [0])
    rows = tmp_path / "rows.jsonl"  # the predictor's layout: [start, end, inside] per sampled frame
    rows.write_text(json.dumps({"sentence_id": 0, "span": [0, 2], "frame_ids": [0, 1], "boxes_xyxy": [0] * 8,
                                "sampled_frame_ids": [0, 2, 4], "probabilities": [[0.7, 0.1, 0.9]] * 3}) + "\n")
    frames, p = read_probabilities(rows, [0])[0]
    assert frames.tolist() == [0, 2, 4] and p.shape == (3, 3)


# ---------------------------------------------------------------------------------------------- the synthetic page


def test_report_holds_the_numbers_of_bridge_stg_eval(bench, report, tmp_path, capsys):
    metrics_file, per_sentence = tmp_path / "m.json", tmp_path / "s.jsonl"
    assert score_cli.main([str(x) for x in synthetic_args(bench)] + ["--out", str(metrics_file), "--per-sentence",
                                                                      str(per_sentence)]) == 0
    want = json.loads(metrics_file.read_text())
    got = json.loads((report / "metrics.json").read_text())
    numeric = [k for k, v in want.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
               and k not in ("excluded_sentences", "skipped_sentences")]  # bridge-stg-eval's reader options
    assert "viou" in numeric and {k: got[k] for k in numeric} == {k: want[k] for k in numeric}

    text = (report / "index.html").read_text()
    page = Page(text)
    summary = re.search(r'<table id="summary".*?</table>', text, re.S).group(0)
    row = re.search(r"<tr><th>all \(6\)</th>(.*?)</tr>", summary).group(1)
    cells = re.findall(r"<td>([^<]*)</td>", row)
    keys = ["tiou", "viou", "viou@0.3", "viou@0.5", "gt_viou", "gt_viou@0.3", "gt_viou@0.5"]
    assert cells == [f"{100 * want[k]:.2f}" for k in keys]
    assert page.table("summary")["rows"] == 1 and page.table("kinds")["rows"] == 3

    # every sentence is in the gallery once, with the kind its bridge-stg-eval scores give
    scores = {s["sentence_id"]: s for s in map(json.loads, per_sentence.read_text().splitlines())}
    assert sorted(int(c["data-sentence"]) for c in page.cards) == sorted(scores)
    for card in page.cards:
        s = scores[int(card["data-sentence"])]
        assert card["data-kind"] == failure_kind(s["tiou"], s["gt_viou"])
    assert [c["data-group"] for c in page.cards] == ["best"] * 2 + ["median"] * 2 + ["worst"] * 2
    vious = [scores[int(c["data-sentence"])]["viou"] for c in page.cards]
    assert min(vious[:2]) >= max(vious[2:4]) and min(vious[2:4]) >= max(vious[4:])
    assert "Frames read from" in text and "blank canvases:" not in text
    assert "bridge-stg-report" not in capsys.readouterr().err


def test_report_is_self_contained(report):
    text = (report / "index.html").read_text()
    page = Page(text)
    assert page.links == []  # no stylesheet, script, frame or link to fetch
    assert not re.search(r"https?:|//[a-z]|@import|url\(", text, re.I)
    assert len(page.images) == 4 + 2 * NUM_CLIPS  # 4 charts, a contact sheet and a timeline per sample
    for src in page.images:
        assert src.startswith("assets/") and (report / src).is_file(), src
        with Image.open(report / src) as im:
            assert im.format == "PNG" and min(im.size) > 50
    assert sorted(p.name for p in report.iterdir()) == ["assets", "index.html", "metrics.json"]


def test_without_videos_boxes_go_on_blank_canvases(bench, tmp_path):
    out = tmp_path / "report"
    assert run_report(*synthetic_args(bench), "--out", out, "--gallery-size", 1) == 0
    text = (out / "index.html").read_text()
    assert "No video folder was given" in text and text.count("blank canvases: no video folder given") == 3
    # a video folder without the videos: each sample says which file it lacked
    empty = tmp_path / "no_videos"
    empty.mkdir()
    assert run_report(*synthetic_args(bench), "--videos", empty, "--out", out, "--gallery-size", 1) == 0
    text = (out / "index.html").read_text()
    assert "3 of 3 samples could not read their video" in text and text.count("video missing: ") == 3


def test_vidstg_report_splits_by_sentence_type(tmp_path):
    records = simulate_vidstg(4, seed=5, max_seconds=8.0)
    write_vidstg_official(records, tmp_path / "test_annotations.json", tmp_path / "vidor")
    write_tubes(tmp_path / "pred.jsonl", simulate_predictions(records, span_noise=0.4, seed=6))
    out = tmp_path / "report"
    assert run_report("--dataset", "vidstg", "--annotations", tmp_path / "test_annotations.json", "--vidor-dir",
                      tmp_path / "vidor", "--predictions", tmp_path / "pred.jsonl", "--out", out,
                      "--gallery-size", 1) == 0
    text = (out / "index.html").read_text()
    page = Page(text)
    summary = re.search(r'<table id="summary".*?</table>', text, re.S).group(0)
    metrics = json.loads((out / "metrics.json").read_text())
    for t in ("declarative", "interrogative"):
        row = re.search(rf"<tr><th>{t} \(4\)</th>(.*?)</tr>", summary).group(1)
        assert re.findall(r"<td>([^<]*)</td>", row)[1] == f"{100 * metrics[f'{t}_viou']:.2f}"
    assert f"<th>average m_vIoU</th><td>{100 * metrics['average_viou']:.2f}</td>" in summary
    assert page.table("summary")["rows"] == 3
    assert page.options["filter-qtype"] == ["all", "declarative", "interrogative"]
    assert page.options["filter-kind"] == ["all", WRONG_SPAN, WRONG_BOX, GOOD]
    assert {c["data-qtype"] for c in page.cards} <= {"declarative", "interrogative"} and len(page.cards) == 3


# ---------------------------------------------------------------------------------------------------- bad input


def one_error_line(capsys) -> str:
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bridge-stg-report: error: "), err
    return lines[0]


def test_predictions_for_other_sentences_are_refused(bench, tmp_path, capsys):
    shifted = tmp_path / "shifted.jsonl"
    lines = [json.loads(line) for line in bench["predictions"].read_text().splitlines()]
    shifted.write_text("".join(json.dumps(dict(e, sentence_id=e["sentence_id"] + 1000)) + "\n" for e in lines))
    out = tmp_path / "report"
    assert run_report(*synthetic_args(bench, **{"--predictions": shifted}), "--out", out) == 2
    assert "sentence ids not in the annotation" in one_error_line(capsys)
    assert not out.exists()

    partial = tmp_path / "partial.jsonl"
    partial.write_text("".join(json.dumps(e) + "\n" for e in lines[1:]))
    assert run_report(*synthetic_args(bench, **{"--predictions": partial}), "--out", out) == 2
    assert "no prediction for 1 of 6 sentences" in one_error_line(capsys)


@pytest.mark.parametrize("case", ["missing predictions", "missing annotations", "unknown dataset", "temporal dataset",
                                  "out is a file", "out holds other files", "missing videos folder"])
def test_bad_input_is_one_error_line(bench, tmp_path, capsys, case):
    out = tmp_path / "report"
    override: dict[str, object] = {}
    if case == "missing predictions":
        override["--predictions"] = tmp_path / "nope.jsonl"
    elif case == "missing annotations":
        override["--annotations"] = tmp_path / "nope.json"
    elif case == "unknown dataset":
        override["--dataset"] = "vidsgt"
    elif case == "temporal dataset":
        override["--dataset"] = "charades"
    elif case == "out is a file":
        out.write_text("x")
    elif case == "out holds other files":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    extra = ["--videos", tmp_path / "nope"] if case == "missing videos folder" else []
    assert run_report(*synthetic_args(bench, **override), *extra, "--out", out) == 2
    line = one_error_line(capsys)
    expected = {"missing predictions": "--predictions: file not found", "missing annotations":
                "--annotations: file not found", "unknown dataset": "unknown dataset 'vidsgt'",
                "temporal dataset": "not tubes", "out is a file": "is a file",
                "out holds other files": "holds files that are not a report's",
                "missing videos folder": "--videos: folder not found"}[case]
    assert expected in line
    if case == "out holds other files":
        assert (out / "notes.txt").read_text() == "mine"


# ------------------------------------------------------------------------------------------------------ browser

# Appended to a copy of the page: once everything has loaded, write what the browser saw into the DOM, where
# --dump-dom returns it. An image counts as loaded when complete with a natural width (a broken path gives 0).
_CHECK_SCRIPT = """
<script>
(function () {
  function check() {
    var out = {errors: window.__errors || []};
    out.images = Array.prototype.map.call(document.images, function (im) {
      return {src: im.getAttribute('src'), complete: im.complete, width: im.naturalWidth, height: im.naturalHeight};
    });
    out.tables = Array.prototype.map.call(document.querySelectorAll('table'), function (t) {
      return {id: t.id, cls: t.className, rows: t.tBodies.length ? t.tBodies[0].rows.length : 0};
    });
    out.shown = (document.getElementById('shown') || {}).textContent || '';
    out.filters = {};
    var kind = document.getElementById('filter-kind');
    Array.prototype.forEach.call(kind.options, function (o) {
      kind.value = o.value;
      kind.dispatchEvent(new Event('change'));
      out.filters[o.value] = document.querySelectorAll('.card:not([hidden])').length;
    });
    kind.value = 'all';
    kind.dispatchEvent(new Event('change'));
    var pre = document.createElement('pre');
    pre.id = 'browser-check';
    pre.textContent = JSON.stringify(out);
    document.body.appendChild(pre);
  }
  if (document.readyState === 'complete') { check(); } else { window.addEventListener('load', check); }
})();
</script>
"""
_ERROR_HOOK = "<script>window.__errors=[];window.addEventListener('error',function(e){__errors.push(e.message)});" \
              "</script>"


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            try:
                probe = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                continue
            if probe.returncode == 0:
                return path
    return None


@pytest.fixture(scope="module")
def chromium() -> str:
    path = find_chromium()
    if path is None:
        pytest.skip(f"no working Chromium binary on PATH (looked for {', '.join(CHROMIUM_NAMES)}); .ci/run installs "
                    "it from the distribution's packages where it can")
    return path


def run_chromium(chromium: str, profile: Path, *args: str) -> str:
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
           "--hide-scrollbars", f"--user-data-dir={profile}", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def browser_check(chromium: str, folder: Path, tmp_path: Path) -> dict:
    """Open a copy of ``folder/index.html`` with the check script in Chromium and return what it saw."""
    page = (folder / "index.html").read_text()
    page = page.replace("<head>", "<head>" + _ERROR_HOOK, 1).replace("</body>", _CHECK_SCRIPT + "</body>", 1)
    check = folder / "_browser_check.html"
    check.write_text(page)
    try:
        dom = run_chromium(chromium, tmp_path / "profile", "--dump-dom", check.as_uri())
    finally:
        check.unlink()
    found = re.search(r'<pre id="browser-check">(.*?)</pre>', dom, re.S)
    assert found, f"the check script wrote nothing; DOM tail: {dom[-500:]}"
    return json.loads(html.unescape(found.group(1)))


def test_report_renders_in_chromium(chromium, report, tmp_path):
    folder = tmp_path / "report"
    shutil.copytree(report, folder)
    seen = browser_check(chromium, folder, tmp_path)
    page = Page((folder / "index.html").read_text())
    assert seen["errors"] == []
    assert [im["src"] for im in seen["images"]] == page.images and len(page.images) == 4 + 2 * NUM_CLIPS
    broken = [im["src"] for im in seen["images"] if not (im["complete"] and im["width"] > 0 and im["height"] > 0)]
    assert broken == []
    tables = {t["id"]: t["rows"] for t in seen["tables"] if t["id"]}
    assert tables["summary"] >= 1 and tables["kinds"] == 3
    numbers = [t["rows"] for t in seen["tables"] if t["cls"] == "numbers"]
    assert numbers == [1] * NUM_CLIPS
    kinds = [c["data-kind"] for c in page.cards]
    assert seen["filters"] == {"all": NUM_CLIPS, **{k: kinds.count(k) for k in (WRONG_SPAN, WRONG_BOX, GOOD)}}
    assert seen["shown"] == f"{NUM_CLIPS} of {NUM_CLIPS} samples shown"

    shot = tmp_path / "screenshot.png"
    run_chromium(chromium, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,2400",
                 (folder / "index.html").as_uri())
    with Image.open(shot) as im:
        assert im.size == (1280, 2400)
        grey = np.asarray(im.convert("L"))
    assert grey.std() > 10  # not a blank page


def test_browser_check_catches_a_broken_image(chromium, report, tmp_path):
    """The check can fail: with one asset gone (a wrong path in the page reads the same), Chromium reports it."""
    folder = tmp_path / "report"
    shutil.copytree(report, folder)
    victim = sorted((folder / "assets").glob("sheet_*.png"))[0]
    victim.unlink()
    seen = browser_check(chromium, folder, tmp_path)
    broken = [im["src"] for im in seen["images"] if not (im["complete"] and im["width"] > 0)]
    assert broken == [f"assets/{victim.name}"]
