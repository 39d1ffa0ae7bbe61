"""The source's log records go through dlt's logger, so ``[runtime]`` settings apply to them.

dlt configures one logger (``dlt.common.logger.LOGGER``: level ``runtime.log_level``, format
``runtime.log_format``, ``"JSON"`` for JSON lines, timestamps either way) and does not let it
propagate. The source logs with the standard ``logging.getLogger(__name__)``; without this module
its warnings reached Python's last-resort handler: bare text, no time, ``log_format`` ignored.

``route_to_dlt_logger`` gives a package's logger a handler that hands each record to whatever logger
dlt has set up when the record is made (dlt re-creates it when a pipeline starts; the Airflow helper
swaps in the task's logger), filtered by that logger's level. Like dlt's logger, the package's does
not propagate, so an application that configures the root logger does not print each line twice.
"""

from __future__ import annotations

import logging

_PACKAGE = __name__.rpartition(".")[0]
"""``cargo_elt.source`` when installed, ``cargo`` when copied by ``dlt init``."""


class DltLogHandler(logging.Handler):
    """Hands records to dlt's logger, which formats and filters them by ``runtime.log_level``."""

    def emit(self, record: logging.LogRecord) -> None:
        from dlt.common import logger as dlt_logger

        target = dlt_logger.LOGGER
        if isinstance(target, logging.Logger):
            if not target.disabled and record.levelno >= target.getEffectiveLevel():
                target.handle(record)
        elif target is not None and callable(getattr(target, "log", None)):
            target.log(record.levelno, record.getMessage())  # a task logger of another kind (Airflow)
        elif record.levelno >= logging.WARNING and logging.lastResort is not None:
            logging.lastResort.handle(record)  # dlt's logging not set up: what Python does without handlers


def route_to_dlt_logger(name: str = _PACKAGE) -> None:
    """Send the records of logger ``name`` and its children through dlt's logger (idempotent)."""
    package = logging.getLogger(name)
    if not any(isinstance(handler, DltLogHandler) for handler in package.handlers):
        package.addHandler(DltLogHandler())
    package.setLevel(logging.DEBUG)  # dlt's logger decides, record by record, at its current level
    package.propagate = False
