"""Publishing NodeResourceTopology objects through the official ``kubernetes`` client.

:class:`NrtPublisher` creates the object once, then replaces it with the ``resourceVersion`` it
last saw (optimistic concurrency, as the API server expects for a full update). A 409 means the
object exists already (on create) or someone else wrote it since (on replace): the publisher
reads the current version and tries again, a bounded number of times. :func:`watch_state`
re-publishes when a state file changes, debounced, until a stop event is set (SIGTERM).

The ``kubernetes`` and ``watchfiles`` packages come with ``pip install 'pymm[agent]'`` and are
imported only here.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pymm.errors import ApiServerError, ConfigError
from pymm.nrt import GROUP, MANAGED_BY, PLURAL, VERSION, PodRef, pod_refs

if TYPE_CHECKING:
    from kubernetes.client import CustomObjectsApi

__all__ = ["NrtPublisher", "custom_objects_api", "node_pods", "watch_state"]

log = logging.getLogger("pymm.publish")


def _kubernetes() -> Any:
    try:
        import kubernetes
    except ImportError:
        raise ConfigError(
            "--apply needs the kubernetes client: pip install 'pymm[agent]'"
        ) from None
    return kubernetes


def custom_objects_api(kubeconfig: str | None = None, context: str | None = None) -> Any:
    """A ``CustomObjectsApi`` from the in-cluster service account when running in a pod
    (and no kubeconfig is named), else from the kubeconfig (``$KUBECONFIG``, ``~/.kube/config``)."""
    k8s = _kubernetes()
    try:
        if kubeconfig is None and context is None:
            try:
                k8s.config.load_incluster_config()
            except k8s.config.ConfigException:
                k8s.config.load_kube_config()
        else:
            k8s.config.load_kube_config(config_file=kubeconfig, context=context)
    except (k8s.config.ConfigException, OSError) as e:
        raise ConfigError(f"no Kubernetes credentials: {e}") from e
    return k8s.client.CustomObjectsApi()


def node_pods(api: Any, node_name: str) -> list[PodRef]:
    """The node's non-terminal pods, as the scheduler sees them (``list pods`` with a field
    selector on ``spec.nodeName``), for the pod set fingerprint."""
    k8s = _kubernetes()
    core = k8s.client.CoreV1Api(api.api_client)
    try:
        # Raw JSON: only metadata and phase are read, and a pod the client's models would
        # refuse (a newer field, an odd value) must not break the listing.
        response = core.list_pod_for_all_namespaces(
            field_selector=f"spec.nodeName={node_name}", _preload_content=False
        )
        listed = json.loads(response.data)
    except k8s.client.ApiException as e:
        reason = (getattr(e, "reason", None) or "").strip()
        raise ApiServerError(
            f"listing the pods of {node_name}: the API server answered {e.status} {reason}".rstrip()
        ) from e
    except (OSError, k8s_transport_errors()) as e:
        raise ApiServerError(f"cannot reach the API server: {e}") from e
    return pod_refs(listed)


class NrtPublisher:
    """Creates or updates NodeResourceTopology objects, remembering each one's version.

    It replaces only objects it created (labelled ``app.kubernetes.io/managed-by: pymm``):
    one that resource-topology-exporter or another publisher wrote is refused, unless
    ``force`` (then the next write carries pymm's label and the object is pymm's)."""

    def __init__(self, api: CustomObjectsApi, *, attempts: int = 5, force: bool = False) -> None:
        self._api = api
        self._attempts = attempts
        self._force = force
        self._versions: dict[str, str | None] = {}

    @property
    def api(self) -> CustomObjectsApi:
        return self._api

    def publish(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Makes the cluster's object equal ``obj``; returns what the API server stored."""
        k8s = _kubernetes()
        name = obj["metadata"]["name"]
        for _ in range(self._attempts):
            version = self._versions.get(name)
            try:
                stored = self._write(name, obj, version)
            except k8s.client.ApiException as e:
                if e.status == 409:
                    # Exists already, or changed since our version: learn the current one.
                    self._versions[name] = self._current_version(name)
                    continue
                if e.status == 404 and version is not None:
                    self._versions[name] = None  # deleted behind our back: create it again
                    continue
                raise ApiServerError(_describe(e, name)) from e
            except k8s.client.exceptions.OpenApiException as e:
                raise ApiServerError(f"NodeResourceTopology {name}: {e}") from e
            except (OSError, k8s_transport_errors()) as e:
                raise ApiServerError(f"cannot reach the API server: {e}") from e
            self._versions[name] = stored.get("metadata", {}).get("resourceVersion")
            log.info(
                "published NodeResourceTopology",
                extra={"node": name, "resourceVersion": self._versions[name]},
            )
            return stored
        raise ApiServerError(
            f"NodeResourceTopology {name}: still conflicting after {self._attempts} attempts"
        )

    def _write(self, name: str, obj: dict[str, Any], version: str | None) -> dict[str, Any]:
        if version is None:
            out = self._api.create_cluster_custom_object(GROUP, VERSION, PLURAL, obj)
        else:
            body = copy.deepcopy(obj)
            body["metadata"]["resourceVersion"] = version
            out = self._api.replace_cluster_custom_object(GROUP, VERSION, PLURAL, name, body)
        return dict(out) if isinstance(out, dict) else {}

    def _current_version(self, name: str) -> str | None:
        k8s = _kubernetes()
        try:
            current = self._api.get_cluster_custom_object(GROUP, VERSION, PLURAL, name)
        except k8s.client.ApiException as e:
            if e.status == 404:
                return None
            raise ApiServerError(_describe(e, name)) from e
        meta = current.get("metadata", {}) if isinstance(current, dict) else {}
        labels = meta.get("labels") or {}
        if labels.get(MANAGED_BY[0]) != MANAGED_BY[1] and not self._force:
            raise ApiServerError(
                f"NodeResourceTopology {name} exists and was not created by pymm (it lacks the "
                f"label {MANAGED_BY[0]}={MANAGED_BY[1]}); --force takes it over"
            )
        version = meta.get("resourceVersion")
        return str(version) if version is not None else None


