#!/usr/bin/env python3
"""Page faults, context switches and CPU time per request of the server processes under wrk,
counted by `perf stat` (software events: they work in a VM without hardware counters).

A layout of `bench/timeline.py` (two: a Core and one Worker; embedded: the Core with its worker)
started fresh from each BIN_DIR, `hello_fl` uploaded, 2 s of warm-up, then `perf stat -e
page-faults,context-switches,task-clock` on every server process for 4 s of `wrk -cCLIENTS`.
Builds are interleaved so that a slow minute of the machine hits all of them.

    python3 bench/perstat.py LAYOUT CLIENTS BIN_DIR [BIN_DIR...]
        needs wrk and perf (Debian: wrk, linux-perf), as root.
"""
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import timeline  # noqa: E402

SECONDS = 4


def measure(bin_dir, name, clients):
    work = tempfile.mkdtemp(prefix="funless-perstat")
    layout = timeline.Layout(name, bin_dir, work)
    try:
        script = os.path.join(layout.dir, "post.lua")
        timeline.wrk_script(script, layout.token)
        threads = 1 if clients == 1 else 2
        wrk = ["wrk", f"-t{threads}", f"-c{clients}", "-s", script, layout.url]
        subprocess.run(wrk[:3] + ["-d2s"] + wrk[3:], check=True, capture_output=True)
        load = subprocess.Popen(wrk[:3] + [f"-d{SECONDS + 1}s"] + wrk[3:], stdout=subprocess.PIPE, text=True)
        time.sleep(0.5)
        pids = ",".join(str(p) for p in layout.pids())
        stat = subprocess.run(["perf", "stat", "-e", "page-faults,context-switches,task-clock", "-p", pids, "--",
                               "sleep", str(SECONDS)], capture_output=True, text=True, check=True).stderr
        out = load.communicate()[0]
    finally:
        layout.stop()
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    counts = {}
    for line in stat.splitlines():
        m = re.match(r"\s*([\d,.]+)\s+(?:msec\s+)?(page-faults|context-switches|task-clock)", line)
        if m:
            counts[m.group(2)] = float(m.group(1).replace(",", ""))
    requests = rate * SECONDS
    return (f"| {bin_dir} | {name} | {clients} | {rate:,.0f} | {counts['page-faults'] / requests:.2f} | "
            f"{counts['context-switches'] / requests:.2f} | {counts['task-clock'] * 1000 / requests:.1f} |")


def main():
    if len(sys.argv) < 4:
        raise SystemExit(__doc__)
    name, clients, dirs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    print("| build | layout | clients | req/s | page faults per request | context switches per request "
          "| CPU µs per request |\n|---|---|---|---|---|---|---|")
    for bin_dir in dirs:
        print(measure(os.path.abspath(bin_dir), name, clients), flush=True)


if __name__ == "__main__":
    main()
