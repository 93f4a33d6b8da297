"""One GET of Prometheus's query API, read within a size cap and a deadline for the whole answer.

Prometheus sends large answers chunked, without a Content-Length, so a size cap checked only
against the declared length guards nothing; and a per-read timeout lets a server that trickles
its answer hold a query for ever. Hence the body is streamed: the bytes are counted as they
arrive (after decompression, which is what takes memory) and the read stops past the cap; each
read waits no longer than what is left of the deadline, which starts when the query is sent.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Mapping
from typing import Any

import requests
from urllib3.exceptions import DecodeError, ProtocolError, ReadTimeoutError
from urllib3.util import Timeout

# Large enough to keep the per-read overhead small, small enough that one read past the cap
# costs little.
_READ_BYTES = 64 * 1024


class AnswerTooLarge(Exception):
    """The answer declared, or turned out to have, more bytes than the cap."""


class AnswerTooSlow(Exception):
    """The whole answer did not arrive before the deadline."""


class AnswerNotJson(Exception):
    """An HTTP 200 answer whose body is not JSON; `body` holds (the start of) it."""

    def __init__(self, body: bytes) -> None:
        super().__init__("the body is not JSON")
        self.body = body


class AnswerStatus(Exception):
    """An answer other than HTTP 200, with its status and body."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body


def get_result(
    session: requests.Session,
    url: str,
    params: Mapping[str, str],
    *,
    headers: Mapping[str, str],
    auth: tuple[str, str] | None,
    timeout_seconds: float,
    max_bytes: int,
) -> Any:
    """`data.result` of the JSON answer at `url`.

    Raises AnswerTooLarge, AnswerTooSlow, AnswerNotJson or AnswerStatus, requests' own errors
    for a connection that fails, and KeyError or TypeError for JSON without `data.result`.
    """
    deadline = time.monotonic() + timeout_seconds
    # `total` makes connecting and waiting for the headers share one budget.
    with session.get(
        url,
        params=dict(params),
        headers=dict(headers),
        auth=auth,
        # Given per request, as a session's own setting yields to REQUESTS_CA_BUNDLE.
        verify=session.verify,
        stream=True,
        # requests hands a urllib3 Timeout on as it is, though its annotation omits it.
        timeout=Timeout(total=timeout_seconds),  # type: ignore[arg-type]
    ) as response:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise AnswerTooLarge
        body = _read_capped(response, deadline, max_bytes)
    if response.status_code != 200:
        raise AnswerStatus(response.status_code, body)
    try:
        document = json.loads(body)
    except ValueError:
        raise AnswerNotJson(body[:1000]) from None
    return document["data"]["result"]


def _read_capped(response: requests.Response, deadline: float, max_bytes: int) -> bytes:
    raw = response.raw
    connection_socket = _socket_of(response)
    chunks: list[bytes] = []
    total = 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AnswerTooSlow
        if connection_socket is not None:
            connection_socket.settimeout(left)
        try:
            # read1 returns what has arrived, so a trickle cannot hold one read for long.
            chunk = raw.read1(_READ_BYTES, decode_content=True)
        except (TimeoutError, ReadTimeoutError):
            raise AnswerTooSlow from None
        # As requests itself reports them when it reads a body.
        except ProtocolError as error:
            raise requests.exceptions.ChunkedEncodingError(error) from error
        except DecodeError as error:
            raise requests.exceptions.ContentDecodingError(error) from error
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > max_bytes:
            raise AnswerTooLarge
        chunks.append(chunk)


def _socket_of(response: requests.Response) -> socket.socket | None:
    """The connection's socket, so that each read can be given what is left of the deadline."""
    connection = getattr(response.raw, "connection", None)
    sock = getattr(connection, "sock", None)
    return sock if isinstance(sock, socket.socket) else None
