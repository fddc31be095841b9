"""How log lines look (FASHION_LOG_FORMAT): text lines, or one JSON object a line for a log collector, and
the request id on every record logged while a request is handled.

The request id lives in a context variable that the metrics middleware (service/metrics.py) sets for the
request, answer included; the tasks and worker threads that serve the request copy the context, so every
line they log (the traceback of an unhandled error, the access line, uvicorn's access line) carries it.
The entry point installs one handler on the root logger (`configure_logging`); our loggers and uvicorn's
propagate to it, so they share the format.
"""

from __future__ import annotations

import copy
import logging
import sys
from contextvars import ContextVar
from typing import IO, Literal

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
# A text line shows the request id after the logger's name: "... INFO service.access [3f2a...]: method=..."
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(request_tag)s: %(message)s"
# The JSON keys every line has; `extra` fields of a record (the access line's method, route, ...) follow.
JSON_FIELDS = "%(levelname)s %(name)s %(message)s %(request_id)s"
JSON_RENAMES = {"levelname": "level", "name": "logger"}
# Record attributes that are not fields: the logging module's own, and uvicorn's ANSI-coloured message copy.
_NOT_FIELDS = (*RESERVED_ATTRS, "color_message")


class RequestIdFilter(logging.Filter):
    """Give every record a `request_id`: the id of the request being handled, or None outside one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = REQUEST_ID.get()
        return True


class TextFormatter(logging.Formatter):
    """TEXT_FORMAT: `request_tag` is " [<request id>]" on a request's lines, empty outside one."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None)
        tagged = copy.copy(record)  # the record itself stays as logged (other handlers may see it)
        tagged.request_tag = f" [{request_id}]" if request_id else ""
        return super().formatMessage(tagged)


def json_formatter() -> logging.Formatter:
    """{"time": ISO 8601 UTC, "level", "logger", "message", "request_id", ...extra; "exc_info": traceback}."""
    return JsonFormatter(
        JSON_FIELDS, rename_fields=JSON_RENAMES, timestamp="time", reserved_attrs=_NOT_FIELDS
    )


def log_handler(log_format: Literal["text", "json"], stream: IO[str] | None = None) -> logging.Handler:
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(json_formatter() if log_format == "json" else TextFormatter())
    return handler


def configure_logging(log_format: Literal["text", "json"], stream: IO[str] | None = None) -> None:
    """For entry points only: the root logger at WARNING (third-party chatter) writing through one handler
    in `log_format`; the callers raise their own loggers' levels."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(log_handler(log_format, stream))
    root.setLevel(logging.WARNING)
