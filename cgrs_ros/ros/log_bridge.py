"""Everything the node's process says goes through the node's ROS logger, as lines.

Under ``ros2 launch`` a node's stdout/stderr is a pseudo-terminal of width 0 read line by line:
tqdm bars print nothing there, and Python ``logging`` / ``warnings`` output (``WARNING:root:...``
from a model library, transformers' load reports) bypasses ROS logging -- its levels, its
``--log-level``, its /rosout.  So the node

- reports index-build progress as log lines at a bounded rate (:class:`ProgressLines`, which the
  core's ``build_index(progress=...)`` takes in place of a tqdm bar), and
- routes Python logging (and, through it, ``warnings``) to its logger at the matching severity
  (:func:`route_python_logging`).
"""
from __future__ import annotations

import logging
import time


class ProgressLines:
    """A tqdm-like bar factory that logs 'indexing: 1,200 / 3,000 images, 40%, ETA 35 s' lines.

    A line at the start, then at most one every ``period_s`` seconds or each ``step`` of the total
    (whichever comes first), and one at the end; the ETA is from this run's rate.
    """

    def __init__(self, log, period_s: float = 5.0, step: float = 0.1, clock=time.monotonic):
        self._log, self._period, self._step, self._clock = log, period_s, step, clock

    def __call__(self, total: int, initial: int = 0, desc: str = "progress", unit: str = "it", **_ignored):
        return _ProgressBar(self, int(total), int(initial), desc, "images" if unit == "img" else unit)


class _ProgressBar:
    def __init__(self, owner: ProgressLines, total: int, initial: int, desc: str, unit: str):
        self._owner, self.total, self.n, self._desc, self._unit = owner, total, initial, desc, unit
        self._first, self._started = initial, owner._clock()
        self._last_time, self._last_n = self._started, initial
        self._line()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += int(n)
        now = self._owner._clock()
        step = max(1, int(self._owner._step * self.total))
        if self.n < self.total and (now - self._last_time >= self._owner._period or self.n - self._last_n >= step):
            self._line(now)

    def close(self) -> None:
        self._line(final=True)

    def _line(self, now: float | None = None, final: bool = False) -> None:
        now = self._owner._clock() if now is None else now
        self._last_time, self._last_n = now, self.n
        text = f"{self._desc}: {self.n:,} / {self.total:,} {self._unit}"
        if self.total:
            text += f", {100 * self.n // self.total}%"
        done, elapsed = self.n - self._first, now - self._started
        if final:
            text += f", {elapsed:.0f} s"
        elif done > 0 and self.n < self.total:
            text += f", ETA {(self.total - self.n) * elapsed / done:.0f} s"
        self._owner._log.info(text)


class RosLogHandler(logging.Handler):
    """A logging handler writing each record to a ROS logger at the record's severity."""

    def __init__(self, ros_logger):
        super().__init__(logging.DEBUG)
        self._ros = ros_logger

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + logging.Formatter().formatException(record.exc_info)
            if record.name not in ("root", "py.warnings"):
                text = f"[{record.name}] {text}"
            text = text.rstrip()
            # (one call site per severity: rclpy refuses two severities from one line)
            if record.levelno >= logging.ERROR:
                self._ros.error(text)
            elif record.levelno >= logging.WARNING:
                self._ros.warning(text)
            elif record.levelno >= logging.INFO:
                self._ros.info(text)
            else:
                self._ros.debug(text)
        except Exception:  # a log line must never break the node (e.g. the context is shutting down)
            self.handleError(record)


def route_python_logging(ros_logger) -> RosLogHandler:
    """Send Python logging and ``warnings`` of this process to ``ros_logger``; returns the handler.

    Installed on the root logger before any model library logs, so ``logging.warning(...)`` no
    longer calls ``basicConfig`` (the bare ``WARNING:root:`` lines).
    """
    handler = RosLogHandler(ros_logger)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, RosLogHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    logging.captureWarnings(True)
    return handler


def route_transformers_logging() -> None:
    """transformers keeps its own stderr handler and does not propagate: switch it to propagate to the
    root logger (so to the ROS logger), and turn its progress bars off.  Imports transformers' logging (about a second): called by
    configure, before the models load, not at start-up."""
    import importlib.util

    if importlib.util.find_spec("transformers") is not None:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_default_handler()
        hf_logging.enable_propagation()
        hf_logging.disable_progress_bar()     # its 'Loading weights' bars: tqdm, not lines
