"""Device and dtype choice shared by every model (CUDA when present, fp16 there, fp32 on CPU), CPU
threads, and batches that fit the accelerator's memory."""
from __future__ import annotations

import logging
from typing import Callable, Sequence

import torch

from ..errors import CGRSInputError

_log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16,
           "fp16": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def resolve_device(device: str | None) -> torch.device:
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise CGRSInputError(f"device {device!r} is not a torch device ('auto', 'cpu', 'cuda', 'cuda:N')") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise CGRSInputError(f"device {device!r} was asked for but CUDA is not available here")
    return resolved


def resolve_dtype(dtype: str | None, device: torch.device) -> torch.dtype:
    """'auto' means fp16 on CUDA (2x faster, half the memory) and fp32 on CPU (fp16 is slow there)."""
    if dtype in (None, "", "auto"):
        return torch.float16 if device.type == "cuda" else torch.float32
    try:
        return _DTYPES[dtype]
    except KeyError:
        raise CGRSInputError(f"dtype {dtype!r} unknown; use auto, {', '.join(_DTYPES)}") from None


def apply_threads(threads: int | str) -> int:
    """Set the CPU threads torch (and faiss, when installed) use; returns the number set.

    Why a setting: nothing set it, and on a loaded 2-core machine (a companion computer running a
    flight stack) torch's default of one thread per core made cached queries 2-25x and an index
    build 26x slower than one thread (``bench/scale_benchmark.py`` measures it).  ``auto`` is one
    thread per core this process may run on.
    """
    import os

    count = len(os.sched_getaffinity(0)) if threads == "auto" else int(threads)
    torch.set_num_threads(count)
    try:
        import faiss
    except ImportError:
        return count
    faiss.omp_set_num_threads(count)
    return count


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an accelerator running out of memory (CUDA's error, or MPS's RuntimeError)."""
    return isinstance(exc, torch.cuda.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "MPS backend out of memory" in str(exc))


def in_fitting_batches(items: Sequence, size: int, step: Callable[[Sequence], list], what: str) -> tuple[list, int]:
    """``step`` over ``items`` in batches of ``size``, halving the batch whenever one runs the
    accelerator out of memory and running it again; returns (the steps' outputs joined, the
    size that fitted), which the caller keeps for its next call.

    Why: a batch size right for one GPU (or one model, or one image size) runs another out of memory
    half way through a build of hours; a smaller batch is slower, a crash loses the chunk in progress.
    An out-of-memory with a batch of one is raised as it is."""
    outputs: list = []
    start = 0
    while start < len(items):
        batch = items[start:start + size]
        try:
            outputs.extend(step(batch))
        except RuntimeError as exc:
            if not out_of_memory(exc) or len(batch) == 1:
                raise
            size = max(1, len(batch) // 2)
            _log.warning("%s: out of accelerator memory with a batch of %d; batches of %d from now on",
                         what, len(batch), size)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            continue
        start += len(batch)
    return outputs, size
