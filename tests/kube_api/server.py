"""A small in-process Kubernetes API server for tests: the subset the controller uses.

It answers the official client with the real JSON shapes: apps/v1 deployments and statefulsets
(get, list, and the autoscaling/v1 `scale` subresource with optimistic concurrency),
autoscaling/v2 horizontalpodautoscalers (list), keda.sh/v1alpha1 scaledobjects (list; a 404
page when KEDA is "not installed"), core/v1 events (create, list) and coordination.k8s.io/v1
leases (get, create, replace). Tests seed and inspect its state directly and inject faults
(an HTTP status, a delay) per method and path.
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
import secrets
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.kube_api.objects import JsonObject, timestamp

# resource plural -> (API group, version, kind); the group is "" for the core API.
RESOURCES: dict[str, tuple[str, str, str]] = {
    "deployments": ("apps", "v1", "Deployment"),
    "statefulsets": ("apps", "v1", "StatefulSet"),
    "horizontalpodautoscalers": ("autoscaling", "v2", "HorizontalPodAutoscaler"),
    "scaledobjects": ("keda.sh", "v1alpha1", "ScaledObject"),
    "events": ("", "v1", "Event"),
    "leases": ("coordination.k8s.io", "v1", "Lease"),
}
_PLURAL_OF_KIND = {kind: plural for plural, (_, _, kind) in RESOURCES.items()}
# Custom resources keep kind and apiVersion on list items; built-in types do not.
_CUSTOM = {"scaledobjects"}

_STATUS_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}

_NAME = r"[a-z0-9](?:[-a-z0-9.]*[a-z0-9])?"
_NS = rf"(?P<namespace>{_NAME})"
_ITEM = rf"(?P<name>{_NAME})"
_ROUTES: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(rf"^/apis/apps/v1/namespaces/{_NS}/(?P<plural>deployments|statefulsets)$"),
        "collection",
    ),
    (
        re.compile(
            rf"^/apis/apps/v1/namespaces/{_NS}/(?P<plural>deployments|statefulsets)/{_ITEM}$"
        ),
        "item",
    ),
    (
        re.compile(
            rf"^/apis/apps/v1/namespaces/{_NS}/(?P<plural>deployments|statefulsets)/{_ITEM}/scale$"
        ),
        "scale",
    ),
    (
        re.compile(
            rf"^/apis/autoscaling/v2/namespaces/{_NS}/(?P<plural>horizontalpodautoscalers)$"
        ),
        "collection",
    ),
    (
        re.compile(rf"^/apis/keda.sh/v1alpha1/namespaces/{_NS}/(?P<plural>scaledobjects)$"),
        "collection",
    ),
    (re.compile(rf"^/api/v1/namespaces/{_NS}/(?P<plural>events)$"), "collection"),
    (
        re.compile(rf"^/apis/coordination.k8s.io/v1/namespaces/{_NS}/(?P<plural>leases)$"),
        "collection",
    ),
    (
        re.compile(rf"^/apis/coordination.k8s.io/v1/namespaces/{_NS}/(?P<plural>leases)/{_ITEM}$"),
        "item",
    ),
]


class ApiError(Exception):
    """Answered to the client as a metav1.Status."""

    def __init__(self, code: int, message: str, details: JsonObject | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}


def status_body(code: int, message: str, details: JsonObject | None = None) -> JsonObject:
    body: JsonObject = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": _STATUS_REASONS.get(code, "Unknown"),
        "code": code,
    }
    if details:
        body["details"] = details
    return body


@dataclass
class Fault:
    """Makes matching requests slow, failing, or both.

    `path` is a regular expression searched in the request path; `method` None matches any;
    `status` None only delays; `times` None applies forever, otherwise to that many requests.
    """

    path: str = ""
    method: str | None = None
    status: int | None = None
    delay: float = 0.0
    times: int | None = None
    message: str = ""

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.times <= 0:
            return False
        return (self.method is None or self.method == method) and re.search(
            self.path, path
        ) is not None


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any


class FakeKubeApi:
    """The server and its state. Use as a context manager, or call start() and stop()."""

    def __init__(
        self,
        *,
        token: str | None = None,
        keda_installed: bool = True,
        tls: tuple[str, str] | None = None,
    ) -> None:
        # A required bearer token, as the real API server's authentication would require one.
        self.token = token
        self.keda_installed = keda_installed
        self._tls = tls
        self._lock = threading.RLock()
        self._objects: dict[tuple[str, str, str], JsonObject] = {}
        self._resource_version = 1000
        self._faults: list[Fault] = []
        self._hooks: list[Callable[[str, str], None]] = []
        self.requests: list[RecordedRequest] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # Lifecycle -----------------------------------------------------------------------------

    def start(self) -> FakeKubeApi:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        server.daemon_threads = True
        server.block_on_close = False
        if self._tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self._tls)
            server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        # A short poll interval lets stop() return at once rather than after half a second.
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.02,), name="kube-api", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeKubeApi:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the test Kubernetes API is not started; call start() first")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    # State for tests -------------------------------------------------------------------------

    def add(self, obj: JsonObject) -> JsonObject:
        """Stores an object (see tests.kube_api.objects) and returns it as stored."""
        plural = _PLURAL_OF_KIND[obj["kind"]]
        with self._lock:
            stored = copy.deepcopy(obj)
            stored["metadata"]["resourceVersion"] = self._next_version()
            meta = stored["metadata"]
            self._objects[(plural, meta["namespace"], meta["name"])] = stored
            return copy.deepcopy(stored)

    def get(self, plural: str, namespace: str, name: str) -> JsonObject | None:
        with self._lock:
            found = self._objects.get((plural, namespace, name))
            return copy.deepcopy(found) if found is not None else None

    def list(self, plural: str, namespace: str) -> list[JsonObject]:
        with self._lock:
            return [
                copy.deepcopy(o)
                for (p, ns, _), o in self._objects.items()
                if (p, ns) == (plural, namespace)
            ]

    def delete(self, plural: str, namespace: str, name: str) -> None:
        with self._lock:
            self._objects.pop((plural, namespace, name), None)

    def replicas(self, plural: str, namespace: str, name: str) -> int:
        found = self.get(plural, namespace, name)
        if found is None:
            raise KeyError(f"{plural} {namespace}/{name} is not in the test Kubernetes API")
        return int(found["spec"]["replicas"])

    def set_replicas(self, plural: str, namespace: str, name: str, replicas: int) -> None:
        """Another writer scales the workload (bumps its resourceVersion)."""
        with self._lock:
            self._set_replicas(self._require(plural, namespace, name), replicas)

    def annotate(self, plural: str, namespace: str, name: str, key: str, value: str) -> None:
        """Another writer changes the object without changing its replicas."""
        with self._lock:
            obj = self._require(plural, namespace, name)
            obj["metadata"].setdefault("annotations", {})[key] = value
            obj["metadata"]["resourceVersion"] = self._next_version()

    def events(self, namespace: str) -> list[JsonObject]:
        return self.list("events", namespace)

    def inject(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def before_each_request(self, hook: Callable[[str, str], None]) -> None:
        """Calls hook(method, path) before every request is handled (to stage races)."""
        with self._lock:
            self._hooks.append(hook)

    def writes(self, path_pattern: str = "") -> list[RecordedRequest]:
        with self._lock:
            return [
                r
                for r in self.requests
                if r.method in ("POST", "PUT", "PATCH", "DELETE")
                and re.search(path_pattern, r.path)
            ]

    # Request handling ------------------------------------------------------------------------

    def _next_version(self) -> str:
        self._resource_version += 1
        return str(self._resource_version)

    def _require(self, plural: str, namespace: str, name: str) -> JsonObject:
        found = self._objects.get((plural, namespace, name))
        if found is None:
            group = RESOURCES[plural][0]
            qualified = f"{plural}.{group}" if group else plural
            raise ApiError(
                404,
                f'{qualified} "{name}" not found',
                {"name": name, "group": group, "kind": plural},
            )
        return found

    def _set_replicas(self, obj: JsonObject, replicas: int) -> None:
        obj["spec"]["replicas"] = replicas
        obj["metadata"]["generation"] = int(obj["metadata"].get("generation", 1)) + 1
        obj["metadata"]["resourceVersion"] = self._next_version()
        # The workload controller is instantaneous here: status follows spec at once.
        status = obj.setdefault("status", {})
        for field in ("replicas", "readyReplicas", "availableReplicas", "updatedReplicas"):
            status[field] = replicas
        status["observedGeneration"] = obj["metadata"]["generation"]

    def _fault_for(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    if fault.times is not None:
                        fault.times -= 1
                    return copy.copy(fault)
        return None

    def handle(
        self, method: str, path: str, query: dict[str, list[str]], body: Any
    ) -> tuple[int, Any]:
        with self._lock:
            self.requests.append(RecordedRequest(method, path, query, body))
            hooks = list(self._hooks)
        for hook in hooks:
            hook(method, path)
        fault = self._fault_for(method, path)
        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            if fault.status is not None:
                message = fault.message or f"injected {fault.status} for {method} {path}"
                return fault.status, status_body(fault.status, message)
        for pattern, shape in _ROUTES:
            match = pattern.match(path)
            if match is None:
                continue
            with self._lock:
                return self._route(method, shape, match.groupdict(), body)
        return 404, status_body(404, "the server could not find the requested resource")

    def _route(self, method: str, shape: str, where: dict[str, str], body: Any) -> tuple[int, Any]:
        namespace, plural, name = where["namespace"], where["plural"], where.get("name", "")
        if plural == "scaledobjects" and not self.keda_installed:
            # An API group that is not served answers with the mux's plain 404 page.
            return 404, "404 page not found\n"
        if shape == "collection" and method == "GET":
            return 200, self._list_body(plural, namespace)
        if shape == "collection" and method == "POST":
            return self._create(plural, namespace, body)
        if shape == "item" and method == "GET":
            return 200, copy.deepcopy(self._require(plural, namespace, name))
        if shape == "item" and method == "PUT":
            return self._replace(plural, namespace, name, body)
        if shape == "scale" and method == "GET":
            return 200, self._scale_of(plural, self._require(plural, namespace, name))
        if shape == "scale" and method == "PUT":
            return self._replace_scale(plural, namespace, name, body)
        return 405, status_body(405, f"the server does not allow this method on {plural}")

    def _list_body(self, plural: str, namespace: str) -> JsonObject:
        group, version, kind = RESOURCES[plural]
        items = []
        for obj in self.list(plural, namespace):
            if plural not in _CUSTOM:
                obj.pop("kind", None)
                obj.pop("apiVersion", None)
            items.append(obj)
        return {
            "kind": f"{kind}List",
            "apiVersion": f"{group}/{version}" if group else version,
            "metadata": {"resourceVersion": str(self._resource_version)},
            "items": items,
        }

    def _check_body(self, plural: str, namespace: str, body: Any) -> JsonObject:
        kind = RESOURCES[plural][2]
        if not isinstance(body, dict) or not isinstance(body.get("metadata"), dict):
            raise ApiError(400, f"the request body is not a {kind} object")
        if body.get("kind", kind) != kind:
            raise ApiError(400, f"expected kind {kind}, got {body.get('kind')!r}")
        body_namespace = body["metadata"].get("namespace", namespace)
        if body_namespace != namespace:
            raise ApiError(
                400,
                "the namespace of the provided object does not match the namespace sent on the request",
            )
        return body

    def _create(self, plural: str, namespace: str, body: Any) -> tuple[int, Any]:
        obj = copy.deepcopy(self._check_body(plural, namespace, body))
        meta = obj["metadata"]
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise ApiError(422, f"{RESOURCES[plural][2]}: metadata.name: Required value")
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        if plural == "events":
            self._check_event(obj, namespace)
        if (plural, namespace, meta["name"]) in self._objects:
            group = RESOURCES[plural][0]
            qualified = f"{plural}.{group}" if group else plural
            return 409, status_body(409, f'{qualified} "{meta["name"]}" already exists') | {
                "reason": "AlreadyExists"
            }
        group, version, kind = RESOURCES[plural]
        obj["kind"] = kind
        obj["apiVersion"] = f"{group}/{version}" if group else version
        meta.update(
            namespace=namespace,
            uid=str(uuid.uuid4()),
            creationTimestamp=timestamp(),
            resourceVersion=self._next_version(),
        )
        self._objects[(plural, namespace, meta["name"])] = obj
        return 201, copy.deepcopy(obj)

    @staticmethod
    def _check_event(event: JsonObject, namespace: str) -> None:
        """The API server's legacy checks for a core/v1 Event about a namespaced object."""
        involved = event.get("involvedObject")
        if not isinstance(involved, dict) or not involved.get("name"):
            raise ApiError(422, "Event is invalid: involvedObject.name: Required value")
        if involved.get("namespace") != namespace:
            raise ApiError(
                422,
                f"Event is invalid: involvedObject.namespace: Invalid value: "
                f"{involved.get('namespace')!r}: does not match event.namespace",
            )
        for field in ("reason", "action", "reportingInstance"):
            if len(str(event.get(field) or "")) > 128:
                raise ApiError(422, f"Event is invalid: {field}: Too long: must be at most 128")

    def _conflict(self, plural: str, name: str) -> ApiError:
        group = RESOURCES[plural][0]
        return ApiError(
            409,
            f'Operation cannot be fulfilled on {plural}.{group} "{name}": the object has been '
            "modified; please apply your changes to the latest version and try again",
            {"name": name, "group": group, "kind": plural},
        )

    def _replace(self, plural: str, namespace: str, name: str, body: Any) -> tuple[int, Any]:
        current = self._require(plural, namespace, name)
        obj = copy.deepcopy(self._check_body(plural, namespace, body))
        sent_version = obj["metadata"].get("resourceVersion")
        # An update without a resourceVersion is unconditional, as the API server allows.
        if sent_version and sent_version != current["metadata"]["resourceVersion"]:
            raise self._conflict(plural, name)
        if obj["metadata"].get("name", name) != name:
            raise ApiError(400, "the name of the object does not match the name on the URL")
        for kept in ("uid", "creationTimestamp", "name", "namespace"):
            obj["metadata"][kept] = current["metadata"][kept]
        obj["metadata"]["resourceVersion"] = self._next_version()
        obj["kind"], obj["apiVersion"] = current["kind"], current["apiVersion"]
        self._objects[(plural, namespace, name)] = obj
        return 200, copy.deepcopy(obj)

    def _scale_of(self, plural: str, obj: JsonObject) -> JsonObject:
        meta = obj["metadata"]
        selector = ",".join(
            f"{k}={v}" for k, v in sorted(obj["spec"]["selector"]["matchLabels"].items())
        )
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
                "resourceVersion": meta["resourceVersion"],
                "creationTimestamp": meta["creationTimestamp"],
            },
            "spec": {"replicas": obj["spec"]["replicas"]},
            "status": {"replicas": obj.get("status", {}).get("replicas", 0), "selector": selector},
        }

    def _replace_scale(self, plural: str, namespace: str, name: str, body: Any) -> tuple[int, Any]:
        current = self._require(plural, namespace, name)
        if not isinstance(body, dict) or body.get("kind", "Scale") != "Scale":
            raise ApiError(400, "the request body is not an autoscaling/v1 Scale")
        replicas = body.get("spec", {}).get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise ApiError(
                422,
                f'Scale.autoscaling "{name}" is invalid: spec.replicas: Invalid value: '
                f"{replicas!r}: must be greater than or equal to 0",
            )
        sent_version = body.get("metadata", {}).get("resourceVersion")
        if sent_version and sent_version != current["metadata"]["resourceVersion"]:
            raise self._conflict(plural, name)
        if replicas != current["spec"]["replicas"]:
            self._set_replicas(current, replicas)
        return 200, self._scale_of(plural, current)


