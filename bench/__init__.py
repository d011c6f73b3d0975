"""Shared models, task samplers, harnesses, measurement and the ``metagrad`` command."""
