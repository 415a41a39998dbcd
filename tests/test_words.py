"""Measured figures live in benchmarks/results/ and the README table, never in docstrings or config comments.

Figures copied into comments drift from the measurements (the quickstart config once said 7.3 min and
F-beta 0.87 while the README said 6 min 31 s and 0.830). This scans the comments and string literals of
``cryopoint/`` and ``tools/`` and the comments of ``configs/*.yaml`` for durations, speed factors, throughputs
and scores; point to the results file instead.
"""

import io
import re
import tokenize
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

FIGURE = re.compile(
    r"""
      \b\d+(?:\.\d+)?\s?(?:s|ms|min|minutes|seconds|hours|h)\b   # a duration: 7.3 min, 15 s
    | \b\d+(?:\.\d+)?\s?x\s+(?:faster|slower)\b                 # a speed factor: ~2x faster
    | (?:faster|slower)\W{0,3}\(?~?\d+(?:\.\d+)?\s?x\b           # faster (5x)
    | \bF-?beta\s+(?:of\s+)?\d\.\d+                               # a score: F-beta 0.87
    | \bcrops/s\b                                                 # a throughput
    """,
    re.X | re.I,
)

#: (file, figure) -> why it is not a measurement.
ALLOWED = {
    ("cryopoint/synth/assembly.py", "1.71 s"): "s is the Gaussian's width, not seconds",
    ("tools/detect.py", "4x slower"): "flip TTA runs four passes instead of one: arithmetic",
}


def _texts(path: Path) -> list[str]:
    if path.suffix == ".yaml":
        return [line[line.index("#") :] for line in path.read_text().splitlines() if "#" in line]
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
    return [t.string for t in tokens if t.type in (tokenize.COMMENT, tokenize.STRING)]


def _figures(text: str) -> list[str]:
    return [m.group() for m in FIGURE.finditer(text)]


def test_the_scan_finds_the_figures_that_drifted():
    old = "# Measured: 7.3 min in all; F-beta 0.87 tuned; ~0.6 s per step; ~130 crops/s; mean: ~5x faster"
    assert _figures(old) == ["7.3 min", "F-beta 0.87", "0.6 s", "crops/s", "5x faster"]
    assert _figures("see benchmarks/results/inference.md; 64 x 192 x 192 windows; 10.012444 Å; top_k 1000") == []


def test_no_measured_figures_in_docstrings_or_config_comments():
    files = [*sorted((REPO / "cryopoint").rglob("*.py")), *sorted((REPO / "tools").glob("*.py"))]
    files += sorted((REPO / "configs").glob("*.yaml"))
    found = []
    for path in files:
        rel = path.relative_to(REPO).as_posix()
        found += [f"{rel}: {fig!r}" for text in _texts(path) for fig in _figures(text) if (rel, fig) not in ALLOWED]
    assert not found, "measured figures belong in benchmarks/results/ or the README table; point there:\n" + "\n".join(
        found
    )
