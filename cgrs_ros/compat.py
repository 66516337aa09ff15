"""What differs between the library versions cgrs_ros supports, in one place.

The supported ranges are requirements/ranges.txt: from the JetPack 6 profile (torch 2.5,
transformers 5.17, onnxruntime 1.23, numpy 1.26) to today's pins (torch 2.14, transformers 5.23,
onnxruntime 1.32, numpy 2.2).  Call sites ask this module a question about the installed libraries
instead of testing versions themselves, so a new difference is handled here once.

- transformers needs more torch than its metadata declares: 5.18 and 5.19 call
  ``torch.accelerator`` (torch 2.6+) when a model loads, 5.20+ disables PyTorch below 2.6 at import.
  Both end in an error that names neither version ("Could not import module 'PreTrainedModel'"),
  so :func:`check_library_versions` names them before any model loads.
- ``torch.onnx.export`` has a ``dynamo`` switch from torch 2.5 on and defaults it to True from 2.9:
  :func:`onnx_export_options` keeps the TorchScript exporter (what the ONNX text runtime is written
  and tested for) on every torch.
- Generation caches: a cache object that can drop finished rows (``batch_select_indices``) or a
  legacy one that cannot (:func:`cache_drops_rows`).
"""
from __future__ import annotations

import inspect
import re
from importlib.metadata import PackageNotFoundError, version

from .errors import CGRSInputError

# (first transformers release, the torch it needs to load a model); newest first.  Measured with
# scripts/test_profile.sh and the releases' utils/import_utils.py, not taken from their metadata.
TRANSFORMERS_TORCH_FLOOR = (((5, 18), (2, 6)), ((5, 15), (2, 5)))


def _release(text: str) -> tuple[int, int]:
    """(major, minor) of a version string; pre-release and local parts ignored, so JetPack's
    ``2.5.0a0+872d972e41.nv24.08`` counts as torch 2.5."""
    match = re.match(r"(\d+)\.(\d+)", text)
    return (int(match[1]), int(match[2])) if match else (0, 0)


def transformers_torch_problem(transformers_version: str, torch_version: str) -> str | None:
    """Why this transformers cannot load models beside this torch, or None when it can."""
    have_tf, have_torch = _release(transformers_version), _release(torch_version)
    for first, needs in TRANSFORMERS_TORCH_FLOOR:
        if have_tf >= first:
            if have_torch < needs:
                return (f"transformers {transformers_version} needs torch >= {needs[0]}.{needs[1]} to load "
                        f"models, but torch {torch_version} is installed: install transformers<"
                        f"{first[0]}.{first[1]} (the jetpack6-py310-aarch64 profile, requirements/locks/) "
                        f"or a newer torch")
            return None
    return None


def check_library_versions() -> None:
    """Raise CGRSInputError naming the installed versions when they cannot work together."""
    try:
        installed = {name: version(name) for name in ("transformers", "torch")}
    except PackageNotFoundError:
        return      # the registry's own import error names the missing library
    problem = transformers_torch_problem(installed["transformers"], installed["torch"])
    if problem:
        raise CGRSInputError(problem)


def onnx_export_options(export) -> dict:
    """Keyword arguments that make ``torch.onnx.export`` use the TorchScript exporter."""
    return {"dynamo": False} if "dynamo" in inspect.signature(export).parameters else {}


def cache_drops_rows(cache) -> bool:
    """Whether a generation cache can drop the rows of finished sequences in place."""
    return hasattr(cache, "batch_select_indices")
