"""User-facing errors.

Anything a user can cause (a bad config value, a missing file, a wrong shape) raises
:class:`NCSNError`; the command line prints its message as one line on stderr and exits
non-zero without a traceback. Programming errors keep their usual exception types.
"""

from __future__ import annotations


class NCSNError(Exception):
    """An error caused by user input: its message says what is wrong, where, and how to fix it."""

    exit_code = 2


class ConfigError(NCSNError, ValueError):
    """An invalid configuration value or key."""


class DataError(NCSNError):
    """Missing, unreadable or inconsistent data."""


class CheckpointError(NCSNError):
    """A missing, corrupt, unsafe or mismatched checkpoint."""


class ShapeError(NCSNError, ValueError):
    """Tensors or masks whose shapes or values do not fit together."""


class NCSNWarning(UserWarning):
    """Something the user should know that does not stop the work (printed as one line)."""
