#!/usr/bin/env python3
"""Where a warm invocation's time goes between processes, from the kernel's own clock.

For each layout (the HTTP floor, the Core with one Worker, the Core with its worker embedded),
started fresh from BIN_DIR on free 127.0.0.1 ports with SQLite and `hello_fl` uploaded, `wrk
-t1 -c1` posts `{"args":{"name":"bench"}}` while `perf record` traces the system calls of wrk
and of every server process (raw_syscalls tracepoints, one clock for all). One request at a
time, every request is then a chain of events, each the first of its kind after the one before:

    wrk writes the request     -> the server reads it          (client to server)
    the Core reads it          -> the Core writes to the worker (the Core, request leg)
    the Core writes the call   -> the worker reads it           (Core to worker)
    the worker reads it        -> the worker writes the answer  (the worker)
    the worker writes          -> the Core reads the answer     (worker to Core)
    the Core reads the answer  -> the Core writes the response  (the Core, answer leg)
    the server writes it       -> wrk reads it                  (server to client)

The segments tile the request, so their medians add up to about the traced median; each
segment between processes holds the socket, the kernel's loopback and the wake-up of the
receiving thread; each segment in a process holds everything the process does (its own
stages are in the answer's Server-Timing header, `funless-bench hops`). Tracing adds a few
microseconds per system call: the untraced wrk median of the same process is printed too.

    python3 bench/timeline.py BIN_DIR [SECONDS]
        BIN_DIR holds funless-core, funless-worker and funless-bench (release builds);
        needs examples/build.sh run, wrk and perf (Debian: wrk, linux-perf), run as root.
"""
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WASM = os.path.join(ROOT, "examples/target/wasm/hello_fl.wasm")
BODY = '{"args":{"name":"bench"}}'

# The socket system calls traced: reads at their exit (when the bytes are there, the entry
# gives the descriptor), writes at their entry. Only these, to keep the tracing light.
READS = ["read", "recvfrom", "readv", "recvmsg"]
WRITES = ["write", "sendto", "writev", "sendmsg"]
TRACEPOINTS = ",".join([f"syscalls:sys_enter_{c}" for c in READS + WRITES] + [f"syscalls:sys_exit_{c}" for c in READS])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what, check, seconds=20.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"error: {what} within {seconds:.0f} s")


def http(url, token=None, data=None, headers=None):
    request = urllib.request.Request(url, data=data, headers=headers or {})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.read()


def upload(api, token):
    boundary = "funlessbench"
    with open(WASM, "rb") as f:
        code = f.read()
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nhello\r\n"
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"code\"; filename=\"hello_fl.wasm\"\r\n"
        "Content-Type: application/wasm\r\n\r\n"
    ).encode() + code + f"\r\n--{boundary}--\r\n".encode()
    http(f"{api}/v1/fn/_", token, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})


class Layout:
    """Server processes of one layout, stopped by `stop`."""

    def __init__(self, name, bin_dir, work):
        self.name, self.processes, self.token = name, [], None
        self.dir = os.path.join(work, name)
        os.makedirs(self.dir)
        port = free_port()
        self.api = f"http://127.0.0.1:{port}"
        if name == "floor":
            self.spawn("floor", [f"{bin_dir}/funless-bench", "floor-server", "--port", str(port), "--threads", "1"])
            wait_until("the floor answers", lambda: http(self.api + "/", data=b"{}"))
            self.url = self.api + "/"
            return
        cluster = free_port()
        core = [f"{bin_dir}/funless-core", "--data-dir", f"{self.dir}/core", "--listen", f"127.0.0.1:{port}",
                "--cluster-listen", "127.0.0.1", "--cluster-port", str(cluster)]
        if name == "embedded":
            core.append("--embedded-worker")
        self.spawn("core", core)
        config = f"{self.dir}/core/fl-config.toml"
        wait_until("the Core answers", lambda: os.path.exists(config) and http(self.api + "/health"))
        with open(config) as f:
            self.token = re.search(r'^token = "(.*)"$', f.read(), re.M).group(1)
        if name == "two":
            with open(f"{self.dir}/core/cookie") as f:
                cookie = f.read().strip()
            self.spawn("worker", [f"{bin_dir}/funless-worker", "--core", f"127.0.0.1:{cluster}", "--cookie", cookie,
                                  "--name", "w1", "--cluster-listen", "127.0.0.1", "--cache-dir", f"{self.dir}/worker"])
        wait_until("a worker joined", lambda: "worker joined" in open(f"{self.dir}/core.log").read())
        upload(self.api, self.token)
        self.url = self.api + "/v1/fn/_/hello"

    def spawn(self, role, argv):
        log = open(os.path.join(self.dir, f"{role}.log"), "w")
        self.processes.append((role, subprocess.Popen(argv, stdout=log, stderr=log)))

    def pids(self):
        return {p.pid: role for role, p in self.processes}

    def stop(self):
        for _, p in self.processes:
            p.terminate()
        for _, p in self.processes:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def wrk_script(path, token):
    with open(path, "w") as f:
        f.write(f'wrk.method = "POST"\nwrk.body = \'{BODY}\'\nwrk.headers["Content-Type"] = "application/json"\n')
        if token:
            f.write(f'wrk.headers["Authorization"] = "Bearer {token}"\n')


