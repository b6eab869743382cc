"""Logging: library modules log to ``pmtrec.*`` loggers and never print; the CLI configures them.

Levels: DEBUG (``-v``: where each file came from, the resolved config), INFO (the default:
banners, per-epoch lines, statistics tables), NOTICE (one-off facts said even with ``-q``: a
resume, the epoch cap), WARNING and above (stderr). Without :func:`configure` (a library user's
script), Python's defaults apply: warnings reach stderr, the rest is silent until the caller sets
up logging, e.g. ``logging.basicConfig(level=logging.INFO)``.
"""

from __future__ import annotations

import logging
import sys

NOTICE = 25
logging.addLevelName(NOTICE, "NOTICE")
LOGGER = "pmtrec"
FILE_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)


def notice(logger: logging.Logger, message: str) -> None:
    logger.log(NOTICE, message)


class _Console(logging.StreamHandler):
    """Messages below WARNING to the current ``sys.stdout``, the rest to the current ``sys.stderr``
    (looked up at each record, so a redirected stream, as in tests, is followed)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self):
        return sys.stdout if self._record_level < logging.WARNING else sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns one; the property decides
        pass

    _record_level = logging.INFO

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "file_only", False):
            return
        self._record_level = record.levelno
        super().emit(record)


class _ConsoleFormat(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.levelno >= logging.WARNING:
            return f"pmtrec: {record.levelname.lower()}: {text}"
        return text


def configure(verbosity: int = 0, log_file: str | None = None) -> logging.Logger:
    """Set up the ``pmtrec`` logger for a command: ``verbosity`` -1 (``-q``: NOTICE and above),
    0 (INFO) or 1+ (``-v``: DEBUG); ``log_file`` also gets every record at DEBUG, with times.
    Replaces the handlers of an earlier call (several commands in one process, as in tests)."""
    root = logging.getLogger(LOGGER)
    for handler in list(root.handlers):
        if getattr(handler, "_pmtrec", False):
            root.removeHandler(handler)
            handler.close()
    level = NOTICE if verbosity < 0 else logging.INFO if verbosity == 0 else logging.DEBUG
    console = _Console()
    console.setLevel(level)
    console.setFormatter(_ConsoleFormat())
    handlers: list[logging.Handler] = [console]
    if log_file:
        to_file = logging.FileHandler(log_file, mode="a", encoding="utf-8")
        to_file.setLevel(logging.DEBUG)
        to_file.setFormatter(logging.Formatter(FILE_FORMAT))
        handlers.append(to_file)
    for handler in handlers:
        handler._pmtrec = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(logging.DEBUG if log_file else level)
    root.propagate = False  # the command owns the output; no duplicate lines through the root logger
    return root


def reset() -> None:
    """Remove :func:`configure`'s handlers (back to Python's defaults)."""
    root = logging.getLogger(LOGGER)
    for handler in list(root.handlers):
        if getattr(handler, "_pmtrec", False):
            root.removeHandler(handler)
            handler.close()
    root.setLevel(logging.NOTSET)
    root.propagate = True


def console_quiet() -> bool:
    """Whether the command's console shows less than INFO (``-q``): no progress bars then."""
    handlers = [h for h in logging.getLogger(LOGGER).handlers if isinstance(h, _Console)]
    return bool(handlers) and handlers[0].level > logging.INFO


def file_only(logger: logging.Logger, level: int, message: str) -> None:
    """A record for the log file only (the console already got the same text another way)."""
    logger.log(level, message, extra={"file_only": True})
