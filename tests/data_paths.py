"""Where the tests find the real data: ``../shared/data`` beside the checkout, or $METAGRAD_DATA.

Under CI (CI=true) missing data is a failure, never a silent skip.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

DATA_ROOT = Path(os.environ.get("METAGRAD_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")


def require_data(*parts: str) -> Path:
    path = DATA_ROOT.joinpath(*parts)
    if not path.exists():
        message = f"test data missing: {path}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return DATA_ROOT
