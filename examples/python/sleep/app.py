"""sleep: {"ms": N} (default 3000) sleeps N milliseconds, then answers
{"payload": "Slept for N ms"} ("Slept for 3 seconds" for the default, SeBS's text)."""

import time

DEFAULT_MS = 3000


def main(args: dict) -> dict:
    ms = args.get("ms")
    if ms is None:
        ms = DEFAULT_MS
    if isinstance(ms, bool) or not isinstance(ms, int) or ms < 0:
        raise ValueError(f"`ms` must be a non-negative integer, got {ms!r}")
    time.sleep(ms / 1000)
    payload = "Slept for 3 seconds" if ms == 3000 else f"Slept for {ms} ms"
    return {"payload": payload}
