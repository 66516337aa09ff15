#!/usr/bin/env python3
"""What the node costs on a companion computer: resident memory and cached goal latency per model
stack, and what online captions with a 2B VLM would add, against a Jetson Orin's memory.

Measured, for each stack, on the demo gallery (320 images) indexed beforehand -- the deployment
story: the index is built offboard and the drone serves it in cached mode:

- the node process's resident memory (VmRSS from /proc) after configure (models and index loaded)
  and after the goals, and its peak (VmHWM);
- the goal latency as a ROS client sees it: ``~/locate`` action goal sent -> result received, one
  goal at a time, after warm-up goals; p50 and p90 per goal (a latency, not a throughput).  It
  includes DDS, the engine query (CLIP text encoding, search, places, caption matching, fusion) and
  the node's outputs with their defaults (the contact sheet on ~/match_image included).

Stacks: ``embedded`` (the packaged default: tiny CLIP with a MiniLM text tower, the clause matcher
over MiniLM) and ``hub-size`` (open_clip ViT-B-32 at random init -- the size of the laion2b model, no
download -- with the default's matcher and settings; the index captions come from the embedded
captioner, which cached mode does not load at query time).

Computed, not measured: the weights of Qwen2-VL-2B-Instruct, the 2B chat VLM of
config/engine_hub_models.yaml that online captioning would load, from its architecture (built on
the meta device from its published config values: no weights are downloaded) x bytes per parameter.

    python bench/companion_benchmark.py                                 # both stacks, writes the JSON
    python bench/companion_benchmark.py --stack embedded --goals 20 --out /tmp/c.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from latency_goal_to_matches import QUERIES, percentile

HERE = Path(__file__).resolve().parent
ORIN_MEMORY_GB = (8, 16, 32, 64)    # Jetson Orin modules' nominal memory (GiB), shared by CPU and GPU
DTYPE_BYTES = {"bf16/fp16": 2.0, "int8": 1.0, "int4": 0.5}
GIB = 1024 ** 3


def stack_configs(folder: Path) -> dict[str, Path]:
    """Engine YAMLs of the stacks (absolute model paths: the files live in a temporary folder)."""
    from cgrs_ros.config import RESOURCES

    embedded = RESOURCES / "engine_default.yaml"
    hub = folder / "engine_hub_size.yaml"
    hub.write_text(
        "# ViT-B-32 at random init (the laion2b model's size; nothing downloaded); the rest as the default\n"
        "device: cpu\n"
        "retriever: {name: open_clip, model: ViT-B-32}\n"
        f"captioner: {{name: image_to_text, model: {RESOURCES / 'embedded' / 'captioner'}, max_new_tokens: 55}}\n"
        "text_similarity: {name: clause_match, model: sentence-transformers/all-MiniLM-L6-v2}\n"
        "retrieval: {top_k: 200, fusion_weight: 0.9, caption_mode: cached, max_results: 10,\n"
        "            grouping: place_id, place_views: 3}\n"
        "index: {batch_size: 32, chunk_size: 256, rectify: north_up}\n")
    return {"embedded": embedded, "hub-size": hub}


def memory_mib(pid: int) -> dict[str, float]:
    """VmRSS (resident now) and VmHWM (peak resident) of a process, in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024.0   # kB
    return fields


def measure_stack(name: str, config: Path, args, domain: int) -> dict:
    """Index the demo gallery for the stack, start the node, configure, send goals, read memory."""
    from cgrs_ros.config import load_engine_config
    from cgrs_ros.demo import ensure_demo_index
    from cgrs_ros.ros.client import CGRSClient, start_node_process, stop_node_process

    print(f"[{name}] indexing the demo gallery (once; cached in $CGRS_HOME)", flush=True)
    index_dir = ensure_demo_index(load_engine_config(config), progress=False)
    log_path = Path(tempfile.mkstemp(prefix=f"cgrs_companion_{name}_", suffix=".log")[1])
    process = start_node_process({"engine_config": str(config), "index_dir": str(index_dir),
                                  "device": args.device, "caption_mode": "cached"},
                                 log_path=log_path, domain_id=domain)
    client = CGRSClient(client_name=f"cgrs_companion_{name.replace('-', '_')}")
    try:
        client.wait_for_node(60.0)
        t0 = time.monotonic()
        if not client.change_state("configure", 1800.0):
            raise RuntimeError(f"configure failed; node log:\n{log_path.read_text()[-3000:]}")
        configure_s = time.monotonic() - t0
        if not client.change_state("activate"):
            raise RuntimeError("activate failed")
        loaded = memory_mib(process.pid)
        load_before = os.getloadavg()[0]   # other jobs on a shared machine inflate the latencies
        times = []
        for i in range(args.warmup + args.goals):
            query = QUERIES[i % len(QUERIES)]
            sent = time.perf_counter()
            status, result, _ = client.locate(query, timeout=120.0)
            elapsed_ms = (time.perf_counter() - sent) * 1000.0
            if status != "succeeded" or not result.matches.reranked:
                raise RuntimeError(f"goal {query!r}: {status} {result.message}")
            if i >= args.warmup:
                times.append(elapsed_ms)
        served = memory_mib(process.pid)
        load_after = os.getloadavg()[0]
        client.change_state("deactivate")
    finally:
        client.close()
        stop_node_process(process)
    return {"config": str(config), "index_dir": str(index_dir), "configure_s": configure_s,
            "rss_loaded_mib": loaded["VmRSS"], "rss_after_goals_mib": served["VmRSS"],
            "peak_rss_mib": served["VmHWM"], "goals": len(times),
            "latency_p50_ms": statistics.median(times), "latency_p90_ms": percentile(times, 0.9),
            "latency_ms": times, "loadavg_1min": [load_before, load_after]}


