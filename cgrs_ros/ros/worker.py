"""The goal worker: one inference thread, one pending slot, and what a goal carries with it.

Thread-safety contract (the executor's callbacks and this thread share nothing mutable):

- A :class:`Job` carries everything its run needs, taken when the goal arrived: the
  :class:`Serving` bundle (engine, datum, ground targets) and a :class:`GoalSettings` snapshot of the
  parameters.  A parameter set or a cleanup mid-goal cannot change what a running goal sees.
- The worker *owns* the engine: it frees it when its loop ends.  A release that stops waiting for a
  slow query therefore never closes the engine under it; the worker outlives the release safely.
- ``Job.request_stop`` writes the reason before setting the event, under the job's lock.

Goals never queue without bound: a newer goal supersedes a pending (not yet started) one; the running
goal is only stopped by cancel, deactivate or cleanup.
"""
from __future__ import annotations

import gc
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from cgrs_ros.action import Locate
from cgrs_ros.errors import CGRSInputError
from cgrs_ros.geo import Datum
from cgrs_ros.msg import RankedMatches


@dataclass(frozen=True)
class GoalSettings:
    """The parameters a goal needs, read once when it arrives."""

    map_frame: str
    max_query_chars: int
    min_confidence: float
    forward_to_nav2: bool
    publish_image: bool
    stage_delay: float
    approach_height: float


@dataclass(frozen=True)
class Serving:
    """What configure made: the engine and the map it answers in, and the worker that runs goals."""

    engine: Any                      # cgrs_ros.engine.CGRSEngine (owned by the worker)
    datum: Datum
    targets: Mapping[str, Any]       # place_id -> cgrs_ros.targets.GroundTarget
    worker: "GoalWorker"


@dataclass(eq=False)
class Job:
    goal_id: str
    query: str
    stamp: Any                        # builtin_interfaces/Time: when the goal arrived
    settings: GoalSettings
    options: Any = None               # cgrs_ros.engine.QueryOptions
    goal_handle: Any = None           # rclpy ServerGoalHandle for action goals
    serving: Serving | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    outcome: str = "aborted"          # the action's end: succeeded | aborted | canceled
    result: Any = None                # RankedMatches
    stop_reason: str = "the node stopped serving"
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def source(self) -> str:
        return "action" if self.goal_handle is not None else "topic"

    def request_stop(self, reason: str) -> None:
        """Ask the run to stop at its next stage; the first reason given is the one reported."""
        with self._lock:
            if not self.stop.is_set():
                self.stop_reason = reason
                self.stop.set()

    def should_stop(self) -> bool:
        return self.stop.is_set() or (self.goal_handle is not None and self.goal_handle.is_cancel_requested)

    def finish(self, outcome: str, result) -> None:
        self.outcome, self.result = outcome, result
        self.done.set()


F = Locate.Feedback
STAGE_CODES = {"queued": F.STAGE_QUEUED, "starting": F.STAGE_STARTING, "coarse": F.STAGE_COARSE,
               "captions": F.STAGE_CAPTIONS, "rerank": F.STAGE_RERANK, "done": F.STAGE_DONE}


def feedback(job: Job, stage: str, progress: float, logger) -> None:
    """Locate feedback for action goals: the stage's code (Locate.Feedback.STAGE_*) and name."""
    if job.goal_handle is not None:
        try:
            job.goal_handle.publish_feedback(Locate.Feedback(stage_code=STAGE_CODES[stage], stage=stage,
                                                             progress=float(progress)))
        except Exception as exc:  # goal handle gone (shutdown)
            logger.debug(f"goal {job.goal_id}: feedback not sent ({exc})")


def free_engine(engine, logger) -> None:
    """Close the engine and give its memory back (GPU cache included)."""
    try:
        engine.close()
    except Exception as exc:
        logger.warning(f"engine.close() failed: {exc}")
    del engine
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


class GoalWorker:
    """One inference thread with one pending slot; frees ``engine`` when it stops."""

    def __init__(self, engine, run: Callable[[Job], None], logger):
        self._engine, self._run, self._logger = engine, run, logger
        self._cv = threading.Condition()
        self._pending: Job | None = None
        self._current: Job | None = None
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="cgrs-inference", daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        with self._cv:
            return self._current is not None

    def submit(self, job: Job) -> Job | None:
        """Queue ``job``; returns the pending goal it superseded.  Raises RuntimeError once closed."""
        with self._cv:
            if self._closing:
                raise RuntimeError("the inference worker is closed")
            previous, self._pending = self._pending, job
            self._cv.notify_all()
            return previous

    def remove_pending(self, job: Job) -> bool:
        with self._cv:
            if self._pending is job:
                self._pending = None
                return True
            return False

    def stop_all(self, reason: str) -> Job | None:
        """Take the pending goal (returned, not run) and ask the running one to stop."""
        with self._cv:
            pending, self._pending = self._pending, None
            if self._current is not None:
                self._current.request_stop(reason)
            return pending

    def wait_idle(self, timeout: float) -> bool:
        with self._cv:
            return self._cv.wait_for(lambda: self._current is None and self._pending is None, timeout)

    def close(self, reason: str, timeout: float) -> tuple[Job | None, bool]:
        """Stop taking goals and stop the running one: (pending goal, whether the thread ended in time).

        When it did not, the running query still holds the engine; the thread frees it on return.
        """
        with self._cv:
            self._closing = True
            self._cv.notify_all()
        pending = self.stop_all(reason)
        self._thread.join(timeout)
        return pending, not self._thread.is_alive()

    def _loop(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._pending is not None or self._closing)
                if self._closing:
                    break
                job, self._pending = self._pending, None
                self._current = job
            try:
                self._run(job)
            except Exception:  # never let one goal kill the worker
                self._logger.error("inference worker: unexpected error\n" + traceback.format_exc())
            finally:
                with self._cv:
                    self._current = None
                    self._cv.notify_all()
                job.done.set()
        engine, self._engine = self._engine, None
        free_engine(engine, self._logger)


def run_goal(job: Job, outputs, logger) -> None:
    """Run one goal on the worker thread and give it its answer (through ``outputs``)."""
    from cgrs_ros.engine import QueryCancelled

    if job.should_stop():
        outputs.answer_stopped(job)
        return
    delay = job.settings.stage_delay
    logger.info(f"goal {job.goal_id} started")

    def progress(stage: str, fraction: float) -> None:
        feedback(job, stage, fraction, logger)
        end = time.monotonic() + delay
        while delay > 0 and time.monotonic() < end and not job.should_stop():
            time.sleep(0.02)

    started = time.perf_counter()
    try:
        result = job.serving.engine.query(job.query, job.options, progress=progress, should_stop=job.should_stop)
    except QueryCancelled:
        outputs.answer_stopped(job)
        return
    except CGRSInputError as exc:
        outputs.answer(job, RankedMatches.OUTCOME_REJECTED, f"rejected: {exc}")
        return
    except Exception as exc:
        logger.error(f"goal {job.goal_id} failed: {type(exc).__name__}: {exc}\n" + traceback.format_exc())
        outputs.answer(job, RankedMatches.OUTCOME_FAILED, f"error: {type(exc).__name__}: {exc}")
        return
    outputs.publish_result(job, result, time.perf_counter() - started)
