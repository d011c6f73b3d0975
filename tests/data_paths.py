"""Where the tests find the real data: $METAGRAD_DATA, else ``../shared/data`` beside the checkout where there is one,
else the user's data folder, where ``metagrad data fetch`` puts it.

Under CI (CI=true) missing data is a failure, never a silent skip; elsewhere the run ends with one line saying how many
tests were skipped for want of it and how to fetch it (tests/conftest.py).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

MISSING = "test data missing"


def _data_root() -> Path:
    from metagrad.bench.data.root import user_data_folder

    beside = Path(__file__).resolve().parents[2] / "shared" / "data"
    return Path(os.environ.get("METAGRAD_DATA") or (beside if beside.is_dir() else user_data_folder()))


DATA_ROOT = _data_root()


def require_data(*parts: str) -> Path:
    path = DATA_ROOT.joinpath(*parts)
    if not path.exists():
        message = f"{MISSING}: {path}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return DATA_ROOT
