"""Outgoing HTTP requests for FunLess functions in Python, through `wasi:http`.

A request reaches only the hosts on the function's allow-list (`fl fn create NAME DIR
--allow-host HOST[:PORT]`); any other is refused by the platform and raises `HttpError`
naming `HttpRequestDenied`.

    import funless_http
    status, body = funless_http.request("GET", "http://10.0.0.5:8080/status")

`fl fn build` adds this module to a function that imports it.
"""

from urllib.parse import urlsplit

from componentize_py_types import Err, Ok
from wit_world.imports import outgoing_handler, streams, types

# Bytes per write: wasi:io lets a blocking write carry at most 4096.
_WRITE_CHUNK = 4096
_READ_CHUNK = 64 * 1024

_METHODS = {
    "GET": types.Method_Get,
    "HEAD": types.Method_Head,
    "POST": types.Method_Post,
    "PUT": types.Method_Put,
    "DELETE": types.Method_Delete,
    "CONNECT": types.Method_Connect,
    "OPTIONS": types.Method_Options,
    "TRACE": types.Method_Trace,
    "PATCH": types.Method_Patch,
}


class HttpError(Exception):
    """A request that was refused or failed before a response arrived."""


def _why(error) -> str:
    """The name of a wasi:http error code (`HttpRequestDenied`, `ConnectionRefused`, ...)."""
    name = type(error).__name__
    return name.removeprefix("ErrorCode_")


def request(method: str, url: str, headers: dict | None = None, body: bytes | str | None = None):
    """Sends one request and waits for the whole response: returns `(status, body bytes)`."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise HttpError(f"not an http(s) URL: {url!r}")
    fields = types.Fields.from_list(
        [(name, str(value).encode()) for name, value in (headers or {}).items()]
    )
    outgoing = types.OutgoingRequest(fields)
    verb = method.upper()
    outgoing.set_method(_METHODS[verb]() if verb in _METHODS else types.Method_Other(verb))
    outgoing.set_scheme(types.Scheme_Https() if parts.scheme == "https" else types.Scheme_Http())
    outgoing.set_authority(parts.netloc)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    outgoing.set_path_with_query(path)

    # The body is written after the request is handed over, so that a body larger than the
    # host's buffer streams out instead of blocking before anything is sent.
    request_body = outgoing.body()
    try:
        future = outgoing_handler.handle(outgoing, None)
    except Err as e:
        raise HttpError(f"{verb} {url}: {_why(e.value)}") from None
    # A request the host refuses or fails closes the body: the reason is the response's, so
    # a failed write is only reported when the response has none.
    sent_body = True
    try:
        if body:
            data = body.encode() if isinstance(body, str) else bytes(body)
            with request_body.write() as stream:
                for start in range(0, len(data), _WRITE_CHUNK):
                    stream.blocking_write_and_flush(data[start : start + _WRITE_CHUNK])
        types.OutgoingBody.finish(request_body, None)
    except Err:
        sent_body = False

    with future:
        with future.subscribe() as ready:
            ready.block()
        answer = future.get()
    # option<result<result<incoming-response, error-code>>>: ready, taken once, then the
    # request's own outcome.
    if answer is None or not isinstance(answer, Ok):
        raise HttpError(f"{verb} {url}: no response")
    if not isinstance(answer.value, Ok):
        raise HttpError(f"{verb} {url}: {_why(answer.value.value)}")
    if not sent_body:
        raise HttpError(f"{verb} {url}: the request body could not be sent")
    response = answer.value.value
    status = response.status()
    incoming = response.consume()
    chunks = []
    with incoming.stream() as stream:
        while True:
            try:
                chunks.append(stream.blocking_read(_READ_CHUNK))
            except Err as e:
                if isinstance(e.value, streams.StreamError_Closed):
                    break
                raise HttpError(f"{verb} {url}: the response body failed") from None
    # The body before its response: a child resource is dropped before its parent.
    types.IncomingBody.finish(incoming)
    response.__exit__(None, None, None)
    return status, b"".join(chunks)
