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
  after that write; if it fails, none of the group happened and each is answered 503. The
  worker does only that: answers are rendered on the event loop as they are written, and a
  group's metrics, log line and journal wait for the next write's fsync (see
  :meth:`Agent._after_all`), since whatever the worker does, every request of the next group
  waits for.
* **A disconnect loses nothing.** A request handed to the manager completes whether or not
  its client is still there. A client that retries an admission with the same pod
  uid gets ``alreadyAdmitted: true`` and the placement it was given; a rejected admission
  reserved nothing, so its retry is simply a new attempt.
* **Graceful stop.** On SIGTERM or SIGINT the listeners close, in-flight requests are answered
  (within :data:`SHUTDOWN_SECONDS`), the worker drains, the state-directory lock is released and the
  socket and ready file removed.
* **Bounded connections.** A request body must be ``application/json`` (415 otherwise); a
  connection idle or stuck in its headers for :data:`IDLE_SECONDS`, or in its body for
  :data:`BODY_SECONDS`, is closed. A client that goes away is a warning in the log. The HTTP
  server and its other limits are :mod:`pymm.httpd`'s.
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

from pymm import _engine
from pymm._text import json_loads
from pymm.errors import (
    ConfigError,
    PymmError,
    StateFileError,
    StateNotDurableError,
)
from pymm.httpd import HTTPServer, Request, Response, Route
from pymm.manager import Admission, MemoryManager, compile_pod
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
#: On SIGTERM, connections whose requests are still unanswered after this long are closed
#: (their manager call, once queued, still completes; it is the answer that is lost).
SHUTDOWN_SECONDS = 1.5
#: The longest a group waits for the clients still to come back (see Agent._gather).
GATHER_MAX_SECONDS = 0.010
#: The longest a durable group's metrics, log line and journal wait for the next write to
#: run beside (see Agent._after_all).
AFTER_SECONDS = 0.002
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
    """One queued change: the call to make (on the worker) and the future of its result,
    set once the group is durable (its route renders the answer)."""

    __slots__ = ("call", "future")

    def __init__(self, call: Callable[[], Any], future: asyncio.Future[Any]) -> None:
        self.call = call
        self.future = future


