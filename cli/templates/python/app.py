"""`{{name}}`: a FunLess function in Python.

`main` gets the invocation's JSON arguments as a dict and returns the dict the caller
receives; an exception it raises is the caller's 422, with the exception's message, and its
traceback is in the activation's logs. What it prints to stderr goes to the logs too.

`fl fn create {{name}} .` builds this folder (with componentize-py) and uploads it. Modules
are imported when the function is built, so import what you need at the top of the file.
Dependencies go in requirements.txt (pure-Python packages only).
"""

import sys


def main(args: dict) -> dict:
    name = args.get("name")
    if not isinstance(name, str):
        name = "World"
    print(f"greeting {name}", file=sys.stderr)
    return {"payload": f"Hello {name}!"}
