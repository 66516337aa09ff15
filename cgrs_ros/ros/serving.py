"""What the node serves with: what ``configure`` loads (engine, ground targets, worker), and how a
goal's text and options are checked.

No rclpy here: the node passes its logger and a parameter getter.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import replace
from typing import Callable

from cgrs_ros.config import CAPTION_MODES
from cgrs_ros.errors import CGRSInputError
from cgrs_ros.geo import validate_datum
from cgrs_ros.ros.worker import GoalWorker, Job, Serving, free_engine


def quiet_model_libraries() -> None:
    """Keep transformers' per-load reports (e.g. 'UNEXPECTED key' tables of models whose unused heads
    are dropped on purpose) out of the node's log unless asked for (TRANSFORMERS_VERBOSITY=info);
    its errors still show, through the node's logger (:mod:`cgrs_ros.ros.log_bridge`).  Must run
    before transformers is imported."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def _demo_index(config, log) -> str:
    """The demo index folder, built (minutes) on first use, with the progress as log lines."""
    from cgrs_ros.demo import demo_paths, ensure_demo_index
    from cgrs_ros.index import META
    from cgrs_ros.ros.log_bridge import ProgressLines

    _, index = demo_paths(config)
    if (index / META).is_file():
        return str(index)
    log.info(f"first use: generating and indexing the demo world into {index} (a few minutes on a CPU; "
             "lifecycle and parameter services keep answering)")
    started = time.perf_counter()
    ensure_demo_index(config, progress=ProgressLines(log))
    log.info(f"demo index built in {time.perf_counter() - started:.0f} s")
    return str(index)


def load_serving(values: dict, run: Callable[[Job], None], log) -> Serving:
    """Engine (index + models), datum, ground targets and the worker, from validated parameters."""
    from cgrs_ros.config import load_engine_config
    from cgrs_ros.engine import CGRSEngine
    from cgrs_ros.targets import IndexTargets

    datum = validate_datum(values["datum_latitude"], values["datum_longitude"], values["datum_altitude"])
    config = load_engine_config(values["engine_config"] or None, device=values["device"] or None)
    changes = {}
    if values["max_results"] > 0:
        changes["max_results"] = values["max_results"]
    if values["top_k"] > 0:
        changes["top_k"] = values["top_k"]
    if values["fusion_weight"] >= 0.0:
        changes["fusion_weight"] = values["fusion_weight"]
    if values["caption_mode"]:
        changes["caption_mode"] = values["caption_mode"]
    config = replace(config, retrieval=replace(config.retrieval, **changes).validated("node parameters"))
    index_dir = values["index_dir"] or _demo_index(config, log)
    log.info(f"loading engine: config {config.source}, index {index_dir}, device {config.device}")
    engine = CGRSEngine.load(config, index_dir=index_dir)
    if engine.calibration is None:
        log.warning(f"no calibrated confidence ({engine.calibration_note}): goal_pose is never forwarded")
    try:
        targets = IndexTargets(engine.index)      # computed per place as goals return it
        return Serving(engine, datum, targets, GoalWorker(engine, run, log))
    except Exception:
        free_engine(engine, log)
        raise


def check_text(text: str, max_chars: int) -> None:
    """Raise CGRSInputError saying why a goal text is refused."""
    if not text or not text.strip():
        raise CGRSInputError("the goal text is empty")
    length = len(text.strip())
    if length > max_chars:
        raise CGRSInputError(f"the goal text is {length} characters; the cap is max_query_chars = {max_chars}")


def query_options(engine, param: Callable, top_k: int = 0, fusion_weight: float = -1.0, caption_mode: str = ""):
    """QueryOptions from the node parameters (``param(name)``) overridden by an action goal's fields."""
    from cgrs_ros.engine import QueryOptions

    if top_k < 0:
        raise CGRSInputError(f"top_k must be >= 0 (0 = node default), got {top_k}")
    if math.isnan(fusion_weight) or fusion_weight > 1.0:
        raise CGRSInputError(f"fusion_weight must be in [0, 1] (negative = node default), got {fusion_weight}")
    if caption_mode and caption_mode not in CAPTION_MODES:
        raise CGRSInputError(f"caption_mode {caption_mode!r} is unknown; use cached, online, off "
                             "or '' for the node default")
    node_weight = param("fusion_weight")
    options = QueryOptions(
        top_k=top_k or param("top_k") or None,
        fusion_weight=fusion_weight if fusion_weight >= 0.0 else (node_weight if node_weight >= 0.0 else None),
        caption_mode=caption_mode or param("caption_mode") or None,
        max_results=param("max_results") or None)
    options.apply(engine.config.retrieval)  # raises CGRSInputError for anything else
    return options
