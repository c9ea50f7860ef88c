"""Every figure in README.md and docs/results.md names where it comes from (issue 22).

A heuristic, run as a test so that new text keeps to it: in README.md every paragraph (a
table counts with the paragraph before it) that states a measured figure (dB, ×, %, s,
GFLOP/s, minutes) names a shipped command in backticks (``framecast ...``, ``make ...``,
``python benchmarks/...``) or docs/results.md, where the commands are; in docs/results.md
every dated section names at least one such command. ``python tests/test_docs_figures.py``
prints the figures with what they cite.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# A measured figure: a number with a unit, or a ratio written "2.2×"; "64×64" (a size) and
# "1.02 × the control" (a rule's factor, written with a space) are not figures.
FIGURE = re.compile(r"\d(?:[\d.]*)(?:\s?(?:dB\b|%|s\b|GFLOP|TFLOP|min\b)|×(?!\d))")
SOURCE = re.compile(r"`[^`]*(?:framecast |make |benchmarks/|python )[^`]*`|docs/results\.md")


def paragraphs(text: str) -> list[str]:
    """Prose paragraphs outside code blocks; a table joins the paragraph before it."""
    out: list[str] = []
    block: list[str] = []
    in_code = False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            continue
        if line.startswith("#") or not line.strip():
            if block:
                out.append(" ".join(block))
                block = []
            continue
        if line.startswith("|") and not block and out and not out[-1].startswith("#"):
            block = [out.pop()]  # the table belongs to the paragraph that introduces it
        block.append(line)
    if block:
        out.append(" ".join(block))
    return out


def unsourced_readme_paragraphs() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return [p for p in paragraphs(text) if FIGURE.search(p) and not SOURCE.search(p)]


def results_sections() -> dict[str, str]:
    text = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    parts = re.split(r"^(##+ .*)$", text, flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def test_every_readme_figure_names_its_command_or_the_results_page():
    missing = unsourced_readme_paragraphs()
    assert not missing, "README paragraphs with figures but no command or docs/results.md:\n" + (
        "\n".join(f"- {p[:140]}" for p in missing)
    )


def test_every_dated_results_section_names_a_shipped_command():
    missing = [
        title
        for title, body in results_sections().items()
        if re.search(r"\(\d{4}-\d{2}-\d{2}", title) and not SOURCE.search(body)
    ]
    assert not missing, f"results sections without a shipped command: {missing}"


if __name__ == "__main__":  # pragma: no cover - a listing for people
    for p in paragraphs((ROOT / "README.md").read_text(encoding="utf-8")):
        if FIGURE.search(p):
            cited = sorted(set(m.group(0) for m in SOURCE.finditer(p))) or ["NO SOURCE"]
            print(f"* {p[:100]}...\n    from: {'; '.join(cited)}")
