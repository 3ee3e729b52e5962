"""Test helper: read back the markdown tables the project renders."""

from __future__ import annotations


def markdown_rows(text: str) -> dict[str, dict[str, str]]:
    """The first markdown table of ``text`` as {method (bold stripped): {header: cell}}."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    split = [[c.strip() for c in line.strip("|").split(" | ")] for line in lines]
    header, body = split[0], split[2:]
    assert all(len(r) == len(header) for r in body)
    return {r[0].strip("*"): dict(zip(header, r, strict=True)) for r in body}
