"""The paper's reported few-shot accuracies (Rajeswaran et al. 2019, Tables 2 and 3), as printed.

Kept as the printed strings, so a table shows them with the paper's own precision; the test
tests/test_report.py reads them back from ../shared/paper/NOTES.md.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PaperAccuracy:
    mean: str  # percent, as printed
    ci: str  # the paper's +- (a 95% interval per its tables)

    @property
    def value(self) -> float:
        return float(self.mean)

    @property
    def half_width(self) -> float:
        return float(self.ci)


def _row(*cells: str) -> tuple[PaperAccuracy, ...]:
    return tuple(PaperAccuracy(*cell.split(" ± ")) for cell in cells)


_TABLE_2_COLUMNS = ("omniglot-5w1s", "omniglot-5w5s", "omniglot-20w1s", "omniglot-20w5s")
_TABLE_2 = {
    "maml": _row("98.7 ± 0.4", "99.9 ± 0.1", "95.8 ± 0.3", "98.9 ± 0.2"),
    "fomaml": _row("98.3 ± 0.5", "99.2 ± 0.2", "89.4 ± 0.5", "97.9 ± 0.1"),
    "reptile": _row("97.68 ± 0.04", "99.48 ± 0.06", "89.43 ± 0.14", "97.12 ± 0.32"),
    "imaml-gd": _row("99.16 ± 0.35", "99.67 ± 0.12", "94.46 ± 0.42", "98.69 ± 0.1"),
    "imaml-hf": _row("99.50 ± 0.26", "99.74 ± 0.11", "96.18 ± 0.36", "99.14 ± 0.1"),
}
_TABLE_3 = {
    "maml": _row("48.70 ± 1.84"), "fomaml": _row("48.07 ± 1.75"), "reptile": _row("49.97 ± 0.32"),
    "imaml-gd": _row("48.96 ± 1.84"), "imaml-hf": _row("49.30 ± 1.88"),
}

# (setting, variant) -> the paper's number; settings and variants as in bench/training/presets.py
PAPER_ACCURACY: dict[tuple[str, str], PaperAccuracy] = {
    **{(setting, variant): cells[i] for variant, cells in _TABLE_2.items() for i, setting in enumerate(_TABLE_2_COLUMNS)},
    **{("mini-imagenet-5w1s", variant): cells[0] for variant, cells in _TABLE_3.items()},
}
TABLES = {
    "table2-omniglot": ("Table 2: Omniglot", _TABLE_2_COLUMNS),
    "table3-mini-imagenet": ("Table 3: Mini-ImageNet 5-way 1-shot", ("mini-imagenet-5w1s",)),
}


@dataclass(frozen=True)
class OtherPaper:
    """An accuracy printed in another paper, for an algorithm the iMAML paper did not run."""

    mean: str  # percent, as printed
    ci: str | None  # its +- as printed, where it prints one
    source: str

    @property
    def value(self) -> float:
        return float(self.mean)

    def __str__(self) -> str:
        return f"{self.mean}{f' ± {self.ci}' if self.ci else ''} ({self.source})"


_LI = "Li et al. 2017, Meta-SGD"
_ANTONIOU = "Antoniou et al. 2019, MAML++ whole, not LSLR alone"
# (setting, variant) -> the number its own paper printed (Meta-SGD: Li et al.'s Omniglot and Mini-ImageNet tables;
# MAML++: Antoniou et al.'s, for MAML++ with all its parts, of which metagrad's maml-lslr is one)
OTHER_PAPERS: dict[tuple[str, str], OtherPaper] = {
    ("omniglot-5w1s", "meta-sgd"): OtherPaper("99.53", "0.26", _LI),
    ("mini-imagenet-5w1s", "meta-sgd"): OtherPaper("50.47", "1.87", _LI),
    ("omniglot-5w1s", "maml-lslr"): OtherPaper("99.47", None, _ANTONIOU),
    ("mini-imagenet-5w1s", "maml-lslr"): OtherPaper("52.15", "0.26", _ANTONIOU),
}
OTHER_VARIANTS = ("meta-sgd", "maml-lslr")  # rows of Tables 2 and 3 below the paper's, with their own papers' numbers
