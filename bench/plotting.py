"""The line styles and markers every figure draws with (the nth line of one colour gets a pair of its own), and
which curves coincide."""
from __future__ import annotations

import math
from collections.abc import Sequence

LINE_STYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P", "X")  # 7 against 4 line styles: 28 lines before a pair repeats


def line_style(nth: int) -> tuple[str, str]:
    """The line style and marker of the ``nth`` line."""
    return LINE_STYLES[nth % len(LINE_STYLES)], MARKERS[nth % len(MARKERS)]


def coinciding(curves: list[tuple[str, Sequence[float], Sequence[float]]], rtol: float = 0.02) -> dict[str, str]:
    """For each curve (label, x, y) that lies on an earlier one (the same x, every y within ``rtol`` of it), that
    curve's label: a figure says in its legend that the two coincide, since one line hides the other."""
    found: dict[str, str] = {}
    for i, (label, x, y) in enumerate(curves):
        for earlier, x0, y0 in curves[:i]:
            if list(x) == list(x0) and len(y) and all(
                    a == b or (math.isfinite(a) and math.isfinite(b) and abs(a - b) <= rtol * max(abs(a), abs(b)))
                    for a, b in zip(y, y0)):
                found[label] = found.get(earlier, earlier)
                break
    return found
