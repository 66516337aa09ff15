"""Engine configuration: which models, on which device, and how the rerank fuses scores.

A YAML file (see ``cgrs_ros/resources/engine_default.yaml`` and ``config/engine_hub_models.yaml``)::

    device: auto            # auto | cpu | cuda | cuda:N
    dtype: auto             # auto (fp16 on CUDA, fp32 on CPU) | float32 | float16 | bfloat16
                            # (a model spec's own dtype, e.g. captioner: {..., dtype: bfloat16}, wins)
    retriever:       {name: open_clip, model: ViT-B-32, pretrained: laion2b_s34b_b79k}
    captioner:       {name: image_to_text, model: Salesforce/blip-image-captioning-base}
    text_similarity: {name: sentence_transformers, model: sentence-transformers/all-MiniLM-L6-v2}
    retrieval:       {top_k: 20, fusion_weight: 0.5, normalization: zscore, caption_mode: cached, max_results: 10}
    index:           {batch_size: 32, chunk_size: 256, rectify: none, max_image_side: 1024, search: exact,
                      captions: all}
    threads: 1              # CPU threads (torch, ONNX Runtime, faiss): N | auto (see docs/benchmarks.md "Threads")

Relative file paths inside model specs (checkpoints, local model folders) are resolved against the
YAML file's folder, so a config and the weights it names can travel together.
"""
from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import yaml

from .errors import CGRSInputError

RESOURCES = Path(__file__).resolve().parent / "resources"
DEFAULT_ENGINE_CONFIG = RESOURCES / "engine_default.yaml"

NORMALISATIONS = ("zscore", "minmax", "none")
CAPTION_MODES = ("cached", "online", "off")
INDEX_CAPTIONS = ("all", "none")
_PATH_KEYS = ("model", "pretrained", "checkpoint", "model_config")


