"""Index builds spread over a Ray cluster: chunks encoded in parallel, one model replica per worker.

Why this shape: a country-scale gallery (millions of images) is days of captioning on one GPU.
The build itself stays :func:`cgrs_ros.index.build_index` (the lock, what is reused, the commit);
only the encoding of its work list is handed to a pool of Ray actors, each loading the models once
(one GPU each where the cluster has GPUs): the :class:`~cgrs_ros.build_workers.ChunkWorker` that
``cgrs-index --workers N`` runs as processes of one machine.  Each task is one chunk of
``index.chunk_size`` images that the worker writes into ``<index>/.build/chunks`` exactly as a local
build would (arrays first, JSON last), so a worker that dies loses only its unfinished chunk: Ray
retries it, and a rerun of the build resumes from the finished ones.

Workers read the gallery's images and write the index folder themselves: every node must see both
at the same paths (a shared filesystem: NFS, Lustre, EFS...) and have cgrs_ros installed.

Ray is an optional extra (``pip install "cgrs_ros[distributed]"``); it is imported only here.
"""
from __future__ import annotations

from pathlib import Path

from .build_workers import ChunkWorker, add_landed_chunks, chunk_tasks
from .config import EngineConfig
from .errors import CGRSInputError
from .gallery import Gallery
from .index import _Results, build_index, progress_bar

INSTALL_HINT = 'pip install "cgrs_ros[distributed]" (or pip install ray)'
# a worker that died is restarted, and its chunk redone, at least this many times before the build
# fails (Ray's max_restarts and max_task_retries; test/test_distributed_build.py saw 4 deaths in all)
TASK_RETRIES = 2


def build_index_with_ray(gallery: Gallery, config: EngineConfig, out_dir: str | Path, address: str = "local",
                         workers: int | None = None, gpus_per_worker: float | None = None,
                         progress: bool = True) -> dict:
    """:func:`~cgrs_ros.index.build_index` with the encoding spread over Ray actors.

    ``address``: ``local`` starts a Ray instance on this machine, ``auto`` joins the cluster this
    node belongs to (``ray start``), anything else is a Ray address (``head:6379``,
    ``ray://head:10001``); an already connected driver (``ray.init`` done) keeps its connection.
    ``workers`` defaults to one per GPU of the cluster, or one per ``threads`` of its CPUs;
    ``gpus_per_worker`` to 1 when the cluster has GPUs, else 0.  Returns build_index's result plus
    ``chunks_by_worker`` (``host:pid`` -> chunks it encoded).
    """
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        ray.init(address=None if address == "local" else address, include_dashboard=False,
                 log_to_driver=False)
    try:
        encoder = RayEncoder(workers, gpus_per_worker)
        meta = build_index(gallery, config, out_dir, progress=progress, encoder=encoder)
    finally:
        if started:
            ray.shutdown()
    return dict(meta, chunks_by_worker=encoder.chunks_by_worker)


def import_ray():
    """The ray module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise CGRSInputError(f"distributed builds need Ray: {INSTALL_HINT}") from None
    return ray


class RayEncoder:
    """The ``encoder`` of :func:`~cgrs_ros.index.build_index` that runs its chunks on Ray actors
    (one task per chunk, one chunk in flight per actor) and adds each to the results as it lands."""

    def __init__(self, workers: int | None = None, gpus_per_worker: float | None = None):
        if workers is not None and workers < 1:
            raise CGRSInputError(f"workers must be at least 1, got {workers}")
        self.workers, self.gpus_per_worker = workers, gpus_per_worker
        self.chunks_by_worker: dict[str, int] = {}

    def __call__(self, gallery, work, config: EngineConfig, fingerprint: dict, chunks: Path,
                 results: _Results, progress: bool) -> None:
        ray = import_ray()
        from ray.util import ActorPool

        tasks = chunk_tasks(gallery, work, config, chunks, results)
        cpus = config.threads if isinstance(config.threads, int) else 1
        total = ray.cluster_resources()
        gpus = (1 if total.get("GPU", 0) else 0) if self.gpus_per_worker is None else self.gpus_per_worker
        count = self.workers or max(1, int(total.get("GPU", 0) // gpus if gpus else total.get("CPU", 1) // cpus))
        actor = ray.remote(ChunkWorker).options(num_cpus=cpus, num_gpus=gpus, max_restarts=TASK_RETRIES,
                                                max_task_retries=TASK_RETRIES)
        pool = ActorPool([actor.remote(config, fingerprint) for _ in range(min(count, len(tasks)))])
        with progress_bar(gallery, work, progress) as bar:
            try:
                add_landed_chunks(pool.map_unordered(lambda a, task: a.encode.remote(*task), tasks), fingerprint,
                                  results, bar, self.chunks_by_worker,
                                  ": do all Ray nodes see the index folder at the same path?")
            except ray.exceptions.RayActorError as exc:
                finished = len(list(chunks.glob("*.json")))
                raise CGRSInputError(
                    f"a Ray worker died on the same chunk {TASK_RETRIES + 1} times or more (killed, out of memory, "
                    f"or a crash while decoding or encoding; its log is in the Ray session's logs), so the build "
                    f"stopped; the {finished} chunks finished are kept in {chunks} and a rerun resumes from them. "
                    f"Ray said: {str(exc).splitlines()[0][:300]}") from exc
