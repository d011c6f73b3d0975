"""The line styles and markers every figure draws with: the nth line of one colour gets a pair of its own."""
from __future__ import annotations

LINE_STYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P", "X")  # 7 against 4 line styles: 28 lines before a pair repeats


def line_style(nth: int) -> tuple[str, str]:
    """The line style and marker of the ``nth`` line."""
    return LINE_STYLES[nth % len(LINE_STYLES)], MARKERS[nth % len(MARKERS)]
