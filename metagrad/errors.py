"""The errors metagrad raises on purpose, each with the exit code the ``metagrad`` command returns for it.

Every one prints as one line (``metagrad COMMAND: error: ...``) instead of a traceback. This module imports nothing
heavy, so that the command line can catch them without importing torch.

==================  ====  ==========================================================================================
error               exit  meaning
==================  ====  ==========================================================================================
``ConfigError``     2     bad input: an option, a hyperparameter, a data root, an algorithm or harness name
``CorruptFileError`` 2    a file metagrad reads (a run's config, a checkpoint, a result file) is damaged
``PluginError``     2     an algorithm returned what the protocol does not allow (the wrong shape, type or dtype)
``DivergenceError`` 3     the numbers left the finite range (training, or a trained run's parameters)
``RerunError``      4     a step of ``metagrad report --rerun`` failed; the earlier results are untouched
``FetchError``      5     ``metagrad data fetch`` could not get a data set (network, checksum, disk); nothing half-written
==================  ====  ==========================================================================================

``metagrad counters --gate`` exits 1 where the work changed (``WorkChanged``), as a failed check does.
"""
from __future__ import annotations


class MetagradError(Exception):
    """The base of every error metagrad raises on purpose; ``exit_code`` is what the command returns."""

    exit_code = 1


class ConfigError(MetagradError, ValueError):
    """Bad input: an option, a hyperparameter, a name, a path. Exit code 2."""

    exit_code = 2


class CorruptFileError(MetagradError):
    """A file metagrad reads is damaged or not what its name says. Exit code 2 (it is input too)."""

    exit_code = 2


class PluginError(MetagradError, TypeError):
    """An algorithm (a plug-in's, usually) returned what the protocol does not allow; the message names the class,
    the method and what it must return. Exit code 2."""

    exit_code = 2


class DivergenceError(MetagradError, ArithmeticError):
    """A computation left the finite range: training diverged, or a run's parameters are not finite. Exit code 3."""

    exit_code = 3


class RerunError(MetagradError):
    """A step of a re-run failed (the cause is chained); the earlier results are untouched. Exit code 4."""

    exit_code = 4


def require(condition: bool, message: str) -> None:
    """Raise ``ConfigError(message)`` unless ``condition``: how every check of user input reads."""
    if not condition:
        raise ConfigError(message)