@dataclass(frozen=True)
class RetrievalSettings:
    """How a query is answered.

    ``fusion_weight`` is the caption score's share of the fused score (0 = coarse only, 1 = captions
    only).  ``normalization`` puts both scores on one scale per query before mixing: CLIP cosines of
    the top-20 differ by a few hundredths while sentence-embedding cosines spread over tenths, so raw
    scores would let one model drown the other.  z-score is the default because it is robust to the
    one outlier that min-max stretches the rest around.
    """

    top_k: int = 20
    fusion_weight: float = 0.5
    normalization: str = "zscore"
    caption_mode: str = "cached"
    max_results: int = 10
    grouping: str = "place_id"      # place_id | radius | visual | none (see cgrs_ros.places)
    group_radius_m: float = 60.0    # radius grouping: views within this distance are one place
    group_cosine: float = 0.9       # visual grouping: near-duplicate CLIP image cosine
    place_views: int = 3            # a place's caption score: mean of its best-matching views

    def validated(self, where: str = "retrieval") -> "RetrievalSettings":
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 1:
            raise CGRSInputError(f"{where}.top_k must be a positive integer, got {self.top_k!r}")
        if isinstance(self.max_results, bool) or not isinstance(self.max_results, int) or self.max_results < 1:
            raise CGRSInputError(f"{where}.max_results must be a positive integer, got {self.max_results!r}")
        weight = self.fusion_weight
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0.0 <= weight <= 1.0:
            raise CGRSInputError(f"{where}.fusion_weight must be a number in [0, 1], got {weight!r}")
        if self.normalization not in NORMALISATIONS:
            raise CGRSInputError(f"{where}.normalization {self.normalization!r}; use one of {NORMALISATIONS}")
        if self.caption_mode not in CAPTION_MODES:
            raise CGRSInputError(f"{where}.caption_mode {self.caption_mode!r}; use one of {CAPTION_MODES}")
        from .places import GROUPINGS

        if self.grouping not in GROUPINGS:
            raise CGRSInputError(f"{where}.grouping {self.grouping!r}; use one of {GROUPINGS}")
        for name, value, low, high in (("group_radius_m", self.group_radius_m, 0.0, math.inf),
                                       ("group_cosine", self.group_cosine, -1.0, 1.0)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low < value <= high:
                raise CGRSInputError(f"{where}.{name} must be a number in ({low:g}, {high:g}], got {value!r}")
        if isinstance(self.place_views, bool) or not isinstance(self.place_views, int) or self.place_views < 1:
            raise CGRSInputError(f"{where}.place_views must be a positive integer, got {self.place_views!r}")
        return replace(self, fusion_weight=float(weight), group_radius_m=float(self.group_radius_m),
                       group_cosine=float(self.group_cosine))


def require_positive_int(value, where: str) -> int:
    """Counts and sizes from YAML: 0, -1, 2.5, "8" or true would fail deep inside a model or a loop."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CGRSInputError(f"{where} must be a positive integer, got {value!r}")
    return value


# Integer options of the model backends, checked here so a typo is named before any model loads.
_POSITIVE_MODEL_OPTIONS = ("batch_size", "max_new_tokens", "num_beams")


@dataclass(frozen=True)
class IndexSettings:
    """How an index is built.  ``rectify`` and ``horizontal_platforms`` change the captions, so they
    are part of the index fingerprint (see :mod:`cgrs_ros.rectify`).

    ``captions``: ``all`` captions every image at build time (cached queries then cost no
    captioning); ``none`` runs the retriever alone (captioning is most of a build) and captions
    candidates when a query first needs them (kept in the index's caption log, see
    :mod:`cgrs_ros.caption_log`), as the paper does.
    """

    batch_size: int = 32     # images per encoder/captioner batch (and decoded at once)
    chunk_size: int = 256    # images per resumable unit of work written to disk
    rectify: str = "none"    # none | north_up: turn aerial views north-up from their heading before captioning
    horizontal_platforms: tuple = ("ground",)   # platforms never turned (street-level photos)
    north_up_platforms: tuple = ("satellite",)  # platforms whose images are north-up as published
    max_image_side: int = 1024   # images are decoded downscaled to this longest side (bounds memory)
    search: dict = field(default_factory=lambda: {"name": "exact"})   # coarse-search backend (cgrs_ros.search)
    captions: str = "all"    # all | none: caption every image at build time, or only candidates at query time
    loader_threads: int = 1  # background threads decoding the next batches while the models run (0: inline)

    def validated(self, where: str = "index") -> "IndexSettings":
        from .gallery import PLATFORMS
        from .rectify import RECTIFY_MODES
        from .search import search_spec

        for name in ("batch_size", "chunk_size", "max_image_side"):
            require_positive_int(getattr(self, name), f"{where}.{name}")
        if isinstance(self.loader_threads, bool) or not isinstance(self.loader_threads, int) \
                or not 0 <= self.loader_threads <= 64:
            raise CGRSInputError(f"{where}.loader_threads must be an integer in 0..64, got {self.loader_threads!r}")
        if self.rectify not in RECTIFY_MODES:
            raise CGRSInputError(f"{where}.rectify {self.rectify!r}; use one of {RECTIFY_MODES}")
        if self.captions not in INDEX_CAPTIONS:
            raise CGRSInputError(f"{where}.captions {self.captions!r}; use one of {INDEX_CAPTIONS}")
        for name in ("horizontal_platforms", "north_up_platforms"):
            platforms = getattr(self, name)
            if isinstance(platforms, str) or not all(p in PLATFORMS for p in platforms):
                raise CGRSInputError(f"{where}.{name} must be a list of platform names ({', '.join(PLATFORMS)}), "
                                     f"got {platforms!r}")
        try:
            search = search_spec(self.search)
        except CGRSInputError as exc:
            raise CGRSInputError(f"{where}: {exc}") from None
        return replace(self, horizontal_platforms=tuple(self.horizontal_platforms),
                       north_up_platforms=tuple(self.north_up_platforms), search=search)


@dataclass(frozen=True)
class EngineConfig:
    retriever: dict
    captioner: dict
    text_similarity: dict
    retrieval: RetrievalSettings = field(default_factory=RetrievalSettings)
    index: IndexSettings = field(default_factory=IndexSettings)
    device: str = "auto"
    dtype: str = "auto"
    calibration: str = ""    # confidence calibration JSON (cgrs_ros.calibration); '' = none
    threads: str | int = 1   # CPU threads for torch and faiss: N, or auto (torch's default: every core)
    source: str = ""

    def model_spec(self, kind: str) -> dict:
        """The spec a registry builds from, with the device settings added.

        A model's own ``dtype`` wins over the global one: one model may need another precision
        than the rest (Qwen2-VL is meant to run in bfloat16 while the CLIP stays in fp16).
        """
        spec = getattr(self, kind)
        return dict(spec, device=self.device, dtype=spec.get("dtype", self.dtype))

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("source")
        return data


def load_engine_config(path: str | Path | None = None, **overrides) -> EngineConfig:
    """Read a YAML engine config (None: the packaged default) and apply top-level ``overrides``."""
    path = Path(path) if path else DEFAULT_ENGINE_CONFIG
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CGRSInputError(f"cannot read engine config {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise CGRSInputError(f"engine config {path} is not UTF-8 text: {exc}") from exc
    except yaml.YAMLError as exc:
        raise CGRSInputError(f"engine config {path} is not valid YAML: {exc}") from exc
    except RecursionError:
        raise CGRSInputError(f"engine config {path} is not valid YAML here: nested too deeply") from None
    except ValueError as exc:     # an integer of more than 4,300 digits
        raise CGRSInputError(f"engine config {path}: a value YAML cannot convert ({exc})") from exc
    if not isinstance(data, dict):
        raise CGRSInputError(f"engine config {path}: expected a mapping at the top level")
    data.update({k: v for k, v in overrides.items() if v is not None})
    return engine_config_from_dict(data, base_dir=path.parent, source=str(path))


def engine_config_from_dict(data: dict, base_dir: Path, source: str = "<dict>") -> EngineConfig:
    data = copy.deepcopy(data)
    known = {"retriever", "captioner", "text_similarity", "retrieval", "index", "device", "dtype", "calibration",
             "threads"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise CGRSInputError(f"engine config {source}: unknown keys {unknown}; known: {sorted(known)}")
    specs = {}
    for kind in ("retriever", "captioner", "text_similarity"):
        spec = data.get(kind)
        if not isinstance(spec, dict) or "name" not in spec:
            raise CGRSInputError(f"engine config {source}: '{kind}' must be a mapping with a 'name'")
        for option in _POSITIVE_MODEL_OPTIONS:
            if option in spec:
                require_positive_int(spec[option], f"engine config {source}: {kind}.{option}")
        specs[kind] = _resolve_paths(spec, base_dir)
    try:
        retrieval = RetrievalSettings(**(data.get("retrieval") or {})).validated(f"{source}: retrieval")
        index = IndexSettings(**(data.get("index") or {})).validated(f"{source}: index")
    except TypeError as exc:
        raise CGRSInputError(f"engine config {source}: {exc}") from exc
    calibration = data.get("calibration") or ""
    if not isinstance(calibration, str):
        raise CGRSInputError(f"engine config {source}: calibration must be a file path, got {calibration!r}")
    if calibration and not Path(calibration).is_absolute():
        calibration = str((base_dir / calibration).resolve())
    threads = data.get("threads", EngineConfig.threads)
    if threads != "auto":
        require_positive_int(threads, f"engine config {source}: threads (or auto)")
    return EngineConfig(retrieval=retrieval, index=index, device=str(data.get("device", "auto")),
                        dtype=str(data.get("dtype", "auto")), calibration=calibration, threads=threads,
                        source=source, **specs)


def _resolve_paths(spec: dict, base_dir: Path) -> dict:
    """Make ``./x`` / ``x/y.safetensors`` style values absolute when they exist next to the YAML."""
    spec = dict(spec)
    for key in _PATH_KEYS:
        value = spec.get(key)
        if not isinstance(value, str):
            continue
        prefix = "local-dir:" if value.startswith("local-dir:") else ""
        raw = value[len(prefix):]
        candidate = (base_dir / raw).expanduser()
        if not Path(raw).is_absolute() and candidate.exists():
            spec[key] = prefix + str(candidate.resolve())
    return spec
