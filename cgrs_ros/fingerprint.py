"""What made an index: a comparable record of the models and settings behind its vectors and captions.

An index searched with a different CLIP, or reranked against captions of a different captioner,
returns confident nonsense; comparing fingerprints turns that into a clear refusal.  Only options
that change the numbers are recorded (not batch sizes or devices), and local weight files are
recorded by name and a content signature, so moving a folder does not invalidate an index but
retraining a checkpoint does.

An index built without captions (``index.captions: none``) holds only image vectors, so its
fingerprint is the retriever's alone: any captioner may caption its candidates later, and each
caption it logs carries the :func:`caption_key` it was made under.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .config import EngineConfig

_MEANINGFUL = {
    "retriever": ("name", "model", "pretrained", "checkpoint", "model_config", "force_quick_gelu"),
    "captioner": ("name", "model", "prompt", "max_new_tokens", "num_beams"),
    "text_similarity": ("name", "model"),
}
# What only captions depend on: the captioner, how it saw the images, and the vectors made of them.
_CAPTION_KINDS = ("captioner", "text_similarity", "index")
_SIGNATURE_BYTES = 1 << 20


def file_signature(path: Path) -> str:
    """sha256 over the size and the first and last MiB: cheap for GB checkpoints, changes on retrain."""
    digest = hashlib.sha256(str(path.stat().st_size).encode())
    with path.open("rb") as handle:
        digest.update(handle.read(_SIGNATURE_BYTES))
        if path.stat().st_size > _SIGNATURE_BYTES:
            handle.seek(-_SIGNATURE_BYTES, 2)
            digest.update(handle.read(_SIGNATURE_BYTES))
    return digest.hexdigest()[:16]


def describe_value(value):
    """A config value as the fingerprint records it: local weight files and folders by name + content."""
    if not isinstance(value, str):
        return value
    raw = value[len("local-dir:"):] if value.startswith("local-dir:") else value
    path = Path(raw)
    if not path.is_absolute() or not path.exists():
        return value
    if path.is_file():
        return f"file:{path.name}:{file_signature(path)}"
    parts = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in (".json", ".safetensors", ".bin", ".pt"))
    digest = hashlib.sha256("".join(f"{p.relative_to(path)}:{file_signature(p)};" for p in parts).encode())
    return f"dir:{path.name}:{digest.hexdigest()[:16]}"


def engine_fingerprint(config: EngineConfig) -> dict:
    from .models.text_similarity import TEXT_SIMILARITIES

    kinds = dict(_MEANINGFUL)
    # A matcher without caption vectors can be swapped without a rebuild: a cross-encoder stores
    # nothing in the index, and a clause table made for another matcher is not read (engine.py).
    if not getattr(TEXT_SIMILARITIES.factory(config.text_similarity["name"]), "embeds_captions", True):
        kinds.pop("text_similarity")
    found = {kind: {key: describe_value(getattr(config, kind).get(key)) for key in keys
                    if getattr(config, kind).get(key) is not None}
             for kind, keys in kinds.items()}
    # How the captioner saw the images (north-up or as they are) changes every caption.
    found["index"] = {"rectify": config.index.rectify,
                      "horizontal_platforms": sorted(config.index.horizontal_platforms)}
    return found


def index_fingerprint(config: EngineConfig, captions: str | None = None) -> dict:
    """What an index's content depends on: the engine fingerprint for an index with captions, the
    retriever's part alone for one without (``captions``: the index's setting, default the config's)."""
    found = engine_fingerprint(config)
    if (captions or config.index.captions) == "none":
        for kind in _CAPTION_KINDS:
            found.pop(kind, None)
    return found


def caption_key(config: EngineConfig) -> str:
    """A short digest of what the text of a caption depends on (the captioner and how it saw the
    image: turned north-up or not, decoded at which size): a logged caption made under another key
    is stale."""
    found = engine_fingerprint(config)
    parts = {kind: found[kind] for kind in ("captioner", "index")}
    parts["max_image_side"] = config.index.max_image_side
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def fingerprint_differences(built: dict, wanted: dict) -> list[str]:
    """Human-readable differences, e.g. ``retriever.model: index has 'RN50', config has 'ViT-B-32'``."""
    diffs = []
    # Only what the config needs: caption vectors an index holds for a bi-encoder the config no
    # longer uses (it reranks with a cross-encoder) are simply not read.
    for kind in sorted(wanted):
        a, b = built.get(kind, {}), wanted.get(kind, {})
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                diffs.append(f"{kind}.{key}: index has {a.get(key)!r}, config has {b.get(key)!r}")
    return diffs
