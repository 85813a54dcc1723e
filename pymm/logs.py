"""Structured logs for the long-running commands (``pymm agent``, ``pymm nrt --watch``): one
JSON object per line on stderr, with the fields a log pipeline indexes (time, level, logger,
message) plus whatever a call passes in ``extra=``. Records of other libraries (aiohttp,
asyncio) at WARNING and above go through the same formatter, a traceback included as the
``exc_info`` field of its one line: nothing else reaches stderr."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

from pymm.errors import ConfigError

__all__ = ["setup_json_logging"]


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of each record (as the logging
    module's last-resort handler does), so a redirected stderr is honoured."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def setup_json_logging(level: str = "INFO", stream: TextIO | None = None) -> None:
    """Sends the ``pymm`` loggers' records, and every other logger's warnings and errors, to
    ``stream`` (stderr) as JSON lines."""
    try:
        from pythonjsonlogger.json import JsonFormatter
    except ImportError:
        raise ConfigError(
            "structured logs need python-json-logger: pip install 'pymm[agent]'"
        ) from None
    handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.setFormatter(
        JsonFormatter(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp="time",  # RFC 3339, UTC
        )
    )
    logger = logging.getLogger("pymm")
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    # The records are complete here; a root handler would print them a second time.
    logger.propagate = False
    # A library's record would otherwise reach logging's last-resort handler: plain text, a
    # traceback over many lines.
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