def wrk(layout, seconds, script):
    out = subprocess.run(["wrk", "-t1", "-c1", f"-d{seconds}s", "--latency", "-s", script, layout.url],
                         capture_output=True, text=True, check=True).stdout
    return parse_wrk(out)


def parse_wrk(out):
    """(requests, median µs, non-2xx) from wrk's --latency output."""
    median = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s)$", out, re.M)
    scale = {"us": 1, "ms": 1e3, "s": 1e6}[median.group(2)]
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return requests, float(median.group(1)) * scale, int(bad.group(1)) if bad else 0


EVENT = re.compile(
    r"^\s*(?P<comm>.+?)\s+(?P<pid>\d+)/(?P<tid>\d+)\s+(?P<time>[\d.]+):\s+syscalls:sys_(?P<dir>enter|exit)_(?P<call>\w+):\s+(?P<rest>.*)$")


def events(script_text, roles):
    """(time µs, role, 'read'|'write', fd, bytes) for socket reads and writes, from `perf
    script`: a write at its entry, a read at its exit (when its bytes are there)."""
    entered = {}
    for line in script_text.splitlines():
        m = EVENT.match(line)
        if not m:
            continue
        role = roles.get(int(m["pid"]))
        if role is None:
            continue
        t, tid, call = float(m["time"]) * 1e6, int(m["tid"]), m["call"]
        if m["dir"] == "enter":
            fd = int(re.match(r"fd: (0x[0-9a-f]+)", m["rest"]).group(1), 16)
            if call in WRITES:
                yield t, role, "write", fd, None
            else:
                entered[tid] = fd
        else:
            fd = entered.pop(tid, None)
            result = int(m["rest"].strip(), 16)
            if fd is not None and 0 < result < 1 << 62:
                yield t, role, "read", fd, result


def chains(evs, layout):
    """Per request, the segment durations (µs) in order; requests whose chain is broken (a
    status report crossing it, a read split in two) are skipped."""
    two = layout == "two"
    server = "floor" if layout == "floor" else "core"
    out = []
    i, n = 0, len(evs)

    def next_event(start, role, kind, fd=None, not_fd=None):
        for j in range(start, n):
            t, r, k, f, _ = evs[j]
            if r == role and k == kind and (fd is None or f == fd) and (not_fd is None or f != not_fd):
                return j
        return None

    while True:
        j0 = next_event(i, "wrk", "write")
        if j0 is None:
            break
        end = next_event(j0 + 1, "wrk", "read")
        if end is None:
            break
        nxt = next_event(j0 + 1, "wrk", "write")
        if nxt is not None and nxt < end:
            i = j0 + 1
            continue
        j1 = next_event(j0 + 1, server, "read")
        steps = None
        if j1 is not None and j1 < end:
            http_fd = evs[j1][3]
            if two:
                j2 = next_event(j1 + 1, "core", "write", not_fd=http_fd)
                j3 = next_event(j2 + 1, "worker", "read") if j2 else None
                j4 = next_event(j3 + 1, "worker", "write") if j3 else None
                j5 = next_event(j4 + 1, "core", "read", fd=evs[j2][3]) if j4 else None
                j6 = next_event(j5 + 1, "core", "write", fd=http_fd) if j5 else None
                steps = [j0, j1, j2, j3, j4, j5, j6, end]
            else:
                j2 = next_event(j1 + 1, server, "write", fd=http_fd)
                steps = [j0, j1, j2, end]
        if steps and all(s is not None for s in steps) and steps == sorted(steps) and steps[-2] < end:
            times = [evs[s][0] for s in steps]
            out.append([b - a for a, b in zip(times, times[1:])])
        i = end + 1
    return out


