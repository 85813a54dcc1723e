"""``pymm agent``: one long-running process owns a state directory and serves HTTP/JSON on a
unix socket, so programs in any language (a Go NRI plugin, a Slurm prolog, ``curl
--unix-socket``) can use pymm without embedding Python.

Guarantees, and how they are kept:

* **Serialised.** Every call that touches the manager runs on one dedicated worker thread, in
  arrival order; the event loop only parses and answers.
* **Group commit, durable before the answer.** Admissions and removals that arrive while the
  state file is being written wait together; the worker applies them in arrival order, each all
  or nothing, and makes the whole group durable with one write (fsync, rename, fsync of the
  directory) (:meth:`~pymm.manager.MemoryManager.durably_together`). Each is answered only
  after that write; if it fails, none of the group happened and each is answered 503.
* **A disconnect loses nothing.** The manager call is shielded from the request's
  cancellation: once queued it completes. A client that retries an admission with the same pod
  uid gets ``alreadyAdmitted: true`` and the placement it was given; a rejected admission
  reserved nothing, so its retry is simply a new attempt.
* **Graceful stop.** On SIGTERM or SIGINT the listeners close, in-flight requests finish (within
  :data:`SHUTDOWN_SECONDS`), the worker drains, the state-directory lock is released and the
  socket and ready file removed.
* **Bounded connections.** A request body must be ``application/json`` (415 otherwise); a
  connection idle or stuck in its headers for :data:`IDLE_SECONDS`, or in its body for
  :data:`BODY_SECONDS`, is closed. A client that goes away is a warning in the log.
* **The pods' names survive a restart.** The state file holds pod uids only; the namespace and
  name that the NRT's pod set fingerprint needs are kept beside it in
  :data:`IDENTITIES_FILE`, a journal appended to (not fsynced) after each group that changes
  them and compacted at start-up. Losing its tail is safe: a uid ↦ name pair never changes, and
  the fingerprint is set only when every pod the state holds has a known name.

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
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TextIO, TypeVar

import aiohttp
from aiohttp import web

from pymm import _engine
from pymm._text import json_loads
from pymm.errors import (
    ConfigError,
    PymmError,
    StateFileError,
    StateNotDurableError,
)
from pymm.manager import MemoryManager, compile_pod
from pymm.metrics import exposition
from pymm.nrt import PodRef, check_node_name, default_node_name, node_resource_topology

# The rendering `pymm admit --json` uses too, so the agent answers exactly as the CLI prints.
from pymm.render import admission_json as _admission_json

__all__ = ["Agent", "claim_socket"]

log = logging.getLogger("pymm.agent")

T = TypeVar("T")

#: Pod manifests larger than this are refused (413) before they are parsed.
MAX_BODY_BYTES = 4 << 20
#: A connection that sends no complete request header for this long is closed (idle
#: keep-alive connections too).
IDLE_SECONDS = 10.0
#: A request whose body has not fully arrived after this long is answered 408 and closed.
BODY_SECONDS = 10.0
#: On SIGTERM, requests still running after this long are cancelled (their manager call, once
#: queued, still completes; it is the answer that is lost).
SHUTDOWN_SECONDS = 1.5
#: How long an answer given before the whole body arrived waits for the rest of it.
LINGER_SECONDS = 0.5
#: The longest a group waits for the clients still to come back (see Agent._gather).
GATHER_MAX_SECONDS = 0.010
#: The most changes one durable write carries (a bound on a group's latency, not a limit on
#: clients: the rest form the next group).
MAX_GROUP = 1024
#: Namespace and name of the pods the agent admitted, by uid, in the state directory.
IDENTITIES_FILE = "pod_identities.jsonl"


class _BadRequest(Exception):
    pass


class _Unsupported(Exception):
    pass


class _Mutation:
    """One queued change: the call to make and the future its request awaits."""

    __slots__ = ("call", "future")

    def __init__(self, call: Callable[[], Any], future: asyncio.Future[Any]) -> None:
        self.call = call
        self.future = future


class Agent:
    """Serves one :class:`MemoryManager` (which must keep a ``state_dir``)."""

    def __init__(
        self,
        manager: MemoryManager,
        *,
        node_name: str | None = None,
        registry: Any = None,
        idle_timeout: float = IDLE_SECONDS,
        body_timeout: float = BODY_SECONDS,
    ) -> None:
        if manager.state_path is None:
            raise ConfigError("the agent needs a manager with a state directory")
        self.manager = manager
        self.node_name = check_node_name(node_name) if node_name is not None else None
        self.registry = registry
        self.idle_timeout = idle_timeout
        self.body_timeout = body_timeout
        # One worker: the manager's calls are serialised in arrival order.
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pymm-manager")
        self._admitted: set[str] = set(manager.state.get("entries", {})) | set(manager.active_pods)
        # Namespace and name of the pods admitted here (the manifests say; the state does not).
        self._names = _NameJournal(Path(manager.state_path).parent / IDENTITIES_FILE)
        self._identities = self._names.open(self._admitted)
        # What this group changed in `_identities`, for the journal once the group is durable.
        self._renamed: list[tuple[str, PodRef | None]] = []
        self._runners: list[web.AppRunner] = []
        self._socket: Path | None = None
        self._ready: Path | None = None
        self._serving = False
        self._pending: list[_Mutation] = []
        self._wake: asyncio.Event | None = None
        self._committer: asyncio.Task[None] | None = None
        self._last_write = 0.0

    # -- the manager, on its worker thread ------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """A read of the manager, on its worker thread (after any group being applied)."""
        future = asyncio.get_running_loop().run_in_executor(self._worker, fn, *args)
        # A client that goes away cancels its handler, never the manager call already queued.
        return await asyncio.shield(future)

    async def _mutate(self, fn: Callable[..., T], *args: Any) -> T:
        """A change of the manager: queued for the next group, answered after its write."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        # A client that went away never reads its outcome: say so, not "never retrieved".
        future.add_done_callback(_consume)
        self._pending.append(_Mutation(lambda: fn(*args), future))
        if self._committer is None:
            # Without start() (an aiohttp test server): the first change starts the loop.
            self._committer = loop.create_task(self._commit_loop())
        self._wakeup()
        return await asyncio.shield(future)

    def _wakeup(self) -> None:
        if self._wake is None:
            self._wake = asyncio.Event()
        self._wake.set()

    async def _commit_loop(self) -> None:
        """Applies what is queued as one group, answers each, and waits for the next."""
        loop = asyncio.get_running_loop()
        if self._wake is None:
            self._wake = asyncio.Event()
        # How many requests the clients keep in flight: the last group and what queued while
        # it was being written (their senders all come back for the next group).
        expected = 1
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                await self._gather(expected)
                group, self._pending = self._pending[:MAX_GROUP], self._pending[MAX_GROUP:]
                try:
                    results = await loop.run_in_executor(self._worker, self._apply, group)
                    expected = min(len(group) + len(self._pending), MAX_GROUP)
                except BaseException as e:  # the write failed: none of the group happened
                    for m in group:
                        if not m.future.done():
                            m.future.set_exception(e)
                    if not isinstance(e, Exception):
                        raise
                    continue
                for m, result in zip(group, results, strict=True):
                    if m.future.done():
                        continue
                    if isinstance(result, Exception):
                        m.future.set_exception(result)
                    else:
                        m.future.set_result(result)

    async def _gather(self, expected: int) -> None:
        """Lets the group grow to ``expected`` requests: the last group and what queued while
        it was being written, whose clients all come back once answered.

        They send their next requests a moment after the write ends, one after another as
        the event loop answers them and reads the new ones. A write started at once would
        carry the first of them and make the others wait a whole write more, so the group
        waits for them, at most as long as the last write took (and never more than
        :data:`GATHER_MAX_SECONDS`): waiting costs at most one write, splitting costs one.
        A lone client (a group of one) never waits."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(GATHER_MAX_SECONDS, self._last_write)
        wake = self._wake
        assert wake is not None
        while len(self._pending) < expected:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await wake.wait()

    def _apply(self, group: list[_Mutation]) -> list[Any]:
        """On the worker: the group's calls, then one durable write."""
        admitted, identities = set(self._admitted), dict(self._identities)
        began = time.perf_counter()
        try:
            results = self.manager.durably_together([m.call for m in group])
        except StateNotDurableError:
            # In memory and in the file, only the directory fsync failed: the group happened,
            # and the retries will find it so.
            raise
        except BaseException:
            # The manager rolled back; so do our indexes.
            self._admitted, self._identities = admitted, identities
            self._renamed.clear()
            raise
        self._last_write = time.perf_counter() - began
        ms = round(self._last_write * 1e3, 3)
        _log_group(results, ms)
        if self._renamed:
            self._names.append(self._renamed, self._identities)
            self._renamed.clear()
        return results

    def _admit(self, pod: _engine.Pod) -> dict[str, Any]:
        compiled = compile_pod(pod)
        if compiled.uid in self._admitted:
            return self._existing(compiled.uid, compiled.container_names)
        a = self.manager.admit(compiled)
        if a.admitted:
            self._admitted.add(a.pod_uid)
            ref = PodRef(compiled.namespace, compiled.name, a.pod_uid)
            self._identities[a.pod_uid] = ref
            self._renamed.append((a.pod_uid, ref))
        # The JSON of `pymm admit --json`, plus whether this answer repeats an earlier one.
        return {**_admission_json(a), "alreadyAdmitted": False}

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
        # The operator's release, idempotent for clients that retry: an unknown pod is an
        # answer, not an error ("removed": false).
        known = self.manager.release(uid, container, missing_ok=True)
        if container is None:
            self._forget(uid)
        return {"podUID": uid, "container": container, "removed": known}

    def _stop(self, uid: str, container: str | None) -> dict[str, Any]:
        # The kubelet's RemoveContainer (or, without a container, the pod going away): a
        # container that never started, or an unknown one, releases nothing and is no error.
        if container is None:
            known = self.manager.stop_pod(uid)
            self._forget(uid)
        else:
            known = self.manager.stop(uid, container)
        return {"podUID": uid, "container": container, "stopped": known}

    def _forget(self, uid: str) -> None:
        self._admitted.discard(uid)
        if self._identities.pop(uid, None) is not None:
            self._renamed.append((uid, None))

    def _hints(self, pod: _engine.Pod) -> dict[str, Any]:
        if self.manager.config["scope"] == "pod":
            return {"": self.manager.hints(pod)}
        return {c: self.manager.hints(pod, c) for c in pod.container_names}

    def _nrt(self, node_name: str | None) -> dict[str, Any]:
        config = self.manager.config
        return node_resource_topology(
            self.manager.state,
            self.manager.machine,
            node_name=node_name or default_node_name(),
            topology_policy=config["topology_policy"],
            scope=config["scope"],
            # The pods whose manifests this agent (or an earlier one on this directory)
            # admitted: the fingerprint is set when they are every pod the state holds.
            pods=list(self._identities.values()),
        )

    def _metrics_text(self) -> bytes:
        return exposition(self.registry)

    # -- HTTP -----------------------------------------------------------------------------

    def application(self) -> web.Application:
        app = web.Application(
            client_max_size=MAX_BODY_BYTES, middlewares=[self._error_middleware()]
        )
        app.add_routes(
            [
                web.post("/v1/admit", self._h_admit),
                web.post("/v1/remove", self._h_remove),
                web.post("/v1/stop", self._h_stop),
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
            except _Unsupported as e:
                return self._json({"error": str(e)}, 415)
            except (_BadRequest, PymmError, ValueError) as e:
                # Bad input (a malformed manifest, quantity or body): the client's to fix.
                message = str(e).splitlines()[0] if str(e) else "bad request"
                return self._json({"error": message}, 400)

        return errors

    async def _body(self, request: web.Request) -> str:
        """The request's JSON body, read within :data:`BODY_SECONDS`."""
        if request.content_type != "application/json":
            raise _Unsupported(
                f"the body must be application/json, not {request.content_type or 'missing'}"
            )
        try:
            if request.content.is_eof():
                data = await request.read()  # all of it arrived with the headers: no wait
            else:
                async with asyncio.timeout(self.body_timeout):
                    data = await request.read()
        except TimeoutError:
            log.warning("body timeout", extra={"path": request.path})
            raise web.HTTPRequestTimeout(
                text=json.dumps({"error": f"the body did not arrive within {self.body_timeout} s"}),
                content_type="application/json",
                headers={"Connection": "close"},
            ) from None
        except (ConnectionError, aiohttp.ClientError, aiohttp.http_exceptions.HttpProcessingError):
            # The client went away mid-body: nothing was read, nothing is done.
            log.warning("client went away", extra={"path": request.path})
            raise web.HTTPBadRequest(text='{"error": "incomplete body"}') from None
        try:
            return data.decode()
        except UnicodeDecodeError:
            raise _BadRequest("body is not UTF-8 text") from None

    async def _pod(self, request: web.Request) -> _engine.Pod:
        """The one Pod manifest of the body, decoded by the engine with the API server's
        defaulting (requests default to limits), as ``pymm admit`` reads a manifest."""
        text = await self._body(request)
        if not text.strip():
            raise _BadRequest("expected one Pod manifest, got 0")
        try:
            doc = json_loads(text)  # a key given twice is refused, as kubectl refuses it
        except json.JSONDecodeError as e:
            raise _BadRequest(
                f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}"
            ) from None
        except RecursionError:
            raise _BadRequest("invalid JSON: nested too deeply to be a manifest") from None
        if not isinstance(doc, dict):
            raise _BadRequest(f"expected one Pod manifest, got a JSON {type(doc).__name__}")
        pods = _engine.pods_from_manifest(doc, True)
        if len(pods) != 1:
            raise _BadRequest(f"expected one Pod manifest, got {len(pods)}")
        return pods[0]

    async def _h_admit(self, request: web.Request) -> web.Response:
        pod = await self._pod(request)
        return self._json(await self._mutate(self._admit, pod))

    async def _pod_and_container(self, request: web.Request) -> tuple[str, str | None]:
        try:
            body = json_loads(await self._body(request))
        except json.JSONDecodeError as e:
            raise _BadRequest(f"body is not JSON: {e}") from None
        if not isinstance(body, dict) or not isinstance(body.get("podUID"), str):
            raise _BadRequest('expected {"podUID": "...", "container": "..." (optional)}')
        container = body.get("container")
        if container is not None and not isinstance(container, str):
            raise _BadRequest("container must be a string")
        return body["podUID"], container

    async def _h_remove(self, request: web.Request) -> web.Response:
        uid, container = await self._pod_and_container(request)
        return self._json(await self._mutate(self._remove, uid, container))

    async def _h_stop(self, request: web.Request) -> web.Response:
        uid, container = await self._pod_and_container(request)
        return self._json(await self._mutate(self._stop, uid, container))

    async def _h_state(self, _request: web.Request) -> web.Response:
        return self._json(await self._call(lambda: self.manager.state))

    async def _h_hints(self, request: web.Request) -> web.Response:
        pod = await self._pod(request)
        return self._json({pod.uid: await self._call(self._hints, pod)})

    async def _h_nrt(self, request: web.Request) -> web.Response:
        name = request.query.get("nodeName", self.node_name)
        if name is not None:
            check_node_name(name)
        return self._json(await self._call(self._nrt, name))

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
        self._wake = asyncio.Event()
        self._committer = asyncio.get_running_loop().create_task(self._commit_loop())
        runner = web.AppRunner(
            self.application(),
            access_log=None,
            shutdown_timeout=SHUTDOWN_SECONDS,
            keepalive_timeout=self.idle_timeout,
            # After an early answer (415, 408) aiohttp reads what the client still sends, to
            # let it see the answer; a stalled client must not hold the connection for long.
            lingering_time=LINGER_SECONDS,
        )
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
            metrics_runner = web.AppRunner(
                self.metrics_application(),
                access_log=None,
                shutdown_timeout=SHUTDOWN_SECONDS,
                keepalive_timeout=self.idle_timeout,
            )
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
        if self._committer is not None:
            # Whatever is still queued was received: apply it before stopping.
            while self._pending:
                self._wakeup()
                await asyncio.sleep(0.005)
            self._committer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._committer
            self._committer = None
        await asyncio.get_running_loop().run_in_executor(None, self._worker.shutdown, True)
        self._names.close()
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


class _NameJournal:
    """:data:`IDENTITIES_FILE`: one JSON object a line, ``{"uid", "namespace", "name"}`` when a
    pod is admitted and ``{"uid"}`` when it goes. Appended to without fsync (a crash loses at
    most a tail, and a torn last line ends the read); rewritten whole at start-up and when the
    lines of departed pods outnumber the live ones."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: TextIO | None = None
        self._lines = 0

    def open(self, admitted: set[str]) -> dict[str, PodRef]:
        """The names kept for pods the state still holds (none if the journal is missing or
        unreadable: the fingerprint then waits for those pods to go), the journal compacted."""
        names: dict[str, PodRef] = {}
        try:
            with self.path.open(encoding="utf-8") as f:
                for line in f:
                    try:
                        entry = json.loads(line)
                        uid = entry["uid"]
                        if "name" in entry:
                            names[uid] = PodRef(str(entry["namespace"]), str(entry["name"]), uid)
                        else:
                            names.pop(uid, None)
                    except (ValueError, TypeError, KeyError):
                        log.warning(
                            "pod names for the fingerprint read up to a damaged line",
                            extra={"path": str(self.path)},
                        )
                        break
        except FileNotFoundError:
            pass
        except (OSError, UnicodeDecodeError) as e:
            log.warning(
                "pod names for the fingerprint not read",
                extra={"path": str(self.path), "error": str(e)},
            )
        names = {uid: ref for uid, ref in names.items() if uid in admitted}
        self._rewrite(names.values())
        return names

    def append(self, changes: list[tuple[str, PodRef | None]], live: dict[str, PodRef]) -> None:
        """Journals ``changes``; ``live`` is every name kept now, for a compaction."""
        lines = "".join(_name_line(uid, ref) for uid, ref in changes)
        try:
            if self._file is None:
                raise OSError(f"{self.path} is not open")
            self._file.write(lines)
            self._file.flush()
        except (OSError, ValueError) as e:
            log.warning("pod names not kept for the fingerprint", extra={"error": str(e)})
            return
        self._lines += len(changes)
        if self._lines > 2 * len(live) + 1024:
            self._rewrite(live.values())

    def _rewrite(self, refs: Iterable[PodRef]) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            if self._file is not None:
                self._file.close()
            body = "".join(_name_line(r.uid, r) for r in refs)
            tmp.write_text(body, encoding="utf-8")
            os.replace(tmp, self.path)
            self._lines = body.count("\n")
            self._file = self.path.open("a", encoding="utf-8")
        except OSError as e:
            self._file = None
            log.warning("pod names not kept for the fingerprint", extra={"error": str(e)})

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _name_line(uid: str, ref: PodRef | None) -> str:
    if ref is None:
        return json.dumps({"uid": uid}) + "\n"
    return json.dumps({"uid": uid, "namespace": ref.namespace, "name": ref.name}) + "\n"


def _consume(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _log_group(results: list[Any], group_ms: float) -> None:
    """One line per durable write: what each request of the group did (a line per request
    would cost each request as much CPU as its admission)."""
    admitted: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    repeated: list[str] = []
    removed: list[dict[str, Any]] = []
    stopped: list[dict[str, Any]] = []
    failed = 0
    for r in results:
        if not isinstance(r, dict):
            failed += 1  # an error answer (a bad pod, ...): the request changed nothing
        elif "removed" in r:
            removed.append(
                {"podUID": r["podUID"], "container": r["container"], "known": r["removed"]}
            )
        elif "stopped" in r:
            stopped.append(
                {"podUID": r["podUID"], "container": r["container"], "known": r["stopped"]}
            )
        elif r.get("alreadyAdmitted"):
            repeated.append(r["podUID"])
        elif r["admit"]:
            nodes = {c: v["numaNodes"] for c, v in r["containers"].items()}
            admitted.append({"podUID": r["podUID"], "numaNodes": nodes})
        else:
            rejected.append({"podUID": r["podUID"], "reason": r["reason"]})
    record: dict[str, Any] = {"group": len(results), "ms": group_ms}
    for key, items in (
        ("admitted", admitted),
        ("rejected", rejected),
        ("alreadyAdmitted", repeated),
        ("removed", removed),
        ("stopped", stopped),
    ):
        if items:
            record[key] = items
    if failed:
        record["failed"] = failed
    log.info("committed", extra=record)


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
