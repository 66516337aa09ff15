"""Index builds spread over worker processes, each with its own models, each encoding whole chunks.

Why: one build process keeps one core busy (``threads: 1`` builds fastest, bench/results/build.json:
the small models' many short operations do not split well over cores), so a machine with N cores
and no cluster builds N times as fast with N processes, each running the models on one core.  The
build itself stays :func:`cgrs_ros.index.build_index` (the lock, what is reused, the commit): only
the encoding of its work list is handed out, chunk by chunk, and each worker writes its chunk into
``<index>/.build/chunks`` exactly as a one-process build would (arrays first, JSON last), so a
worker that dies loses only its unfinished chunk and a rerun resumes from the finished ones.

:class:`ProcessEncoder` runs the workers as processes on this machine (``cgrs-index --workers N``);
:class:`cgrs_ros.distributed.RayEncoder` runs the same :class:`ChunkWorker` on a Ray cluster.
"""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from itertools import islice
from pathlib import Path
from typing import Iterable, Iterator

from .config import EngineConfig
from .errors import CGRSInputError
from .gallery import Gallery
from .index import _encode_chunk, _Results, chunk_plan, held_build_lock, load_build_models, progress_bar


class ChunkWorker:
    """The build's models, loaded once, encoding chunk after chunk (a Ray actor or a pool process)."""

    def __init__(self, config: EngineConfig, fingerprint: dict):
        from .models.device import apply_threads

        apply_threads(config.threads)
        self.settings, self.fingerprint = config.index, fingerprint
        self.models = load_build_models(config)
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def encode(self, stem: str, gallery: Gallery, part: list) -> tuple[str, str, int]:
        """Write the chunk ``stem`` of ``part``; returns (stem, this worker's name, images done)."""
        from tqdm import tqdm

        Path(stem).parent.mkdir(parents=True, exist_ok=True)
        with tqdm(disable=True) as bar:
            _encode_chunk(gallery, part, self.models, self.settings, self.fingerprint, Path(stem), _Results(), bar)
        return stem, self.name, len(part)


def chunk_tasks(gallery: Gallery, work: list, config: EngineConfig, chunks: Path,
                results: _Results) -> list[tuple[str, Gallery, list]]:
    """The chunks of ``work`` as worker tasks: (chunk stem, a gallery of its own records only, its
    slice of ``work``), so that a worker never holds (or is sent) the whole gallery."""
    return [(str(stem), Gallery([record for record, _, _ in part], gallery.root, gallery.source), part)
            for stem, part in chunk_plan(work, config.index.chunk_size, chunks, results)]


def add_landed_chunks(landed: Iterable[tuple[str, str, int]], fingerprint: dict, results: _Results, bar,
                      chunks_by_worker: dict[str, int], unreadable_hint: str) -> None:
    """Add each chunk a worker reports finished, (stem, worker, images), to ``results`` as it lands."""
    for stem, worker, images in landed:
        if not results.add_chunk(Path(stem).with_suffix(".json"), fingerprint):
            raise CGRSInputError(f"chunk {stem}.json written by worker {worker} cannot be read here"
                                 f"{unreadable_hint}")
        chunks_by_worker[worker] = chunks_by_worker.get(worker, 0) + 1
        bar.update(images)


_worker: ChunkWorker | None = None      # this pool process's models, loaded by its first chunk
_held_lock: int | None = None           # this pool process's duplicate of the build's lock
PR_SET_PDEATHSIG = 1                    # linux/prctl.h
PARENT_POLL_S = 0.5


class _InheritedFd:
    """A file descriptor handed to a ``spawn``ed process as it starts (multiprocessing passes it
    as an inherited fd): the build's lock, whose open file stays locked while any holder lives."""

    def __init__(self, fd: int):
        self.fd = fd

    def __reduce__(self):
        from multiprocessing.reduction import DupFd

        return _detach, (DupFd(self.fd),)


def _detach(dup) -> int:
    return dup.detach()


