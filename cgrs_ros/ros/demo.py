"""``cgrs-ros-demo``: run the CGRS node and talk to it, end to end, without ros2 launch/ros2cli.

Starts ``python -m cgrs_ros.ros.node`` as a subprocess, configures and activates it through its
lifecycle services, sends goals on ``~/goal`` and through the ``~/locate`` action (and one bad
goal), prints what comes back, then deactivates, cleans up and stops the node.

    cgrs-ros-demo                                  # packaged engine config + demo index (built on first use)
    cgrs-ros-demo --engine-config my.yaml --index-dir my_index --device cuda
    cgrs-ros-demo --query "the red-roofed hall north of the round pool" --query "a tall tower"

Exit status 0 when every step answered as expected.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_QUERIES = ("the red-roofed hall north of the round pool",
                   "a tall white tower next to a parking lot")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cgrs-ros-demo", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engine-config", default="", help="engine YAML ('' = packaged default)")
    p.add_argument("--index-dir", default="", help="index folder ('' = demo index, built on first use)")
    p.add_argument("--device", default="", help="auto | cpu | cuda | cuda:N ('' = the engine config's)")
    p.add_argument("--query", action="append", help="a goal to send (repeatable)")
    p.add_argument("--domain-id", type=int, default=None,
                   help="ROS_DOMAIN_ID for the node and this client (default: $ROS_DOMAIN_ID or 0)")
    p.add_argument("--configure-timeout", type=float, default=1800.0,
                   help="seconds to wait for configure (a first run builds the demo index)")
    p.add_argument("--log", default="", help="node log file (default: a temporary file, printed on failure)")
    p.add_argument("--params", action="append", default=[], metavar="NAME:=VALUE",
                   help="extra node parameter (repeatable), e.g. --params map_frame:=world")
    return p


def _print_matches(msg, limit: int = 5) -> None:
    from cgrs_ros.ros.client import OUTCOME_NAMES

    print(f"    outcome: {OUTCOME_NAMES.get(msg.outcome, msg.outcome)}")
    print(f"    status : {msg.status}")
    if msg.ambiguous:
        print(f"    ambiguous between {', '.join(msg.ambiguous_place_ids)}: {msg.clarification}")
    print(f"    header : frame '{msg.header.frame_id}', stamp {msg.header.stamp.sec}.{msg.header.stamp.nanosec:09d}"
          f"{'  [DEGRADED]' if msg.degraded else ''}")
    if not msg.matches:
        return
    print(f"    confidence {msg.confidence:.3f}{'' if msg.confident else ' (not confident)'}; "
          f"image ranking: {', '.join(msg.image_ids[:limit])}")
    print(f"    {'#':>2} {'place':<10} {'best view':<22} {'views':>5} {'fused':>7} {'coarse':>7} {'caption':>7}  "
          f"{'target lat':>10} {'lon':>10}  {'x_east':>8} {'y_north':>8} {'z_up':>6}")
    for m in msg.matches[:limit]:
        p = m.pose.position
        geo = (f"{m.target_latitude:10.6f} {m.target_longitude:10.6f}  {p.x:8.1f} {p.y:8.1f} {p.z:6.1f}"
               if m.has_target else f"{'(no GPS)':>21}  {'':>8} {'':>8} {'':>6}")
        cap = "    n/a" if math.isnan(m.caption_score) else f"{m.caption_score:7.3f}"
        print(f"    {m.rank:>2} {m.place_id[:10]:<10} {m.image_id[:22]:<22} {m.n_views:>5} {m.score:7.3f} "
              f"{m.coarse_score:7.3f} {cap}  {geo}")
    best = msg.matches[0]
    if best.caption:
        print(f"    best caption: {best.caption!r}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    domain = args.domain_id if args.domain_id is not None else int(os.environ.get("ROS_DOMAIN_ID", "0"))
    try:
        import rclpy

        from cgrs_ros.msg import RankedMatches
        from cgrs_ros.ros.client import RAN, CGRSClient, start_node_process, stop_node_process
    except ImportError as exc:
        print(f"cgrs-ros-demo: the ROS 2 runtime or the cgrs_ros interfaces are missing ({exc}); "
              "run scripts/build_interfaces.sh", file=sys.stderr)
        return 2

    params = {"engine_config": args.engine_config, "index_dir": args.index_dir, "device": args.device}
    for item in args.params:
        name, sep, value = item.partition(":=")
        if not sep:
            print(f"cgrs-ros-demo: --params {item!r}: expected NAME:=VALUE", file=sys.stderr)
            return 2
        import yaml
        params[name] = yaml.safe_load(value) if value.strip() else ""   # typed like `-p name:=value`
    log_path = Path(args.log) if args.log else Path(tempfile.mkstemp(prefix="cgrs_node_", suffix=".log")[1])
    queries = args.query or list(DEFAULT_QUERIES)
    print(f"[demo] starting the node (ROS_DOMAIN_ID={domain}, log {log_path})")
    process = start_node_process(params, log_path=log_path, domain_id=domain)
    rclpy.init(domain_id=domain)
    client = CGRSClient()
    ok = True
    try:
        client.wait_for_node(timeout=60.0)
        print(f"[demo] node is up, state: {client.get_state()}")
        started = time.monotonic()
        print("[demo] configure (loads the models and the index; a first run builds the demo index)...")
        if not client.change_state("configure", args.configure_timeout):
            print(f"[demo] configure FAILED; the node stays unconfigured. Its log:\n{log_path.read_text()[-3000:]}")
            return 1
        print(f"[demo] configured in {time.monotonic() - started:.1f} s; activate")
        if not client.change_state("activate"):
            print("[demo] activate FAILED")
            return 1
        client.wait_for_connections(timeout=20.0)

        for query in queries:
            start = client.count("matches")
            sent = time.monotonic()
            client.send_goal(query)
            msg = client.wait_for_query(query, start, timeout=300.0)
            print(f"\n[demo] ~/goal {query!r} -> ~/matches in {1000 * (time.monotonic() - sent):.0f} ms "
                  f"(goal {msg.goal_id})")
            _print_matches(msg)
            ok &= msg.outcome in RAN
            if msg.matches and msg.matches[0].has_target:
                pose = client.wait_for("target_pose", lambda p: p.header.stamp == msg.header.stamp, timeout=10.0)
                p, q = pose.pose.position, pose.pose.orientation
                print(f"    ~/target_pose: ({p.x:.1f}, {p.y:.1f}, {p.z:.1f}) m in '{pose.header.frame_id}', "
                      f"q=({q.x:.3f}, {q.y:.3f}, {q.z:.3f}, {q.w:.3f})")

        query = queries[0]
        print(f"\n[demo] ~/locate action {query!r} (top_k=10, caption_mode=cached)")
        status, result, feedback = client.locate(query, timeout=300.0, top_k=10, caption_mode="cached")
        print(f"    feedback: {' -> '.join(f'{s}({p:.1f})' for s, p, _ in feedback)}")
        print(f"    result  : {status}, success={result.success}")
        _print_matches(result.matches)
        ok &= status == "succeeded" and result.matches.outcome in RAN

        print("\n[demo] a bad goal: fusion_weight 1.5 (must be refused with a reason)")
        status, result, _ = client.locate(query, fusion_weight=1.5)
        print(f"    result  : {status}: {result.message}")
        ok &= status == "aborted" and result.matches.outcome == RankedMatches.OUTCOME_REJECTED

        print("\n[demo] deactivate, cleanup, shutdown")
        ok &= client.change_state("deactivate") and client.change_state("cleanup") and client.change_state("shutdown")
        print(f"[demo] node state: {client.get_state()}")
    except (TimeoutError, RuntimeError) as exc:
        ok = False
        print(f"[demo] FAILED: {exc}\nnode log ({log_path}):\n{log_path.read_text()[-3000:]}")
    finally:
        client.close()
        rclpy.try_shutdown()
        code = stop_node_process(process)
        print(f"[demo] node exited with {code}")
    print("[demo] done" if ok else "[demo] finished with failures")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
