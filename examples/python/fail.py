"""fail: one file, uploaded as it is (`fl fn upload fail examples/python/fail.py`). Logs a
line, then raises: the invocation answers 422 with the exception's message, and the
traceback is in the activation's logs."""

import sys


def main(args: dict) -> dict:
    reason = args.get("reason", "on purpose")
    print(f"about to fail: {reason}", file=sys.stderr)
    return check(reason)


def check(reason: str) -> dict:
    raise ValueError(f"failed {reason}")
