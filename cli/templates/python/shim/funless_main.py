"""The entry `fl` wraps around a Python function when it builds it (this file is written into
the build's scratch folder, never into the function's own folder).

The platform runs the function as a program: the invocation's JSON arguments arrive on stdin,
the JSON result leaves on stdout, and a failure is a non-zero exit, which the platform answers
with 422. This module is that program: it reads the arguments, calls `main(args)` of the
function's module and writes what it returns. An exception raised by `main` (or a result that
is not JSON) prints its traceback to stderr, which becomes the activation's logs, writes
`{"error": "<the exception>"}` on stdout, which becomes the 422's message, and makes the run
fail.

componentize-py imports this module, and with it the function's module and everything they
import, when it builds the function: that is why a module missing `main` fails the build.
"""

import json
import sys
import traceback

from componentize_py_types import Err
from wit_world import exports

import {{module}} as function

if not callable(getattr(function, "main", None)):
    raise TypeError("{{module}}.py must define main(args), which gets a dict and returns one")


class Run(exports.Run):
    def run(self) -> None:
        try:
            raw = sys.stdin.buffer.read()
            args = json.loads(raw) if raw.strip() else {}
            output = json.dumps(function.main(args), allow_nan=False)
        except BaseException as error:
            # The traceback from the function's own frames on: this module's is noise.
            frames = error.__traceback__
            traceback.print_exception(type(error), error, frames.tb_next or frames)
            sys.stderr.flush()
            # The 422's message: the exception alone (the platform takes `{"error": ...}` on
            # stdout of a failing program as its message; the traceback is in the logs).
            message = "".join(traceback.format_exception_only(type(error), error)).strip()
            sys.stdout.write(json.dumps({"error": message}))
            sys.stdout.flush()
            # `run`'s error result: the platform's non-zero exit.
            raise Err(None)
        sys.stdout.write(output)
        sys.stdout.flush()