SEGMENTS = {
    "two": ["client to Core (loopback, wake-up, read)", "Core, request leg (HTTP, auth, parse, lookup, schedule, encode)",
            "Core to worker (loopback, wake-up, read)", "worker (decode, invoker, Wasmtime, encode)",
            "worker to Core (loopback, wake-up, read)", "Core, answer leg (decode, record, response)",
            "Core to client (loopback, wake-up, read)"],
    "embedded": ["client to Core (loopback, wake-up, read)", "Core and its worker, request read to response written",
                 "Core to client (loopback, wake-up, read)"],
    "floor": ["client to server (loopback, wake-up, read)", "server, request read to response written",
              "server to client (loopback, wake-up, read)"],
}


def trace(layout, seconds):
    script = os.path.join(layout.dir, "post.lua")
    wrk_script(script, layout.token)
    wrk(layout, 2, script)  # warm
    untraced = wrk(layout, seconds, script)
    load = subprocess.Popen(["wrk", "-t1", "-c1", f"-d{seconds + 2}s", "--latency", "-s", script, layout.url],
                            stdout=subprocess.PIPE, text=True)
    time.sleep(1)
    data = os.path.join(layout.dir, "perf.data")
    roles = layout.pids()
    roles[load.pid] = "wrk"
    pids = ",".join(str(p) for p in roles)
    subprocess.run(["perf", "record", "-q", "-e", TRACEPOINTS, "-p", pids,
                    "-o", data, "--", "sleep", str(max(1, seconds - 1))],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    traced = parse_wrk(load.communicate()[0])
    text = subprocess.run(["perf", "script", "--ns", "-i", data, "-F", "comm,pid,tid,time,event,trace"],
                          capture_output=True, text=True, check=True).stdout
    evs = sorted(events(text, roles), key=lambda e: e[0])
    return untraced, traced, chains(evs, layout.name)


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    bin_dir = os.path.abspath(sys.argv[1])
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    for tool in ["wrk", "perf"]:
        if not shutil.which(tool):
            raise SystemExit(f"error: {tool} is not installed (Debian: wrk, linux-perf)")
    if not os.path.exists(WASM):
        subprocess.run([os.path.join(ROOT, "examples/build.sh")], check=True)
    work = tempfile.mkdtemp(prefix="funless-timeline")
    try:
        for name in ["floor", "two", "embedded"]:
            layout = Layout(name, bin_dir, work)
            try:
                untraced, traced, requests = trace(layout, seconds)
            finally:
                layout.stop()
            if not requests:
                raise SystemExit(f"error: no whole request traced for {name}")
            columns = list(zip(*requests))
            medians = [statistics.median(c) for c in columns]
            totals = [sum(r) for r in requests]
            print(f"\n**{name}**: {len(requests)} whole requests traced; wrk -t1 -c1 median untraced "
                  f"{untraced[1]:.0f} µs ({untraced[0]} requests in {seconds} s); non-2xx "
                  f"{untraced[2] + traced[2]}\n")
            print("| segment | median µs | p90 µs |\n|---|---|---|")
            for label, column, median in zip(SEGMENTS[name], columns, medians):
                p90 = sorted(column)[int(len(column) * 0.9)]
                print(f"| {label} | {median:.1f} | {p90:.1f} |")
            print(f"| **sum of the medians** | **{sum(medians):.1f}** | |")
            print(f"| **median of the whole chain** | **{statistics.median(totals):.1f}** | |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
