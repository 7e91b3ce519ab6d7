"""hello: {"name": "x"} → {"payload": "Hello x!"}; without a string name, greets the World.
Logs one line (stderr)."""

import sys


def main(args: dict) -> dict:
    name = args.get("name")
    if not isinstance(name, str):
        name = "World"
    print(f"hello called with name={name}", file=sys.stderr)
    return {"payload": f"Hello {name}!"}
