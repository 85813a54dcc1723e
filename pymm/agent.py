"""``pymm agent``: one long-running process owns a state directory and serves HTTP/JSON on a
unix socket, so programs in any language (a Go NRI plugin, a Slurm prolog, ``curl
--unix-socket``) can use pymm without embedding Python.

Guarantees, and how they are kept:

* **Serialised.** Every call that touches the manager runs on one dedicated worker thread, in
  arrival order; the event loop only parses and answers.
* **Durable before the answer.** ``MemoryManager`` writes the state file (fsync, rename, fsync
  of the directory) before ``admit``/``remove`` return, and the answer is sent after that.
* **A disconnect loses nothing.** The manager call is shielded from the request's
  cancellation: once queued it completes. A client that retries an admission with the same pod
  uid gets ``alreadyAdmitted: true`` and the placement it was given; a rejected admission
  reserved nothing, so its retry is simply a new attempt.
* **Graceful stop.** On SIGTERM or SIGINT the listeners close, in-flight requests finish, the
  worker drains, the state-directory lock is released and the socket and ready file removed.

The endpoints are described in ``deploy/agent-api.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import signal
import socket
import stat
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from pymm._text import json_loads

# The CLI's rendering of an admission, so the agent answers exactly as `pymm admit --json`.
from pymm.commands._output import admission_json as _admission_json
from pymm.errors import ConfigError, NotFoundError, PymmError, StateFileError
from pymm.manager import MemoryManager, compile_pod
from pymm.pod import Pod, load_pods

__all__ = ["Agent", "claim_socket"]

log = logging.getLogger("pymm.agent")

T = TypeVar("T")

#: Pod manifests larger than this are refused (413) before they are parsed.
MAX_BODY_BYTES = 4 << 20


class _BadRequest(Exception):
    pass


class Agent:
    """Serves one :class:`MemoryManager` (which must keep a ``state_dir``)."""

    def __init__(
        self,
        manager: MemoryManager,
        *,
        node_name: str | None = None,
        registry: Any = None,
    ) -> None:
        if manager.state_path is None:
            raise ConfigError("the agent needs a manager with a state directory")
        self.manager = manager
        self.node_name = node_name
        self.registry = registry
        # One worker: the manager's calls are serialised in arrival order.
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pymm-manager")
        self._admitted: set[str] = set(manager.state.get("entries", {})) | set(manager.active_pods)
        self._runners: list[web.AppRunner] = []
        self._socket: Path | None = None
        self._ready: Path | None = None
        self._serving = False

    # -- the manager, on its worker thread ------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        future = asyncio.get_running_loop().run_in_executor(self._worker, fn, *args)
        # A client that goes away cancels its handler, never the manager call already queued.
        return await asyncio.shield(future)

    def _admit(self, pod: Pod) -> dict[str, Any]:
        compiled = compile_pod(pod)
        began = time.perf_counter()
        if compiled.uid in self._admitted:
            out = self._existing(compiled.uid, compiled.container_names)
            log.info("already admitted", extra={"podUID": compiled.uid})
            return out
        a = self.manager.admit(compiled)
        if a.admitted:
            self._admitted.add(a.pod_uid)
        # The JSON of `pymm admit --json`, plus whether this answer repeats an earlier one.
        out = {**_admission_json(a), "alreadyAdmitted": False}
        log.info(
            "admitted" if a.admitted else "rejected",
            extra={
                "podUID": a.pod_uid,
                "reason": a.reason,
                "numaNodes": {c: v["numaNodes"] for c, v in out["containers"].items()},
                "ms": round((time.perf_counter() - began) * 1e3, 3),
            },
        )
        return out

    def _existing(self, uid: str, containers: list[str]) -> dict[str, Any]:
        entries = self.manager.state.get("entries", {}).get(uid, {})
        placed = {}
        for name in containers:
            nodes = self.manager.numa_nodes(uid, name)
            placed[name] = {
                "numaNodes": list(nodes) if nodes else None,
                "cpusetMems": ",".join(map(str, nodes)) if nodes else None,
                "blocks": entries.get(name, []),
            }
        return {
            "podUID": uid,
            "admit": True,
            "reason": None,
            "message": "already admitted",
            "containers": placed,
            "alreadyAdmitted": True,
        }

    def _remove(self, uid: str, container: str | None) -> dict[str, Any]:
        # Removal is idempotent for clients that retry: an unknown pod is an answer, not an
        # error ("removed": false).
        try:
            self.manager.remove(uid, container)
            known = True
        except NotFoundError:
            known = False
        if container is None:
            self._admitted.discard(uid)
        log.info("removed", extra={"podUID": uid, "container": container, "known": known})
        return {"podUID": uid, "container": container, "removed": known}

    def _hints(self, pod: Pod) -> dict[str, Any]:
        if self.manager.config["scope"] == "pod":
            return {"": self.manager.hints(pod)}
        names = [c.name for c in (*pod.init_containers, *pod.containers)]
        return {c: self.manager.hints(pod, c) for c in names}

    def _metrics_text(self) -> bytes:
        from prometheus_client import generate_latest

        return bytes(generate_latest(self.registry))

    # -- HTTP -----------------------------------------------------------------------------

    def application(self) -> web.Application:
        app = web.Application(
            client_max_size=MAX_BODY_BYTES, middlewares=[self._error_middleware()]
        )
        app.add_routes(
            [
                web.post("/v1/admit", self._h_admit),
                web.post("/v1/remove", self._h_remove),
                web.get("/v1/state", self._h_state),
                web.post("/v1/hints", self._h_hints),
                web.get("/v1/nrt", self._h_nrt),
                web.get("/metrics", self._h_metrics),
                web.get("/healthz", self._h_healthz),
            ]
        )
        return app

    def metrics_application(self) -> web.Application:
        """The TCP listener's app: metrics and health only, never the manager's mutations."""
        app = web.Application()
        app.add_routes([web.get("/metrics", self._h_metrics), web.get("/healthz", self._h_healthz)])
        return app

    @staticmethod
    def _json(body: Any, status: int = 200) -> web.Response:
        return web.json_response(body, status=status, dumps=json.dumps)

    def _error_middleware(self) -> Any:
        @web.middleware
        async def errors(
            request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
        ) -> web.StreamResponse:
            try:
                return await handler(request)
            except StateFileError as e:
                # The node's disk, not the request: the state write failed (and was undone in
                # memory, or, for StateNotDurableError, is in the file but not yet fsynced).
                # The same request can succeed once the disk recovers, so 503 and retry.
                log.error("state write failed", extra={"error": str(e), "path": request.path})
                response = self._json(
                    {"error": str(e).splitlines()[0], "retryable": True, "kind": type(e).__name__},
                    503,
                )
                response.headers["Retry-After"] = "1"
                return response
            except (_BadRequest, PymmError, ValueError) as e:
                # Bad input (a malformed manifest, quantity or body): the client's to fix.
                message = str(e).splitlines()[0] if str(e) else "bad request"
                return self._json({"error": message}, 400)

        return errors

    async def _pod(self, request: web.Request) -> Pod:
        text = await request.text()
        pods = load_pods(text)
        if len(pods) != 1:
            raise _BadRequest(f"expected one Pod manifest, got {len(pods)}")
        # As the API server would have defaulted it: requests default to limits.
        return pods[0].with_defaults()

    async def _h_admit(self, request: web.Request) -> web.Response:
        pod = await self._pod(request)
        return self._json(await self._call(self._admit, pod))

    async def _h_remove(self, request: web.Request) -> web.Response:
        try:
            body = json_loads(await request.text())
        except json.JSONDecodeError as e:
            raise _BadRequest(f"body is not JSON: {e}") from None
        if not isinstance(body, dict) or not isinstance(body.get("podUID"), str):
            raise _BadRequest('expected {"podUID": "...", "container": "..." (optional)}')
        container = body.get("container")
        if container is not None and not isinstance(container, str):
            raise _BadRequest("container must be a string")
        return self._json(await self._call(self._remove, body["podUID"], container))

    async def _h_state(self, _request: web.Request) -> web.Response:
        return self._json(await self._call(lambda: self.manager.state))

    async def _h_hints(self, request: web.Request) -> web.Response:
        pod = await self._pod(request)
        return self._json({pod.uid: await self._call(self._hints, pod)})

    async def _h_nrt(self, request: web.Request) -> web.Response:
        name = request.query.get("nodeName") or self.node_name
        return self._json(await self._call(self.manager.nrt, name))

    async def _h_metrics(self, _request: web.Request) -> web.Response:
        if self.registry is None:
            return self._json({"error": "metrics are off"}, 404)
        from prometheus_client import CONTENT_TYPE_LATEST

        body = await self._call(self._metrics_text)
        response = web.Response(body=body)
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    async def _h_healthz(self, _request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    # -- lifecycle ------------------------------------------------------------------------

    async def start(
        self,
        socket_path: Path,
        *,
        metrics_port: int | None = None,
        metrics_address: str = "127.0.0.1",
        ready_file: Path | None = None,
    ) -> dict[str, Any]:
        """Listens on ``socket_path`` (mode 0600) and, with ``metrics_port``, on TCP for
        metrics; then writes ``ready_file``. Returns what the ready file says."""
        if ready_file is not None:
            # A ready file left by a killed agent must not announce this one early.
            with contextlib.suppress(FileNotFoundError):
                ready_file.unlink()
        claim_socket(socket_path)
        runner = web.AppRunner(self.application(), access_log=None, shutdown_timeout=30.0)
        await runner.setup()
        self._runners.append(runner)
        # The socket is created 0600 (no window where others could connect), then checked.
        old = os.umask(0o177)
        try:
            await web.UnixSite(runner, str(socket_path)).start()
        finally:
            os.umask(old)
        os.chmod(socket_path, 0o600)
        self._socket = socket_path
        info: dict[str, Any] = {"pid": os.getpid(), "socket": str(socket_path)}
        if metrics_port is not None:
            metrics_runner = web.AppRunner(self.metrics_application(), access_log=None)
            await metrics_runner.setup()
            self._runners.append(metrics_runner)
            site = web.TCPSite(metrics_runner, metrics_address, metrics_port)
            await site.start()
            server = getattr(site, "_server", None)
            sockets = getattr(server, "sockets", None) or []
            info["metricsPort"] = sockets[0].getsockname()[1] if sockets else metrics_port
        if ready_file is not None:
            tmp = ready_file.with_name(ready_file.name + ".tmp")
            tmp.write_text(json.dumps(info) + "\n")
            os.replace(tmp, ready_file)
            self._ready = ready_file
        self._serving = True
        log.info("ready", extra=info)
        return info

    async def stop(self) -> None:
        """Stops listening, lets in-flight requests finish, drains the worker, releases the
        state-directory lock and removes the socket and ready file."""
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
        await asyncio.get_running_loop().run_in_executor(None, self._worker.shutdown, True)
        self.manager.close()
        for path in (self._socket, self._ready):
            if path is not None:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        if self._serving:
            # A start that failed says why in the command's one error line, not here.
            log.info("stopped")
            self._serving = False

    async def serve(self, socket_path: Path, **options: Any) -> None:
        """Runs until SIGTERM or SIGINT."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _on_signal, stop, sig)
        try:
            await self.start(socket_path, **options)
            await stop.wait()
        finally:
            await self.stop()


def _on_signal(stop: asyncio.Event, sig: signal.Signals) -> None:
    log.info("stopping", extra={"signal": sig.name})
    stop.set()


def claim_socket(path: Path) -> None:
    """Removes a socket left by a dead agent; refuses one a live process still serves."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ConfigError(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError as e:
        if e.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise
        path.unlink()  # nobody listens: a crashed agent's leftover
        return
    finally:
        probe.close()
    raise ConfigError(f"another process is serving on {path}")