def _start_worker(parent: int, lock: int | None) -> None:
    """Set up a pool process: it ignores Ctrl-C (the terminal sends it to the whole group: the
    parent alone stops the build, after the chunks in progress), dies with the build process
    (``kill -9`` of the parent must not leave workers of a gigabyte each behind, encoding for
    nobody), and holds the build's lock until it exits (a rerun must not start beside it).

    Dying with the parent: on Linux the kernel sends SIGKILL when the parent exits
    (``PR_SET_PDEATHSIG``); everywhere a thread also checks that the parent is still the one that
    started this process, and exits when it is not."""
    global _held_lock
    _held_lock = lock
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:           # the parent died before the line above took effect
        os._exit(1)
    threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True, name="cgrs-parent-watch").start()


def _exit_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    os._exit(1)


def _encode_in_pool_process(worker_class: type, config: EngineConfig, fingerprint: dict, stem: str,
                            gallery: Gallery, part: list) -> tuple[str, str, int]:
    # Loaded in the first task, not in the pool's initializer: an initializer's error only breaks
    # the pool, while a task's error (a model that will not load) reaches the caller as it is.
    global _worker
    if _worker is None:
        _worker = worker_class(config, fingerprint)
    return _worker.encode(stem, gallery, part)


class ProcessEncoder:
    """The ``encoder`` of :func:`~cgrs_ros.index.build_index` that encodes its chunks in ``workers``
    processes of this machine (``spawn``ed: no fork of a process that already runs torch threads),
    each loading the build's models once and using ``threads`` cores.  ``worker_class`` (a
    :class:`ChunkWorker`, importable by the worker processes) is what each process runs."""

    def __init__(self, workers: int, worker_class: type = ChunkWorker):
        if not isinstance(workers, int) or workers < 1:
            raise CGRSInputError(f"workers must be a whole number of at least 1, got {workers!r}")
        self.workers, self.worker_class = workers, worker_class
        self.chunks_by_worker: dict[str, int] = {}

    def __call__(self, gallery, work, config: EngineConfig, fingerprint: dict, chunks: Path,
                 results: _Results, progress: bool) -> None:
        tasks = chunk_tasks(gallery, work, config, chunks, results)
        width = min(self.workers, len(tasks))
        lock = held_build_lock(chunks.parent.parent)
        pool = ProcessPoolExecutor(width, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker,
                                   initargs=(os.getpid(), None if lock is None else _InheritedFd(lock)))
        try:
            with progress_bar(gallery, work, progress) as bar:
                add_landed_chunks(_one_chunk_per_worker(pool, width, self.worker_class, config, fingerprint, tasks),
                                  fingerprint, results, bar, self.chunks_by_worker, "")
        except BrokenProcessPool as exc:
            finished = len(list(chunks.glob("*.json")))
            raise CGRSInputError(
                f"a build worker process died (killed, out of memory, or a crash while decoding or encoding), so "
                f"the build stopped; the {finished} chunks finished are kept in {chunks} and a rerun resumes "
                f"from them ({exc})") from exc
        finally:
            # on an error or Ctrl-C the chunks in progress are finished and kept (a rerun reuses them)
            pool.shutdown(wait=True, cancel_futures=True)


def _one_chunk_per_worker(pool: ProcessPoolExecutor, width: int, worker_class: type, config: EngineConfig,
                          fingerprint: dict, tasks: list) -> Iterator[tuple[str, str, int]]:
    """What each task returns, as it lands, with only ``width`` tasks handed to the pool at a time:
    a stopped build then has nothing queued behind the chunks in progress."""
    def start(count: int) -> set:
        return {pool.submit(_encode_in_pool_process, worker_class, config, fingerprint, *task)
                for task in islice(waiting, count)}

    waiting = iter(tasks)
    running = start(width)
    while running:
        done, running = wait(running, return_when=FIRST_COMPLETED)
        for future in done:
            yield future.result()
            running |= start(1)
