#!/usr/bin/env python3
"""Goal -> matches latency of the CGRS node, as a ROS client sees it.

Starts the node as a subprocess (``python -m cgrs_ros.ros.node``), configures and activates it,
then for each caption mode sends N goals on ``~/goal`` (one at a time, waiting for the answer)
and measures the wall time from publishing the goal to receiving its ``~/matches`` message;
repeated R times after W warm-up goals.  Prints a table (median, p90, min, max in ms) and writes
the raw samples as JSON.  Timings include DDS transport, the engine query, message conversion and
(unless --no-image) rendering the contact sheet.

    python bench/latency_goal_to_matches.py                          # packaged config, demo index
    python bench/latency_goal_to_matches.py --engine-config cfg.yaml --index-dir idx \\
        --device cuda --goals 20 --repeats 5 --caption-mode cached --caption-mode online --out lat.json
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

QUERIES = [
    "the red-roofed hall north of the round pool", "a tall white tower next to a parking lot",
    "a building with a green roof beside a river", "the blue roof by the crossroads",
    "a long yellow warehouse near the railway", "a small black-roofed house in a garden",
    "a stadium with a running track", "the church with a square tower",
    "a parking lot surrounded by trees", "an L-shaped building with a courtyard",
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q
    low, high = int(position), min(int(position) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--engine-config", default="")
    p.add_argument("--index-dir", default="")
    p.add_argument("--device", default="auto")
    p.add_argument("--goals", type=int, default=10, help="distinct goals per repeat (cycled from a list)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--caption-mode", action="append", choices=["cached", "online", "off"],
                   help="caption modes to measure (repeatable; default: cached)")
    p.add_argument("--no-image", action="store_true", help="do not publish the contact sheet")
    p.add_argument("--domain-id", type=int, default=None)
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for one answer")
    p.add_argument("--out", default="bench_latency_goal_to_matches.json")
    args = p.parse_args(argv)
    modes = args.caption_mode or ["cached"]

    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    domain = args.domain_id if args.domain_id is not None else 20 + os.getpid() % 70
    import rclpy

    from cgrs_ros.ros.client import RAN, CGRSClient, start_node_process, stop_node_process

    log_path = Path(tempfile.mkstemp(prefix="cgrs_bench_node_", suffix=".log")[1])
    params = {"engine_config": args.engine_config, "index_dir": args.index_dir, "device": args.device,
              "publish_image": not args.no_image}
    process = start_node_process(params, log_path=log_path, domain_id=domain)
    rclpy.init(domain_id=domain)
    client = CGRSClient(client_name="cgrs_bench")
    samples: dict[str, list[float]] = {}
    try:
        client.wait_for_node(60.0)
        t0 = time.monotonic()
        if not client.change_state("configure", 1800.0):
            print(f"configure failed; node log:\n{log_path.read_text()[-3000:]}", file=sys.stderr)
            return 1
        configure_s = time.monotonic() - t0
        assert client.change_state("activate")
        client.wait_for_connections(("matches",), timeout=30.0)

        for mode in modes:
            ok, reason = client.set_parameter("caption_mode", mode)
            if not ok:
                print(f"caption_mode {mode}: {reason}", file=sys.stderr)
                return 1
            times = []
            total = args.warmup + args.goals * args.repeats
            for i in range(total):
                query = f"{QUERIES[i % len(QUERIES)]} ({mode} {i})"   # unique: never matched to an old answer
                start = client.count("matches")
                sent = time.perf_counter()
                client.send_goal(query)
                msg = client.wait_for_query(query, start, timeout=args.timeout)
                elapsed = time.perf_counter() - sent
                if msg.outcome not in RAN:
                    print(f"goal {query!r}: {msg.status}", file=sys.stderr)
                if i >= args.warmup:
                    times.append(elapsed * 1000.0)
            samples[mode] = times
        client.change_state("deactivate")
    finally:
        client.close()
        rclpy.try_shutdown()
        stop_node_process(process)

    print(f"\nconfigure (engine load): {configure_s:.1f} s   device: {args.device}   "
          f"goals: {args.goals} x {args.repeats} repeats (+{args.warmup} warm-up)")
    print(f"{'caption_mode':<13} {'n':>4} {'median ms':>10} {'p90 ms':>9} {'min ms':>8} {'max ms':>8}")
    rows = {}
    for mode, times in samples.items():
        rows[mode] = {"n": len(times), "median_ms": statistics.median(times), "p90_ms": percentile(times, 0.9),
                      "min_ms": min(times), "max_ms": max(times)}
        r = rows[mode]
        print(f"{mode:<13} {r['n']:>4} {r['median_ms']:>10.1f} {r['p90_ms']:>9.1f} {r['min_ms']:>8.1f} {r['max_ms']:>8.1f}")
    report = {"benchmark": "goal_to_matches_latency", "args": vars(args), "configure_s": configure_s,
              "summary": rows, "samples_ms": samples, "python": sys.version.split()[0],
              "machine": platform.platform(), "node_log": str(log_path)}
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
