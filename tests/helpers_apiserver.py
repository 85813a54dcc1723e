"""A local stand-in for the Kubernetes API server, for the NodeResourceTopology resource (and
a read-only pod list).

It answers as the API server does for a cluster-scoped custom resource: POST creates (409
AlreadyExists if the name is taken), PUT replaces only when ``metadata.resourceVersion`` is the
stored one (409 Conflict otherwise, 404 if absent), GET reads. Like the real one it refuses
(422 Invalid) an object that does not validate against the openAPIV3Schema of its version in
``deploy/crd.yaml``, whose apiVersion or kind is not the URL's, or whose name is not a DNS
subdomain; it serves every version the CRD serves. ``GET /api/v1/pods`` lists ``pods``,
honouring a ``spec.nodeName`` field selector. Every request is recorded so a test can assert
the exact sequence. ``fail_next`` scripts an error answer for the next request of a method.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonschema
import yaml

GROUP = "topology.node.k8s.io"
PREFIX = f"/apis/{GROUP}/v1alpha2/noderesourcetopologies"
CRD = Path(__file__).resolve().parent.parent / "deploy" / "crd.yaml"
_ROUTE = re.compile(
    rf"^/apis/{re.escape(GROUP)}/(?P<version>[^/]+)/noderesourcetopologies/?(?P<name>[^/?]*)"
)
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


@functools.cache
def schemas() -> dict[str, Any]:
    """The openAPIV3Schema of every served version of the CRD, as validators."""
    crd = yaml.safe_load(CRD.read_text())
    out = {}
    for v in crd["spec"]["versions"]:
        if v["served"]:
            schema = v["schema"]["openAPIV3Schema"]
            cls = jsonschema.validators.validator_for(schema)
            cls.check_schema(schema)
            out[v["name"]] = cls(schema)
    return out


def invalid(version: str, obj: Any) -> str | None:
    """Why the API server would refuse ``obj`` for ``version``, or None."""
    if not isinstance(obj, dict):
        return "the body is not an object"
    if obj.get("apiVersion") != f"{GROUP}/{version}" or obj.get("kind") != "NodeResourceTopology":
        return f"apiVersion/kind {obj.get('apiVersion')}/{obj.get('kind')} is not this resource's"
    name = (obj.get("metadata") or {}).get("name")
    if not isinstance(name, str) or len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name):
        return (
            f"metadata.name: Invalid value: {name!r}: a lowercase RFC 1123 subdomain must "
            "consist of lower case alphanumeric characters, '-' or '.'"
        )
    errors = sorted(schemas()[version].iter_errors(obj), key=lambda e: list(e.path))
    if errors:
        e = errors[0]
        where = ".".join(str(p) for p in e.path) or "<root>"
        return f"{where}: Invalid value: {e.message}"
    return None


@dataclass
class Request:
    method: str
    path: str
    body: dict[str, Any] | None
    status: int = 0

    @property
    def resource_version(self) -> str | None:
        version: str | None = (self.body or {}).get("metadata", {}).get("resourceVersion")
        return version


@dataclass
class FakeApiServer:
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    pods: list[dict[str, Any]] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    fail_next: dict[str, int] = field(default_factory=dict)
    _versions: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> FakeApiServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                request = Request(self.command, self.path, body)
                with server._lock:
                    server.requests.append(request)
                    status, answer = server._serve(request)
                    request.status = status
                self._answer(status, answer)

            do_GET = do_POST = do_PUT = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def kubeconfig(self, directory: Path) -> Path:
        path = directory / "kubeconfig"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {"token": "not-checked"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "tester"}}],
            "current-context": "fake",
        }
        path.write_text(json.dumps(config))
        return path

    def touch(self, name: str) -> None:
        """Another writer updates the object: its resourceVersion moves on."""
        with self._lock:
            self.objects[name]["metadata"]["resourceVersion"] = str(next(self._versions))

    def calls(self) -> list[tuple[str, str | None, int]]:
        """(method, resourceVersion sent, status answered) for each NodeResourceTopology
        request."""
        return [
            (r.method, r.resource_version, r.status)
            for r in self.requests
            if r.path.startswith(f"/apis/{GROUP}/")
        ]

    def pod_listings(self) -> list[str]:
        """The query of each pod list request."""
        return [urlsplit(r.path).query for r in self.requests if r.path.startswith("/api/v1/")]

    # -- the API server's rules -------------------------------------------------------

    def _status(self, code: int, reason: str, message: str) -> tuple[int, dict[str, Any]]:
        return code, {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code,
        }

    def _serve(self, r: Request) -> tuple[int, dict[str, Any]]:
        if self.fail_next.get(r.method):
            code = self.fail_next.pop(r.method)
            return self._status(code, "Forbidden" if code == 403 else "InternalError", "scripted")
        url = urlsplit(r.path)
        if url.path == "/api/v1/pods" and r.method == "GET":
            return 200, self._pod_list(parse_qs(url.query))
        route = _ROUTE.match(url.path)
        if route is None or route["version"] not in schemas():
            return self._status(404, "NotFound", f"no route {r.path}")
        version, name = route["version"], route["name"]
        if r.method in ("POST", "PUT"):
            problem = invalid(version, r.body)
            if problem is not None:
                return self._status(
                    422, "Invalid", f'NodeResourceTopology "{name}" is invalid: {problem}'
                )
        if r.method == "POST":
            assert r.body is not None
            name = r.body["metadata"]["name"]
            if name in self.objects:
                return self._status(409, "AlreadyExists", f'"{name}" already exists')
            return 201, self._store(name, r.body)
        if name not in self.objects:
            return self._status(404, "NotFound", f'"{name}" not found')
        if r.method == "GET":
            return 200, self.objects[name]
        assert r.body is not None
        if (
            r.body["metadata"].get("resourceVersion")
            != self.objects[name]["metadata"]["resourceVersion"]
        ):
            return self._status(
                409, "Conflict", "the object has been modified; please apply your changes"
            )
        return 200, self._store(name, r.body)

    def _pod_list(self, query: dict[str, list[str]]) -> dict[str, Any]:
        items = self.pods
        for selector in query.get("fieldSelector", []):
            key, _, value = selector.partition("=")
            assert key == "spec.nodeName", selector
            items = [p for p in items if p.get("spec", {}).get("nodeName") == value]
        return {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}

    def _store(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        obj: dict[str, Any] = json.loads(json.dumps(body))
        meta = obj["metadata"]
        meta["resourceVersion"] = str(next(self._versions))
        meta.setdefault("uid", f"uid-{name}")
        self.objects[name] = obj
        return obj