class _Written:
    """What the worker hands back for a durable group: each call's result, and what is done
    for the group after its answers are sent (metrics, the log line, the journal of names)."""

    __slots__ = ("metrics", "ms", "renamed", "results", "rewrite")

    def __init__(self, results: list[Any], ms: float) -> None:
        self.results = results
        self.ms = ms
        self.metrics: Callable[[], None] | None = None
        self.renamed: list[tuple[str, PodRef | None]] = []
        self.rewrite: list[PodRef] | None = None


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
        self._servers: list[HTTPServer] = []
        self._socket: Path | None = None
        self._ready: Path | None = None
        self._serving = False
        self._pending: list[_Mutation] = []
        self._wake: asyncio.Event | None = None
        # How many pending changes wake the committer: 1 when it is idle, the size of the
        # group it gathers otherwise (woken once for the group, not once per request).
        self._wake_at = 1
        self._committer: asyncio.Task[None] | None = None
        self._last_write = 0.0
        # Durable, answered groups whose metrics, log line and journal are still to do.
        self._afters: list[_Written] = []
        self._after_timer: asyncio.TimerHandle | None = None

    # -- the manager, on its worker thread ------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """A read of the manager, on its worker thread (after any group being applied)."""
        return await asyncio.get_running_loop().run_in_executor(self._worker, fn, *args)

    async def _read(self, fn: Callable[..., Any], *args: Any) -> Response:
        self._after_all()  # a read (of /metrics) sees every answered change counted
        return Response.json(await self._call(fn, *args))

    def _mutate(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """A change of the manager: queued for the next group; its future is the call's
        result, set after the group's write."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append(_Mutation(lambda: fn(*args), future))
        if len(self._pending) < self._wake_at:
            return future
        if self._committer is None:
            # Without start() (a test driving the handlers): the first change starts the loop.
            self._committer = loop.create_task(self._commit_loop())
        self._wakeup()
        return future

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
                    written = await loop.run_in_executor(self._worker, self._apply, group, loop)
                    expected = min(len(group) + len(self._pending), MAX_GROUP)
                except BaseException as e:  # the write failed: none of the group happened
                    for m in group:
                        if not m.future.done():
                            m.future.set_exception(e)
                    if not isinstance(e, Exception):
                        raise
                    continue
                for m, result in zip(group, written.results, strict=True):
                    if isinstance(result, Exception):
                        m.future.set_exception(result)
                    else:
                        m.future.set_result(result)
                self._afters.append(written)
                if self._after_timer is None:
                    self._after_timer = loop.call_later(AFTER_SECONDS, self._after_all)

    def _after_all(self) -> None:
        """On the event loop, for each group durable and answered, in order: its metrics
        counted, its log line, the journal of names.

        Not as soon as the answers are sent: then the event loop is reading the next group's
        requests, and every request of that group would wait for this. The next group's
        write signals the loop as it starts its fsync (the worker then holds no GIL and the
        loop has nothing else to do); an agent with no next group does it after
        :data:`AFTER_SECONDS`; a read does it first."""
        if self._after_timer is not None:
            self._after_timer.cancel()
            self._after_timer = None
        afters, self._afters = self._afters, []
        for written in afters:
            if written.metrics is not None:
                written.metrics()
            _log_group(written.results, written.ms)
            if written.renamed or written.rewrite is not None:
                self._names.append(written.renamed, written.rewrite)

    async def _gather(self, expected: int) -> None:
        """Lets the group grow to ``expected`` requests: the last group and what queued while
        it was being written, whose clients all come back once answered.

        They send their next requests a moment after the write ends, one after another as
        the event loop answers them and reads the new ones. A write started at once would
        carry the first of them and make the others wait a whole write more, so the group
        waits for them, at most as long as the last write took (and never more than
        :data:`GATHER_MAX_SECONDS`): waiting costs at most one write, splitting costs one.
        A lone client (a group of one) never waits."""
        wake = self._wake
        assert wake is not None
        if len(self._pending) >= expected:
            return
        wake.clear()
        self._wake_at = expected
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(GATHER_MAX_SECONDS, self._last_write)):
                    await wake.wait()
        finally:
            self._wake_at = 1

    def _apply(self, group: list[_Mutation], loop: asyncio.AbstractEventLoop) -> _Written:
        """On the worker: the group's calls, then one durable write. The rest (answers,
        metrics, log, journal) is the event loop's, after the write: the worker's time is the
        one thing every request of the next group waits for."""
        admitted, identities = set(self._admitted), dict(self._identities)
        counted: list[Callable[[], None]] = []

        def syncing() -> None:
            loop.call_soon_threadsafe(self._after_all)

        began = time.perf_counter()
        try:
            results = self.manager.durably_together(
                [m.call for m in group], count=counted.append, syncing=syncing
            )
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
        written = _Written(results, round(self._last_write * 1e3, 3))
        written.metrics = counted[0] if counted else None
        written.renamed, self._renamed = self._renamed, []
        if self._names.due(len(written.renamed), len(self._identities)):
            written.rewrite = list(self._identities.values())
        return written

    def _admit(self, pod: _engine.Pod) -> Admission | dict[str, Any]:
        """An admission (rendered by :func:`_render_admission` on the event loop), or the
        answer already given to an earlier one of the same pod."""
        compiled = compile_pod(pod)
        if compiled.uid in self._admitted:
            return self._existing(compiled.uid, compiled.container_names)
        a = self.manager.admit(compiled)
        if a.admitted:
            self._admitted.add(a.pod_uid)
            ref = PodRef(compiled.namespace, compiled.name, a.pod_uid)
            self._identities[a.pod_uid] = ref
            self._renamed.append((a.pod_uid, ref))
        return a

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

    def routes(self) -> dict[str, dict[str, Route]]:
        """The unix socket's API: path ↦ method ↦ route."""
        return {
            "/v1/admit": {"POST": Route(self._h_admit, json_body=True, render=_admission_answer)},
            "/v1/remove": {"POST": Route(self._h_remove, json_body=True, render=Response.json)},
            "/v1/stop": {"POST": Route(self._h_stop, json_body=True, render=Response.json)},
            "/v1/state": {"GET": Route(self._h_state)},
            "/v1/hints": {"POST": Route(self._h_hints, json_body=True)},
            "/v1/nrt": {"GET": Route(self._h_nrt)},
            **self.metrics_routes(),
        }

    def metrics_routes(self) -> dict[str, dict[str, Route]]:
        """The TCP listener's: metrics and health only, never the manager's mutations."""
        return {
            "/metrics": {"GET": Route(self._h_metrics)},
            "/healthz": {"GET": Route(self._h_healthz)},
        }

    def _server(self, routes: dict[str, dict[str, Route]]) -> HTTPServer:
        return HTTPServer(
            routes,
            on_error=self._on_error,
            max_body=MAX_BODY_BYTES,
            idle_timeout=self.idle_timeout,
            body_timeout=self.body_timeout,
        )

    @staticmethod
    def _on_error(e: BaseException, request: Request) -> Response:
        if isinstance(e, StateFileError):
            # The node's disk, not the request: the state write failed (and was undone in
            # memory, or, for StateNotDurableError, is in the file but not yet fsynced).
            # The same request can succeed once the disk recovers, so 503 and retry.
            log.error("state write failed", extra={"error": str(e), "path": request.path})
            answer = {"error": str(e).splitlines()[0], "retryable": True, "kind": type(e).__name__}
            return Response.json(answer, 503, {"Retry-After": "1"})
        if isinstance(e, (_BadRequest, PymmError, ValueError)):
            # Bad input (a malformed manifest, quantity or body): the client's to fix.
            message = str(e).splitlines()[0] if str(e) else "bad request"
            return Response.error(message, 400)
        log.error(
            "request failed",
            extra={"path": request.path, "error": f"{type(e).__name__}: {e}"},
        )
        return Response.error(f"internal error: {type(e).__name__}", 500)

    @staticmethod
    def _text(request: Request) -> str:
        try:
            return request.body.decode()
        except UnicodeDecodeError:
            raise _BadRequest("body is not UTF-8 text") from None

    def _pod(self, request: Request) -> _engine.Pod:
        """The one Pod manifest of the body, decoded by the engine with the API server's
        defaulting (requests default to limits), as ``pymm admit`` reads a manifest."""
        text = self._text(request)
        # The engine reads a well-formed manifest's text in one call; anything else takes
        # the path below, which reads it the same way and says what is wrong.
        pods = _engine.pods_from_json(text, True)
        if pods is not None and len(pods) == 1:
            return pods[0]
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

    def _h_admit(self, request: Request) -> asyncio.Future[Response]:
        return self._mutate(self._admit, self._pod(request))

    def _pod_and_container(self, request: Request) -> tuple[str, str | None]:
        try:
            body = json_loads(self._text(request))
        except json.JSONDecodeError as e:
            raise _BadRequest(f"body is not JSON: {e}") from None
        if not isinstance(body, dict) or not isinstance(body.get("podUID"), str):
            raise _BadRequest('expected {"podUID": "...", "container": "..." (optional)}')
        container = body.get("container")
        if container is not None and not isinstance(container, str):
            raise _BadRequest("container must be a string")
        return body["podUID"], container

    def _h_remove(self, request: Request) -> asyncio.Future[Response]:
        return self._mutate(self._remove, *self._pod_and_container(request))

    def _h_stop(self, request: Request) -> asyncio.Future[Response]:
        return self._mutate(self._stop, *self._pod_and_container(request))

    def _h_state(self, _request: Request) -> Awaitable[Response]:
        return self._read(lambda: self.manager.state)

    def _h_hints(self, request: Request) -> Awaitable[Response]:
        pod = self._pod(request)
        return self._read(lambda: {pod.uid: self._hints(pod)})

    def _h_nrt(self, request: Request) -> Awaitable[Response]:
        name = request.query.get("nodeName", self.node_name)
        if name is not None:
            check_node_name(name)
        return self._read(self._nrt, name)

    def _h_metrics(self, _request: Request) -> Response | Awaitable[Response]:
        if self.registry is None:
            return Response.error("metrics are off", 404)
        return self._metrics()

    async def _metrics(self) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        self._after_all()  # every answered change counted
        return Response(await self._call(self._metrics_text), content_type=CONTENT_TYPE_LATEST)

    def _h_healthz(self, _request: Request) -> Response:
        return Response.text("ok\n")

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
        api = self._server(self.routes())
        self._servers.append(api)
        # The socket is created 0600 (no window where others could connect), then checked.
        old = os.umask(0o177)
        try:
            await api.serve_unix(str(socket_path))
        finally:
            os.umask(old)
        os.chmod(socket_path, 0o600)
        self._socket = socket_path
        info: dict[str, Any] = {"pid": os.getpid(), "socket": str(socket_path)}
        if metrics_port is not None:
            scrape = self._server(self.metrics_routes())
            self._servers.append(scrape)
            server = await scrape.serve_tcp(metrics_address, metrics_port)
            info["metricsPort"] = server.sockets[0].getsockname()[1]
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
        for server in self._servers:
            await server.shutdown(SHUTDOWN_SECONDS)
        self._servers.clear()
        if self._committer is not None:
            # Whatever is still queued was received: apply it before stopping.
            while self._pending:
                self._wakeup()
                await asyncio.sleep(0.005)
            self._committer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._committer
            self._committer = None
        self._after_all()
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

    def _on_signal(self, stop: asyncio.Event, sig: signal.Signals) -> None:
        self._after_all()  # what was answered before the signal is logged before it
        log.info("stopping", extra={"signal": sig.name})
        stop.set()

    async def serve(self, socket_path: Path, **options: Any) -> None:
        """Runs until SIGTERM or SIGINT."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, stop, sig)
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
        self._lines = len(names)
        return names

    def due(self, changes: int, live: int) -> bool:
        """Counts ``changes`` more lines; whether the journal is then due to be rewritten
        from the ``live`` names (the caller passes them to :meth:`append`)."""
        self._lines += changes
        if self._lines > 2 * live + 1024:
            self._lines = live
            return True
        return False

    def append(
        self, changes: list[tuple[str, PodRef | None]], rewrite: list[PodRef] | None
    ) -> None:
        """Journals ``changes``, or, with ``rewrite`` (every name kept now), rewrites the
        journal with those instead."""
        if rewrite is not None:
            self._rewrite(rewrite)
            return
        lines = "".join(_name_line(uid, ref) for uid, ref in changes)
        try:
            if self._file is None:
                raise OSError(f"{self.path} is not open")
            self._file.write(lines)
            self._file.flush()
        except (OSError, ValueError) as e:
            log.warning("pod names not kept for the fingerprint", extra={"error": str(e)})

    def _rewrite(self, refs: Iterable[PodRef]) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            if self._file is not None:
                self._file.close()
            body = "".join(_name_line(r.uid, r) for r in refs)
            tmp.write_text(body, encoding="utf-8")
            os.replace(tmp, self.path)
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


def _admission_answer(result: Admission | dict[str, Any]) -> Response:
    """The JSON of ``pymm admit --json``, plus whether this answer repeats an earlier one."""
    if isinstance(result, dict):
        return Response.json(result)  # already admitted: the worker read the placement
    return Response.json({**_admission_json(result), "alreadyAdmitted": False})


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
        if isinstance(r, Admission):
            if r.admitted:
                nodes = {c: list(p.numa_nodes) if p.numa_nodes else None
                         for c, p in r.placements.items()}  # fmt: skip
                admitted.append({"podUID": r.pod_uid, "numaNodes": nodes})
            else:
                rejected.append({"podUID": r.pod_uid, "reason": r.reason})
        elif not isinstance(r, dict):
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