def k8s_transport_errors() -> type[Exception]:
    """What the client raises when the connection itself fails (urllib3's base error)."""
    import urllib3

    return urllib3.exceptions.HTTPError


def _describe(e: Any, name: str) -> str:
    reason = (getattr(e, "reason", None) or "").strip()
    return f"NodeResourceTopology {name}: the API server answered {e.status} {reason}".rstrip()


def watch_state(
    path: Path,
    stop: threading.Event,
    *,
    debounce_ms: int = 200,
    poll_ms: int | None = None,
    resync_ms: int = 30_000,
) -> Iterator[None]:
    """Yields once each time ``path`` was replaced or written (changes within ``debounce_ms``
    of each other count once), and at least every ``resync_ms``, until ``stop`` is set.
    Watches the directory, because writers replace the file by renaming a new one over it.
    ``poll_ms`` polls instead of inotify (for file systems without it). The periodic wake-up
    catches a change made before the watch began and retries a publish that failed."""
    try:
        import watchfiles
    except ImportError:
        raise ConfigError("--watch needs watchfiles: pip install 'pymm[agent]'") from None
    wanted = path.name

    def only_this(_change: Any, changed: str) -> bool:
        return Path(changed).name == wanted

    for _changes in watchfiles.watch(
        path.parent,
        watch_filter=only_this,
        debounce=debounce_ms,
        stop_event=stop,
        force_polling=poll_ms is not None,
        poll_delay_ms=poll_ms or 300,
        recursive=False,
        raise_interrupt=False,
        rust_timeout=resync_ms,
        yield_on_timeout=True,
    ):
        yield None
