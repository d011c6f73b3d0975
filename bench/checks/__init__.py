"""Checks a user runs on their own code: an algorithm against the protocol (``contract``)."""
