"""Paper-style tables (markdown, LaTeX) of our metrics files beside published numbers.

Rows are :class:`~bridge_stg.eval.published.ResultRow`; values are ×100 and render with one decimal, rounded
half up on their decimal representation (``28.05`` → ``28.1``). Every row states its protocol; a note under
the table warns when rows use different protocols. Our rows come from metrics files (fractions, keys of
:func:`bridge_stg.eval.metrics.summarize` plus ``dataset``, ``split`` and an optional ``name``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from itertools import groupby
from pathlib import Path

from bridge_stg.eval.datasets import dataset_names, metric_keys
from bridge_stg.eval.published import AVERAGE_VIOU, SENTENCE_TYPES, UNKNOWN_PROTOCOL, ResultRow

MISSING_MARKDOWN = "–"
MISSING_LATEX = "--"
PROTOCOL_NOTE = "rows with different protocols are not directly comparable"

_GROUPS = {"declarative": ("Declarative", "Decl."), "interrogative": ("Interrogative", "Int.")}
_LATEX_SPECIALS = {c: "\\" + c for c in "&%$#_{}"} | {
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}"}


@dataclass(frozen=True)
class Column:
    """A metric column: its ``key`` in :attr:`ResultRow.values`, ``group`` (sentence type or None), label."""

    key: str
    group: str | None
    label: str


def columns(dataset: str) -> list[Column]:
    """The metric columns of a ``dataset`` table, in order (Method and Protocol columns come before them)."""
    out = []
    for key in metric_keys(dataset):
        group = next((g for g in _GROUPS if key.startswith(f"{g}_")), None)
        metric = key.removeprefix(f"{group}_") if group else key
        label = "Avg. m_vIoU" if key == AVERAGE_VIOU else metric_label(metric)
        out.append(Column(key, group, label))
    return out


def protocol_label(protocol: str) -> str:
    return "not stated" if protocol == UNKNOWN_PROTOCOL else protocol


def format_value(value: float | None, missing: str) -> str:
    """``value`` (already ×100) with one decimal, or ``missing`` when None."""
    if value is None:
        return missing
    return str(Decimal(repr(float(value))).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def protocol_note(rows: Sequence[ResultRow]) -> str | None:
    """The warning to print under a table whose rows use more than one protocol, else None."""
    protocols = list(dict.fromkeys(protocol_label(r.protocol) for r in rows))
    if len(protocols) < 2:
        return None
    return f"Note: {PROTOCOL_NOTE} (protocols: {', '.join(protocols)})."


def _table_rows(dataset: str, rows: Sequence[ResultRow]) -> list[ResultRow]:
    """Published rows of ``dataset`` first, then ours; ours of another dataset are an error."""
    metric_keys(dataset)  # rejects unknown datasets
    foreign = [r.method for r in rows if r.ours and r.dataset != dataset]
    if foreign:
        raise ValueError(f"rows {foreign} are not {dataset} results; render one table per dataset")
    kept = [r for r in rows if r.dataset == dataset]
    if not kept:
        raise ValueError(f"no rows to render for dataset '{dataset}'")
    return [r for r in kept if not r.ours] + [r for r in kept if r.ours]


def _markdown_cell(text: str) -> str:
    return text.replace("|", r"\|")


def render_markdown(dataset: str, rows: Sequence[ResultRow]) -> str:
    """A markdown table for ``dataset``: published rows, then ours (in bold), then the protocol note."""
    cols = columns(dataset)
    header = ["Method", "Protocol"] + [f"{_GROUPS[c.group][1]} {c.label}" if c.group else c.label
                                       for c in cols]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join([":--", ":--"] + ["--:"] * len(cols)) + " |"]
    table_rows = _table_rows(dataset, rows)
    for r in table_rows:
        method = f"**{_markdown_cell(r.method)}**" if r.ours else _markdown_cell(r.method)
        cells = [method, _markdown_cell(protocol_label(r.protocol))]
        cells += [format_value(r.values.get(c.key), MISSING_MARKDOWN) for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    note = protocol_note(table_rows)
    return "\n".join(lines + ([f"\n{note}"] if note else []))


def latex_escape(text: str) -> str:
    """``text`` with LaTeX special characters escaped, for use in a tabular cell."""
    return "".join(_LATEX_SPECIALS.get(c, c) for c in text)


def _latex_group_header(cols: Sequence[Column]) -> list[str]:
    """The ``\\multicolumn`` group row and its ``\\cmidrule``s; empty when no column is grouped."""
    if all(c.group is None for c in cols):
        return []
    cells, rules, pos = ["", ""], [], 3  # LaTeX columns are 1-based; Method and Protocol come first
    for group, run in groupby(cols, key=lambda c: c.group):
        n = len(list(run))
        if group is None:
            cells += [""] * n
        else:
            cells.append(rf"\multicolumn{{{n}}}{{c}}{{{_GROUPS[group][0]}}}")
            rules.append(rf"\cmidrule(lr){{{pos}-{pos + n - 1}}}")
        pos += n
    return [" & ".join(cells) + r" \\", " ".join(rules)]


def render_latex(dataset: str, rows: Sequence[ResultRow]) -> str:
    """A booktabs ``tabular`` for ``dataset``: published rows, ``\\midrule``, ours; protocol note below it."""
    cols = columns(dataset)
    table_rows = _table_rows(dataset, rows)
    header = ["Method", "Protocol"] + [latex_escape(c.label) for c in cols]
    lines = [rf"\begin{{tabular}}{{ll{'r' * len(cols)}}}", r"\toprule", *_latex_group_header(cols),
             " & ".join(header) + r" \\", r"\midrule"]
    for i, r in enumerate(table_rows):
        if r.ours and i > 0 and not table_rows[i - 1].ours:
            lines.append(r"\midrule")
        cells = [latex_escape(r.method), latex_escape(protocol_label(r.protocol))]
        cells += [format_value(r.values.get(c.key), MISSING_LATEX) for c in cols]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    note = protocol_note(table_rows)
    if note:
        lines.append(rf"{{\footnotesize {latex_escape(note)}}}")
    return "\n".join(lines)


def _fraction_to_percent(value: object, key: str, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{source}: '{key}' must be a finite number, got {value!r}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{source}: '{key}' = {value} is not a fraction in [0, 1]; metrics files hold "
                         "fractions (tables multiply by 100)")
    return float(Decimal(repr(float(value))) * 100)


def _required(metrics: Mapping[str, object], key: str, source: str) -> object:
    if key not in metrics:
        raise ValueError(f"{source}: metrics file has no '{key}' key (the scoring command writes it; "
                         "add it by hand to an older file)")
    return metrics[key]


def row_from_metrics(metrics: Mapping[str, object], source: str, default_name: str) -> ResultRow:
    """Our row from a parsed metrics file; needs ``dataset``, ``split``, ``protocol`` and each shown metric.

    ``source`` names the file in errors; ``default_name`` labels the row when the file has no ``name``.
    """
    dataset = _required(metrics, "dataset", source)
    if dataset not in dataset_names("tube"):
        raise ValueError(f"{source}: unknown dataset {dataset!r}; expected one of {list(dataset_names('tube'))}")
    text = {k: _required(metrics, k, source) for k in ("split", "protocol")}
    text["name"] = metrics.get("name", default_name)
    for key, value in text.items():
        if not isinstance(value, str) or not value:
            raise ValueError(f"{source}: '{key}' must be a non-empty string, got {value!r}")
    values = {k: _fraction_to_percent(_required(metrics, k, source), k, source) for k in metric_keys(dataset)}
    return ResultRow(text["name"], dataset, text["split"], text["protocol"], values, ours=True)


def load_metrics_row(path: str | Path) -> ResultRow:
    """Our row from the metrics JSON file at ``path`` (row label: its ``name``, else the file stem)."""
    path = Path(path)
    try:
        metrics = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not a JSON file ({e})") from e
    if not isinstance(metrics, dict):
        raise ValueError(f"{path}: a metrics file holds a JSON object, got {type(metrics).__name__}")
    return row_from_metrics(metrics, str(path), path.stem)


# ------------------------------------------------------------------------------------------------ console tables


def metric_label(name: str) -> str:
    """How a metric key is printed: ``tiou`` -> m_tIoU, ``viou@0.5`` -> vIoU@0.5, ``gt_viou`` -> m_gt_vIoU."""
    return {"tiou": "m_tIoU", "viou": "m_vIoU", "gt_viou": "m_gt_vIoU"}.get(name, name.replace("viou", "vIoU"))


def format_summary(metrics: dict) -> str:
    """A readable table of a metrics dict (values x100)."""
    groups = [t for t in SENTENCE_TYPES if f"{t}_viou" in metrics] or [""]
    prefix0 = f"{groups[0]}_" if groups[0] else ""
    at = sorted({k.split("@")[1] for k in metrics if k.startswith(prefix0 + "viou@")}, key=float)
    names = ["tiou", "viou", *(f"viou@{t}" for t in at), "gt_viou", *(f"gt_viou@{t}" for t in at)]
    width = max(12, *(len(metric_label(n)) + 2 for n in names))
    lines = [f"protocol: {metrics['protocol']}   sentences: {metrics['count']}",
             f"{'':<20}" + "".join(f"{metric_label(n):>{width}}" for n in names)]
    for g in groups:
        prefix = f"{g}_" if g else ""
        label = f"{g} ({metrics[prefix + 'count']})" if g else "all"
        lines.append(f"{label:<20}" + "".join(f"{100 * metrics[prefix + n]:>{width}.2f}" for n in names))
    if "average_viou" in metrics:
        lines.append(f"average m_vIoU: {100 * metrics['average_viou']:.2f}")
    if metrics["missing_predictions"] or metrics["missing_boxes"]:
        lines.append(f"scored as 0: {metrics['missing_predictions']} missing sentences, "
                     f"{metrics['missing_boxes']} missing GT-frame boxes")
    return "\n".join(lines)


def format_rows(rows: dict[str, dict]) -> str:
    """One line per named metrics dict (values x100): m_tIoU, m_vIoU, vIoU at each threshold, m_gt_vIoU."""
    first = next(iter(rows.values()))
    at = sorted({k.split("@")[1] for k in first if k.startswith("viou@")}, key=float)
    names = ["tiou", "viou", *(f"viou@{t}" for t in at), "gt_viou"]
    label_width = max(20, *(len(name) + 2 for name in rows))
    width = max(12, *(len(metric_label(n)) + 2 for n in names))
    lines = [f"{'':<{label_width}}" + "".join(f"{metric_label(n):>{width}}" for n in names)]
    for name, metrics in rows.items():
        lines.append(f"{name:<{label_width}}" + "".join(f"{100 * metrics[n]:>{width}.2f}" for n in names))
    return "\n".join(lines)