def qwen2_vl_2b_parameters() -> int:
    """Parameters of Qwen2-VL-2B-Instruct, counted on an empty (meta) model built from the values of
    its published config.json (text: 28 layers x 1536, GQA 12/2 heads, MLP 8960, vocab 151936, tied
    embeddings; vision: 32 layers x 1280, 16 heads, patch 14, 2x2 merge into 1536)."""
    import torch
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    config = Qwen2VLConfig(
        text_config={"hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28,
                     "num_attention_heads": 12, "num_key_value_heads": 2, "vocab_size": 151936,
                     "max_position_embeddings": 32768, "tie_word_embeddings": True},
        vision_config={"depth": 32, "embed_dim": 1280, "hidden_size": 1536, "num_heads": 16,
                       "mlp_ratio": 4, "patch_size": 14, "spatial_merge_size": 2, "in_channels": 3,
                       "temporal_patch_size": 2},
        tie_word_embeddings=True)
    with torch.device("meta"):
        model = Qwen2VLForConditionalGeneration(config)
    return sum(p.numel() for p in model.parameters())   # tied embeddings are one parameter, counted once


def vlm_table(node_rss_mib: float, parameters: int) -> list[dict]:
    """Per Orin memory size and VLM dtype: what the node (hub-size, measured) plus the VLM's weights
    (computed) would take, and what is left for everything else on the module."""
    rows = []
    for memory_gb in ORIN_MEMORY_GB:
        row = {"orin_memory_gb": memory_gb}
        for dtype, nbytes in DTYPE_BYTES.items():
            weights_gib = parameters * nbytes / GIB
            row[dtype] = {"vlm_weights_gib": weights_gib,
                          "node_plus_vlm_gib": node_rss_mib / 1024.0 + weights_gib,
                          "left_gib": memory_gb - node_rss_mib / 1024.0 - weights_gib}
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--stack", action="append", choices=["embedded", "hub-size"],
                   help="stacks to measure (repeatable; default: both)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--goals", type=int, default=40, help="measured goals per stack")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--domain-id", type=int, default=None)
    p.add_argument("--out", default=str(HERE / "results" / "companion_benchmark.json"))
    args = p.parse_args(argv)
    if args.goals < 1 or args.warmup < 0:
        p.error("--goals must be >= 1 and --warmup >= 0")

    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    domain = args.domain_id if args.domain_id is not None else 20 + os.getpid() % 70
    import rclpy

    rclpy.init(domain_id=domain)
    stacks = {}
    try:
        with tempfile.TemporaryDirectory(prefix="cgrs_companion_") as folder:
            configs = stack_configs(Path(folder))
            for name in args.stack or list(configs):
                stacks[name] = measure_stack(name, configs[name], args, domain)
    finally:
        rclpy.try_shutdown()

    parameters = qwen2_vl_2b_parameters()
    largest = max(s["peak_rss_mib"] for s in stacks.values())
    table = vlm_table(largest, parameters)

    print(f"\nnode process, cached mode, device {args.device}, {args.goals} goals (+{args.warmup} warm-up), "
          f"{os.cpu_count()} CPUs")
    print(f"{'stack':<10} {'configure s':>11} {'RSS loaded MiB':>15} {'peak RSS MiB':>13} {'p50 ms':>8} {'p90 ms':>8}"
          f" {'load avg':>10}")
    for name, s in stacks.items():
        print(f"{name:<10} {s['configure_s']:>11.1f} {s['rss_loaded_mib']:>15.0f} {s['peak_rss_mib']:>13.0f} "
              f"{s['latency_p50_ms']:>8.1f} {s['latency_p90_ms']:>8.1f} "
              f"{s['loadavg_1min'][0]:>4.1f}-{s['loadavg_1min'][1]:<4.1f}")
    print(f"\nQwen2-VL-2B-Instruct: {parameters / 1e9:.3f} B parameters (computed from its architecture); "
          f"weights + the largest node's peak RSS ({largest:.0f} MiB), GiB, and what is left of the module")
    print(f"{'Orin':>6} " + " ".join(f"{d + ' need/left':>20}" for d in DTYPE_BYTES))
    for row in table:
        cells = [f"{row[d]['node_plus_vlm_gib']:>8.2f} / {row[d]['left_gib']:>8.2f}" for d in DTYPE_BYTES]
        print(f"{row['orin_memory_gb']:>4}GB " + " ".join(f"{c:>20}" for c in cells))

    report = {"benchmark": "companion", "args": vars(args), "stacks": stacks,
              "vlm": {"model": "Qwen2-VL-2B-Instruct", "parameters": parameters, "computed_not_measured": True,
                      "dtype_bytes": DTYPE_BYTES, "node_peak_rss_mib": largest, "orin": table},
              "python": sys.version.split()[0], "machine": platform.platform(), "cpus": os.cpu_count()}
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
