"""The console logger of every job: what a person reads in a terminal.

At INFO (the default) it prints the ops' own messages and every warning or error, one short
line each (``  extract_and_plan: 856 workspaces in 3 git shards``); Dagster's step events are
DEBUG, so they stay in the event log and the UI. At DEBUG (``reconcile-pipeline reconcile
--verbose``, or run config ``loggers: console: config: log_level: DEBUG``) it prints Dagster's full
log lines as its own console logger would.
"""

from __future__ import annotations

import logging
import sys

import dagster as dg

from reconcile_pipeline.dagster_internals import get_log_record_metadata, has_log_record_metadata

_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")


class ShortFormatter(logging.Formatter):
    """``  <op>[<mapping key>]: <message>``, with the level for warnings and errors."""

    def format(self, record: logging.LogRecord) -> str:
        if not has_log_record_metadata(record):
            return record.getMessage()
        meta = get_log_record_metadata(record)
        step = (meta.get("step_key") or "run").rsplit(".", 1)[-1]
        level = "" if record.levelno < logging.WARNING else f"{record.levelname}: "
        text = f"  {step}: {level}{meta.get('orig_message') or record.getMessage()}"
        event = meta.get("dagster_event")
        error = getattr(getattr(event, "event_specific_data", None), "error", None)
        if error is not None:  # a step failure: say why in one line, not the stack
            text += f" - {error.message.strip().splitlines()[-1]}"
        return text


@dg.logger(
    config_schema={
        "log_level": dg.Field(
            dg.Enum("ReconcileLogLevel", [dg.EnumValue(level) for level in _LEVELS]),
            default_value="INFO",
            description="INFO: the ops' messages, warnings and errors, one short line each; "
            "DEBUG: Dagster's full log",
        )
    },
    description="Console: short lines at INFO, Dagster's full log at DEBUG.",
)
def console_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    level = init_context.logger_config["log_level"]
    logger = logging.Logger("reconcile_pipeline", level=getattr(logging, level))
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s - %(levelname)s - %(message)s")
        if level == "DEBUG"
        else ShortFormatter()
    )
    logger.addHandler(handler)
    return logger
