"""Regression tracking: the benchmark cases (``cases``), the work gate on their deterministic counters (``gate``) and
the history of saved runs across commits (``history``)."""
