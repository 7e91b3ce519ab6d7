"""network_benchmark (SeBS), through wasi:http like the Rust network_benchmark_p2: `n`
(default 16) POSTs carrying {"i", "sent_ms"} to `server`, then the timings PUT to `bucket`;
answers {"times_ms": [...], "bucket_status": N}.

Args: {"server": "http://host:port/reply", "bucket": "http://host:port/bucket/key", "n": 16}.
Both hosts must be on the function's allow-list; a refused request raises an error naming
HttpRequestDenied."""

import json
import time

import funless_http

JSON = {"content-type": "application/json"}


def now_ms() -> float:
    return time.time() * 1000


def main(args: dict) -> dict:
    server = args.get("server")
    bucket = args.get("bucket")
    if not isinstance(server, str):
        raise ValueError('missing "server" URL')
    if not isinstance(bucket, str):
        raise ValueError('missing "bucket" URL')
    n = args.get("n")
    if n is None:
        n = 16
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"`n` must be a non-negative integer, got {n!r}")
    times = []
    for i in range(n):
        sent = now_ms()
        body = json.dumps({"i": i, "sent_ms": sent})
        status, _reply = funless_http.request("POST", server, JSON, body)
        if status != 200:
            raise RuntimeError(f"request {i} to {server} answered status {status}")
        times.append(now_ms() - sent)
    report = json.dumps({"times_ms": times})
    bucket_status, _ = funless_http.request("PUT", bucket, JSON, report)
    return {"times_ms": times, "bucket_status": bucket_status}
