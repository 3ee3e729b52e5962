"""``bridge-stg-tables``: paper-style tables of metrics files beside published numbers."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bridge_stg.eval.datasets import dataset_names, dataset_title, published_rows
from bridge_stg.eval.output_paths import check_output_file
from bridge_stg.eval.published import ResultRow
from bridge_stg.eval.tables import load_metrics_row, render_latex, render_markdown
from bridge_stg.integrity import write_atomic

FORMATS = ("markdown", "latex", "both")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bridge-stg-tables",
        description="Render metrics files written by bridge-stg-eval as paper-style tables (values x100), "
                    "one per dataset and split, beside the published numbers of that split.")
    p.add_argument("metrics", nargs="+", type=Path, metavar="METRICS.json")
    p.add_argument("--format", choices=FORMATS, default="markdown",
                   help="'both' prints the markdown table and then the LaTeX one in a ```latex fence")
    p.add_argument("--out", type=Path, help="also write the tables to this file")
    p.add_argument("--no-published", action="store_true", help="show our rows only")
    return p


def group_rows(rows: list[ResultRow]) -> dict[tuple[str, str], list[ResultRow]]:
    """Rows grouped by (dataset, split): datasets in registry order, splits in order of appearance."""
    groups: dict[tuple[str, str], list[ResultRow]] = {}
    order = dataset_names()
    for row in sorted(rows, key=lambda r: order.index(r.dataset)):  # stable: file order within a group
        groups.setdefault((row.dataset, row.split), []).append(row)
    return groups


def render_group(dataset: str, split: str, ours: list[ResultRow], fmt: str, with_published: bool) -> str:
    """A heading naming dataset and split, then the table(s) in ``fmt``."""
    published = published_rows(dataset, split) if with_published else []
    title = f"{dataset_title(dataset)}, {split} split (values x100)"
    prefix = "% " if fmt == "latex" else ""  # LaTeX output keeps prose in comments so it stays compilable
    lines = [f"{prefix or '### '}{title}", ""]
    if with_published and not published:
        other = ", ".join(sorted({r.split for r in published_rows(dataset)}))
        note = f"this split (published: {other})" if other else "this dataset"
        lines += [f"{prefix}No published numbers for {note}.", ""]
    rows = published + ours
    if fmt in ("markdown", "both"):
        lines.append(render_markdown(dataset, rows))
    if fmt == "latex":
        lines.append(render_latex(dataset, rows))
    if fmt == "both":
        lines += ["", "```latex", render_latex(dataset, rows), "```"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.out:
            check_output_file(args.out, "--out", inputs=args.metrics)
        rows = [load_metrics_row(path) for path in args.metrics]
        text = "\n".join(render_group(dataset, split, ours, args.format, not args.no_published)
                         for (dataset, split), ours in group_rows(rows).items())
        print(text, end="")
        if args.out:
            write_atomic(args.out, text.encode())
    except (ValueError, OSError) as e:
        print(f"bridge-stg-tables: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
