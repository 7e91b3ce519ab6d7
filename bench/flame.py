#!/usr/bin/env python3
"""Flame graphs of the Core and the Worker under wrk, and where their CPU time goes by crate.

The Core with one Worker (two processes) and the Core with its worker embedded, started fresh
from BIN_DIR as `bench/timeline.py` starts them, each get `wrk -t1 -c1` and then `wrk -t2
-c64` (POST `{"args":{"name":"bench"}}` to `hello_fl`) while `perf record -F 999 --call-graph
dwarf` samples the server processes' CPU time for SECONDS. For each run this writes
OUT_DIR/flame-LAYOUT-cN.svg (inferno's flame graph: the width of a frame is its share of the
samples, kernel frames marked `_[k]`) and prints the samples' share by where the innermost
frame is: the kernel, the C library, or the Rust crate of the function.

    python3 bench/flame.py BIN_DIR OUT_DIR [SECONDS [LAYOUT:CLIENTS...]]   # default: all four
        needs wrk, perf (Debian: wrk, linux-perf) and inferno (`cargo install inferno`), as
        root; release binaries carry their symbols (the workspace's release profile).
"""
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import timeline  # noqa: E402


def where(frame):
    """The kernel, the C library, or the Rust crate a frame belongs to."""
    if frame.endswith("_[k]"):
        return "kernel"
    name = frame.lstrip("<&*").removeprefix("dyn ")
    m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)::", name)
    if m:
        return m.group(1)
    if name.startswith("[unknown]"):
        return "unknown"
    return "C library and other"


def record(layout, clients, seconds, out_dir):
    script = os.path.join(layout.dir, "post.lua")
    timeline.wrk_script(script, layout.token)
    threads = 1 if clients == 1 else 2
    subprocess.run(["wrk", f"-t{threads}", f"-c{clients}", "-d2s", "-s", script, layout.url],
                   check=True, capture_output=True)  # warm
    load = subprocess.Popen(["wrk", f"-t{threads}", f"-c{clients}", f"-d{seconds + 2}s", "-s", script, layout.url],
                            stdout=subprocess.PIPE, text=True)
    time.sleep(1)
    data = os.path.join(layout.dir, f"perf-{clients}.data")
    pids = ",".join(str(p) for p in layout.pids())
    subprocess.run(["perf", "record", "-q", "-F", "999", "--call-graph", "dwarf,16384", "-p", pids, "-o", data,
                    "--", "sleep", str(seconds)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = load.communicate()[0]
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)
    script_out = subprocess.run(["perf", "script", "-i", data], capture_output=True, check=True).stdout
    folded = subprocess.run(["inferno-collapse-perf", "--all"], input=script_out, capture_output=True,
                            check=True).stdout
    title = f"{layout.name} c={clients}: {rate} req/s, {seconds} s at 999 Hz"
    svg = subprocess.run(["inferno-flamegraph", "--title", title, "--minwidth", "0.2"], input=folded,
                         capture_output=True, check=True).stdout
    path = os.path.join(out_dir, f"flame-{layout.name}-c{clients}.svg")
    with open(path, "wb") as f:
        f.write(svg)
    shares, threads, leaves = collections.Counter(), collections.Counter(), collections.Counter()
    inside = collections.Counter()
    for line in folded.decode().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        shares[where(frames[-1])] += int(count)
        threads[frames[0]] += int(count)
        leaves[frames[-1]] += int(count)
        if frames[0] == "funless-core":
            for group, test in GROUPS.items():
                if any(test(f) for f in frames[1:]):
                    inside[group] += int(count)
    return title, path, shares, threads, leaves, inside


# What the Core's thread does, by the frames a sample is inside (one sample may be in several).
GROUPS = {
    "socket sends (tcp_sendmsg: to the worker and to the client, loopback delivery included)":
        lambda f: f.startswith("tcp_sendmsg_[k]"),
    "socket reads (tcp_recvmsg)": lambda f: f.startswith("tcp_recvmsg_[k]"),
    "waiting for events (epoll_wait)": lambda f: f == "epoll_wait" or f.startswith("do_epoll_wait"),
    "HTTP: hyper and axum (routing, middleware, the handler inside them)":
        lambda f: f.lstrip("<").startswith(("hyper::", "axum::")),
    "actors and cluster sessions: ractor and ractor_cluster":
        lambda f: f.lstrip("<").startswith(("ractor::", "ractor_cluster::")),
    "the platform's own code (funless_*)": lambda f: f.lstrip("<").startswith(("funless_core", "funless_api")),
}


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    bin_dir, out_dir = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    seconds = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    runs = [(name, clients) for name in ["two", "embedded"] for clients in [1, 64]]
    if len(sys.argv) > 4:
        runs = [(r.split(":")[0], int(r.split(":")[1])) for r in sys.argv[4:]]
    for tool in ["wrk", "perf", "inferno-collapse-perf", "inferno-flamegraph"]:
        if not shutil.which(tool):
            raise SystemExit(f"error: {tool} is not installed")
    os.makedirs(out_dir, exist_ok=True)
    work = tempfile.mkdtemp(prefix="funless-flame")
    try:
        for name, clients in runs:
            layout = timeline.Layout(name, bin_dir, work + f"/{clients}")
            try:
                title, path, shares, threads, leaves, inside = record(layout, clients, seconds, out_dir)
            finally:
                layout.stop()
            total = sum(shares.values())
            print(f"\n**{title}** ({os.path.basename(path)}; {total / 1e9:.2f} s of CPU sampled, by "
                  "thread: " + ", ".join(f"{p} {100 * c / total:.0f}%" for p, c in threads.most_common(4)) + ")\n")
            print("| innermost frame in | share of CPU |\n|---|---|")
            for what, count in shares.most_common(12):
                print(f"| {what} | {100 * count / total:.1f}% |")
            core = threads["funless-core"]
            if core:
                print("\n| the Core's thread: samples inside | share of its CPU |\n|---|---|")
                for group in GROUPS:
                    print(f"| {group} | {100 * inside[group] / core:.0f}% |")
            print("\n| innermost function | share of CPU |\n|---|---|")
            for what, count in leaves.most_common(15):
                print(f"| `{what[:90]}` | {100 * count / total:.1f}% |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