def _handler_for(api: FakeKubeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # Headers and body go out in separate writes; without this, Nagle's algorithm and
            # the client's delayed ACK add tens of milliseconds to every answer.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the tests read `api.requests` instead."""

        def _respond(self, code: int, payload: Any) -> None:
            if isinstance(payload, str):
                data, content_type = payload.encode(), "text/plain; charset=utf-8"
            else:
                data, content_type = json.dumps(payload).encode(), "application/json"
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            # The client may have given up (its timeout fired); nothing is left to answer then.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(data)

        def _serve(self, method: str) -> None:
            split = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            scheme, _, credential = (self.headers.get("Authorization") or "").partition(" ")
            # The scheme is case-insensitive (the in-cluster loader sends "bearer").
            if api.token is not None and (scheme.lower(), credential) != ("bearer", api.token):
                self._respond(401, status_body(401, "Unauthorized"))
                return
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                self._respond(400, status_body(400, "the request body is not valid JSON"))
                return
            try:
                code, payload = api.handle(method, split.path, parse_qs(split.query), body)
            except ApiError as error:
                code, payload = error.code, status_body(error.code, error.message, error.details)
            self._respond(code, payload)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_PUT(self) -> None:
            self._serve("PUT")

        def do_PATCH(self) -> None:
            self._serve("PATCH")

        def do_DELETE(self) -> None:
            self._serve("DELETE")

    return Handler
