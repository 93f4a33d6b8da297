"""The fidelity benchmark's HTTP service: a WSGI app that sleeps the time it is asked to.

`GET /?sleep=SECONDS` holds the (sync) worker for SECONDS and answers 200 "ok", with the
worker's pid and the wall-clock times at which the app was entered and left (X-Worker,
X-Entered, X-Left): between one request's leaving and the next one's entering, a busy worker
does only the server's own work (write, close, accept, parse), which measures it. The load
generator draws each request's service time from its own seeded generator and sends it, so
a run is reproducible and the service times are known exactly; sleeping rather than computing
keeps CPU contention on a small machine out of the service time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from urllib.parse import parse_qs

StartResponse = Callable[[str, list[tuple[str, str]]], object]


def application(environ: dict[str, object], start_response: StartResponse) -> Iterable[bytes]:
    query = parse_qs(str(environ.get("QUERY_STRING", "")))
    try:
        seconds = float(query.get("sleep", ["0"])[0])
    except ValueError:
        start_response("400 Bad Request", [("Content-Type", "text/plain")])
        return [b"sleep must be a number of seconds, e.g. /?sleep=0.05\n"]
    entered = time.time()
    if seconds > 0.0:
        time.sleep(seconds)
    headers = [
        ("Content-Type", "text/plain"),
        ("Content-Length", "2"),
        ("X-Worker", str(os.getpid())),
        ("X-Entered", repr(entered)),
        ("X-Left", repr(time.time())),
    ]
    start_response("200 OK", headers)
    return [b"ok"]
