"""One exception type for every user-facing error.

The CLI prints ``str(error)`` as one line and exits non-zero, so messages must name
the file, key or value at fault.
"""


class PmtrecError(Exception):
    """A bad input or configuration, reported to the user as one line."""


class DataError(PmtrecError):
    """A raw or prepared data file is missing, malformed or inconsistent."""


class ConfigError(PmtrecError):
    """A configuration key has a wrong type, value or name."""


class TrainingError(PmtrecError):
    """Training cannot go on (e.g. a non-finite loss)."""
