"""Pods as the memory manager sees them, and readers for Kubernetes Pod manifests.

Only what affects memory placement is kept: container names, resource requests and limits,
which init containers are sidecars, and whether the pod sets pod-level resources.

Quantities stay Kubernetes quantity *strings* (``"1Gi"``, ``"500m"``): the engine owns quantity
parsing, so there is exactly one parser and its errors are the kubelet's. Numbers given from
Python are turned into strings with :func:`str`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from pymm.errors import PodError

__all__ = ["Container", "Pod", "QuantityLike", "load_pods", "load_pods_file"]

QuantityLike = str | int | float
"""A Kubernetes quantity string, or a number that is converted with :func:`str`."""

_SIDECAR_RESTART_POLICY = "Always"


class _Resources(Mapping[str, str]):
    """Read-only resource list, so that a frozen Container really is immutable and hashable."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, str]) -> None:
        self._data = dict(data)

    def __getitem__(self, key: str) -> str:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self._data == dict(other.items())
        return NotImplemented

    def __hash__(self) -> int:
        return hash(frozenset(self._data.items()))

    # Shown like a dict so that Container/Pod reprs read like the data they were built from.
    def __repr__(self) -> str:
        return repr(self._data)


# --------------------------------------------------------------------------------------------
# Validation helpers. Every error names the field path, so a bad manifest of a hundred pods
# points at the one offending line of YAML rather than at "invalid pod".


def _kind(value: object) -> str:
    # JSON/YAML vocabulary, since that is what the user wrote.
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "mapping"
    if isinstance(value, list | tuple):
        return "list"
    return type(value).__name__


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _error(path: str, message: str) -> PodError:
    return PodError(f"{path}: {message}" if path else message)


def _quantity(value: object, path: str) -> str:
    # bool is an int subclass, but `memory: true` is always a mistake, never 1 byte.
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _error(path, f"expected a quantity, got {_kind(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise _error(path, f"expected a quantity, got {value}")
    text = value if isinstance(value, str) else str(value)
    if not text:
        raise _error(path, "expected a quantity, got an empty string")
    return text


def _resources(value: object, path: str) -> dict[str, str]:
    # A bare `limits:` in YAML is null; Kubernetes treats it as an empty list, and so do we.
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _error(path, f"expected a mapping of resource name to quantity, got {_kind(value)}")
    out: dict[str, str] = {}
    for key, quantity in value.items():
        if not isinstance(key, str) or not key:
            raise _error(path, f"resource name must be a non-empty string, got {key!r}")
        out[key] = _quantity(quantity, _join(path, key))
    return out


def _mapping(value: object, path: str, *, what: str = "a mapping") -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _error(path, f"expected {what}, got {_kind(value)}")
    return value


def _optional_mapping(value: object, path: str) -> Mapping[str, Any]:
    return {} if value is None else _mapping(value, path)


def _list(value: object, path: str) -> list[Any] | tuple[Any, ...]:
    if not isinstance(value, list | tuple):
        raise _error(path, f"expected a list, got {_kind(value)}")
    return value


def _optional_list(value: object, path: str) -> list[Any] | tuple[Any, ...]:
    return () if value is None else _list(value, path)


def _name(value: object, path: str) -> str:
    if value is None:
        raise _error(path, "required")
    if not isinstance(value, str):
        raise _error(path, f"expected a string, got {_kind(value)}")
    if not value:
        raise _error(path, "must not be empty")
    return value


def _optional_str(value: object, path: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise _error(path, f"expected a string, got {_kind(value)}")


def _check_unique(names: Iterable[tuple[str, str]]) -> None:
    """Kubernetes requires container names to be unique across init and app containers."""
    seen: dict[str, str] = {}
    for name, path in names:
        if name in seen:
            raise _error(path, f"duplicate container name {name!r} (also {seen[name]})")
        seen[name] = path


def _either(d: Mapping[str, Any], snake: str, camel: str, path: str) -> tuple[Any, str]:
    """Read a key that may be spelt snake_case (engine data) or camelCase (scenario files)."""
    if snake in d and camel in d:
        raise _error(path, f"both {snake!r} and {camel!r} given; use one")
    key = camel if camel in d else snake
    return d.get(key), _join(path, key)


# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Container:
    """One container's resources. ``requests`` and ``limits`` map resource names to quantities.

    ``restart_policy="Always"`` on an *init* container makes it a restartable init container
    (a sidecar), which keeps its memory for the pod's lifetime instead of handing it back.
    """

    name: str
    requests: Mapping[str, str] = field(default_factory=dict)
    limits: Mapping[str, str] = field(default_factory=dict)
    restart_policy: str | None = None

    def __post_init__(self) -> None:
        name = _name(self.name, "container name")
        where = f"container {name!r}: "
        for attr in ("requests", "limits"):
            value = getattr(self, attr)
            # A _Resources was validated when it was made (dataclasses.replace passes them on).
            if not isinstance(value, _Resources):
                object.__setattr__(self, attr, _Resources(_resources(value, where + attr)))
        _optional_str(self.restart_policy, where + "restart_policy")

    @property
    def is_sidecar(self) -> bool:
        """Whether this is a restartable init container. Only meaningful for init containers."""
        return self.restart_policy == _SIDECAR_RESTART_POLICY

    @classmethod
    def of(
        cls,
        name: str,
        *,
        memory: QuantityLike | None = None,
        cpu: QuantityLike | None = None,
        hugepages: Mapping[str, QuantityLike] | None = None,
        limits_only: bool = False,
        requests: Mapping[str, QuantityLike] | None = None,
        limits: Mapping[str, QuantityLike] | None = None,
        restart_policy: str | None = None,
    ) -> Container:
        """Build a container whose given ``memory``/``cpu``/``hugepages`` go into both requests
        and limits (Guaranteed-style), or into limits only with ``limits_only=True``, as a pod
        written for API-server defaulting would have them.

        ``hugepages`` maps a page size to an amount: ``{"2Mi": "64Mi"}`` is
        ``hugepages-2Mi: 64Mi``. Explicit ``requests``/``limits`` are merged in last.
        """
        base: dict[str, QuantityLike] = {}
        if cpu is not None:
            base["cpu"] = cpu
        if memory is not None:
            base["memory"] = memory
        for size, amount in (hugepages or {}).items():
            base[size if size.startswith("hugepages-") else f"hugepages-{size}"] = amount
        req: dict[str, QuantityLike] = {} if limits_only else dict(base)
        lim: dict[str, QuantityLike] = dict(base)
        req.update(requests or {})
        lim.update(limits or {})
        # The dataclass fields are typed for the normalised form; __post_init__ does the str().
        return cls(name, req, lim, restart_policy)  # type: ignore[arg-type]

    def with_defaults(self) -> Container:
        """A copy where every resource with a limit but no request requests its limit."""
        missing = {k: v for k, v in self.limits.items() if k not in self.requests}
        if not missing:
            return self
        return dataclasses.replace(self, requests={**self.requests, **missing})

    def to_dict(self) -> dict[str, Any]:
        """Plain data in the engine's (snake_case) shape."""
        return {
            "name": self.name,
            "requests": dict(self.requests),
            "limits": dict(self.limits),
            "restart_policy": self.restart_policy,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Container:
        """Inverse of :meth:`to_dict`; also accepts ``restartPolicy`` as scenario files spell it.

        Keys this module does not know (e.g. a scenario's ``fakeHints``) are ignored.
        """
        return _container_from_dict(d, "")


def _container_from_dict(value: object, path: str) -> Container:
    d = _mapping(value, path)
    policy, policy_path = _either(d, "restart_policy", "restartPolicy", path)
    return Container(
        name=_name(d.get("name"), _join(path, "name")),
        requests=_resources(d.get("requests"), _join(path, "requests")),
        limits=_resources(d.get("limits"), _join(path, "limits")),
        restart_policy=_optional_str(policy, policy_path),
    )


@dataclass(frozen=True, slots=True)
class Pod:
    """A pod: its identity, its app containers and its init containers (in start order).

    ``has_pod_level_resources`` records that ``spec.resources`` is set; the kubelet's memory
    manager does not place memory for such pods, so the engine needs to know.
    """

    uid: str
    name: str = ""
    namespace: str = "default"
    containers: tuple[Container, ...] = ()
    init_containers: tuple[Container, ...] = ()
    has_pod_level_resources: bool = False

    def __post_init__(self) -> None:
        # An empty uid is allowed: the kubelet's own unit tests (and so our conformance vectors)
        # build pods without one.
        for attr in ("uid", "name", "namespace"):
            if not isinstance(getattr(self, attr), str):
                raise _error(attr, f"expected a string, got {_kind(getattr(self, attr))}")
        if not isinstance(self.has_pod_level_resources, bool):
            kind = _kind(self.has_pod_level_resources)
            raise _error("has_pod_level_resources", f"expected a bool, got {kind}")
        names: list[tuple[str, str]] = []
        # Init containers first: that is the order Kubernetes starts them in, so a duplicate is
        # reported at the later (app) container.
        for attr in ("init_containers", "containers"):
            value = getattr(self, attr)
            if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
                raise _error(attr, f"expected a sequence of Container, got {_kind(value)}")
            items = tuple(value)
            for i, item in enumerate(items):
                if not isinstance(item, Container):
                    raise _error(_join(attr, i), f"expected a Container, got {_kind(item)}")
                names.append((item.name, _join(attr, i)))
            object.__setattr__(self, attr, items)
        _check_unique(names)

    @classmethod
    def of(
        cls,
        uid: str,
        *containers: Container,
        init: Iterable[Container] = (),
        name: str = "",
        namespace: str = "default",
        has_pod_level_resources: bool = False,
    ) -> Pod:
        """``Pod.of("p1", Container.of("c1", memory="1Gi"), init=[...])``."""
        return cls(
            uid=uid,
            name=name,
            namespace=namespace,
            containers=tuple(containers),
            init_containers=tuple(init),
            has_pod_level_resources=has_pod_level_resources,
        )

    def with_defaults(self) -> Pod:
        """A copy with Kubernetes API-server defaulting applied to every container: a resource
        that has a limit but no request gets request = limit."""
        return dataclasses.replace(
            self,
            containers=tuple(c.with_defaults() for c in self.containers),
            init_containers=tuple(c.with_defaults() for c in self.init_containers),
        )

    def to_dict(self) -> dict[str, Any]:
        """The plain data the engine takes (snake_case keys, JSON-serialisable)."""
        return {
            "uid": self.uid,
            "name": self.name,
            "namespace": self.namespace,
            "containers": [c.to_dict() for c in self.containers],
            "init_containers": [c.to_dict() for c in self.init_containers],
            "has_pod_level_resources": self.has_pod_level_resources,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Pod:
        """Inverse of :meth:`to_dict`. Also accepts the camelCase shape of scenario files
        (``initContainers``, ``restartPolicy``, ``hasPodLevelResources``).

        Keys this module does not know (e.g. a scenario's ``fakePodHints``) are ignored, so a
        scenario's pod object can be passed as it is.
        """
        d = _mapping(d, "", what="a mapping for a pod")
        if "uid" not in d:
            raise _error("uid", "required")
        uid = _optional_str(d["uid"], "uid")
        if uid is None:
            raise _error("uid", "expected a string, got null")
        name = _optional_str(d.get("name"), "name")
        namespace = _optional_str(d.get("namespace"), "namespace")
        init, init_path = _either(d, "init_containers", "initContainers", "")
        plr, plr_path = _either(d, "has_pod_level_resources", "hasPodLevelResources", "")
        if plr is not None and not isinstance(plr, bool):
            raise _error(plr_path, f"expected a bool, got {_kind(plr)}")
        init_containers = [
            _container_from_dict(c, _join(init_path, i))
            for i, c in enumerate(_optional_list(init, init_path))
        ]
        containers = [
            _container_from_dict(c, _join("containers", i))
            for i, c in enumerate(_optional_list(d.get("containers"), "containers"))
        ]
        _check_unique(
            [(c.name, _join(_join(init_path, i), "name")) for i, c in enumerate(init_containers)]
            + [(c.name, _join(_join("containers", i), "name")) for i, c in enumerate(containers)]
        )
        return cls(
            uid=uid,
            name="" if name is None else name,
            namespace="default" if namespace is None else namespace,
            containers=tuple(containers),
            init_containers=tuple(init_containers),
            has_pod_level_resources=bool(plr),
        )

    @classmethod
    def from_manifest(cls, obj: Mapping[str, Any]) -> Pod:
        """Read a Kubernetes Pod object as ``kubectl get pod -o yaml`` (or ``-o json``) prints
        it, or as written for ``kubectl apply``. Fields that do not affect memory placement
        (status, managedFields, images, ...) are ignored.

        The uid is ``metadata.uid``, or ``"<namespace>/<name>"`` for a pod not yet created.
        """
        return _pod_from_manifest(obj, "")


# --------------------------------------------------------------------------------------------
# Manifests


def _manifest_container(value: object, path: str) -> Container:
    c = _mapping(value, path)
    resources = _optional_mapping(c.get("resources"), _join(path, "resources"))
    res_path = _join(path, "resources")
    return Container(
        name=_name(c.get("name"), _join(path, "name")),
        requests=_resources(resources.get("requests"), _join(res_path, "requests")),
        limits=_resources(resources.get("limits"), _join(res_path, "limits")),
        restart_policy=_optional_str(c.get("restartPolicy"), _join(path, "restartPolicy")),
    )


def _pod_from_manifest(value: object, path: str, *, in_list: bool = False) -> Pod:
    obj = _mapping(value, path, what="a mapping (a Pod manifest)")
    kind = obj.get("kind")
    # Items of a PodList fetched straight from the API server carry no kind of their own.
    if kind is None and in_list:
        kind = "Pod"
    if kind != "Pod":
        got = "nothing" if kind is None else repr(kind)
        hint = "; use load_pods() for a List" if kind in ("List", "PodList") else ""
        raise _error(_join(path, "kind"), f"expected 'Pod', got {got}{hint}")
    api_version = obj.get("apiVersion")
    if api_version is not None and api_version != "v1":
        raise _error(_join(path, "apiVersion"), f"expected 'v1', got {api_version!r}")

    meta_path = _join(path, "metadata")
    meta = _mapping(obj.get("metadata"), meta_path)
    name = _name(meta.get("name"), _join(meta_path, "name"))
    # An empty namespace means the default one to the API server, too.
    namespace = _optional_str(meta.get("namespace"), _join(meta_path, "namespace")) or "default"
    uid = _optional_str(meta.get("uid"), _join(meta_path, "uid")) or f"{namespace}/{name}"

    spec_path = _join(path, "spec")
    spec = _mapping(obj.get("spec"), spec_path)
    containers_path = _join(spec_path, "containers")
    if spec.get("containers") is None:
        raise _error(containers_path, "required")
    app_items = _list(spec.get("containers"), containers_path)
    if not app_items:
        raise _error(containers_path, "must list at least one container")
    init_path = _join(spec_path, "initContainers")
    init_items = _optional_list(spec.get("initContainers"), init_path)
    init = [_manifest_container(c, _join(init_path, i)) for i, c in enumerate(init_items)]
    app = [_manifest_container(c, _join(containers_path, i)) for i, c in enumerate(app_items)]
    _check_unique(
        [(c.name, _join(_join(init_path, i), "name")) for i, c in enumerate(init)]
        + [(c.name, _join(_join(containers_path, i), "name")) for i, c in enumerate(app)]
    )

    pod_res_path = _join(spec_path, "resources")
    pod_res = _optional_mapping(spec.get("resources"), pod_res_path)
    pod_requests = _resources(pod_res.get("requests"), _join(pod_res_path, "requests"))
    pod_limits = _resources(pod_res.get("limits"), _join(pod_res_path, "limits"))
    return Pod(
        uid=uid,
        name=name,
        namespace=namespace,
        containers=tuple(app),
        init_containers=tuple(init),
        # `resources: {}` is set-but-empty, which the kubelet treats as not set.
        has_pod_level_resources=bool(pod_requests or pod_limits),
    )


def _pods_from_document(doc: object, path: str) -> list[Pod]:
    obj = _mapping(doc, path, what="a mapping (a Pod, List or PodList)")
    if obj.get("kind") not in ("List", "PodList"):
        return [_pod_from_manifest(obj, path)]
    items_path = _join(path, "items")
    items = _optional_list(obj.get("items"), items_path)
    return [
        _pod_from_manifest(item, _join(items_path, i), in_list=True) for i, item in enumerate(items)
    ]


def _one_line(text: str) -> str:
    return " ".join(text.split())


_TOO_DEEP = "invalid {}: nested too deeply (no Pod manifest is anywhere near this deep)"


def _parse_documents(text: str) -> list[object]:
    # Like kubectl: text that starts like JSON is JSON, so a stray trailing comma is reported
    # as the JSON error it is rather than being read as a YAML flow mapping.
    if text.lstrip().startswith(("{", "[")):
        try:
            return [json.loads(text)]
        except json.JSONDecodeError as exc:
            msg = _one_line(exc.msg)
            raise PodError(f"invalid JSON at line {exc.lineno}, column {exc.colno}: {msg}") from exc
        except RecursionError:
            raise PodError(_TOO_DEEP.format("JSON")) from None
    try:
        return list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        raise PodError(_yaml_message(exc)) from exc
    except RecursionError:
        # PyYAML's composer recurses once per nesting level, like json's decoder.
        raise PodError(_TOO_DEEP.format("YAML")) from None


def _yaml_message(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        parts = [p for p in (exc.context, exc.problem) if p]
        detail = _one_line("; ".join(parts)) or "malformed document"
        if mark is not None:
            return f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {detail}"
        return f"invalid YAML: {detail}"
    return f"invalid YAML: {_one_line(str(exc))}"


def load_pods(text: str) -> list[Pod]:
    """Read pods from YAML or JSON text: one Pod, several YAML documents (``---``), or a
    ``kind: List``/``PodList`` with ``items`` (what ``kubectl get pods -o yaml`` prints).
    Empty documents are skipped.

    Raises :class:`~pymm.errors.PodError` naming the document and field path of any problem.
    """
    docs = _parse_documents(text)
    pods: list[Pod] = []
    for i, doc in enumerate(docs):
        if doc is None:
            continue
        # Numbered only when there is more than one document, so a lone pod's path stays plain.
        try:
            pods.extend(_pods_from_document(doc, ""))
        except PodError as exc:
            if len(docs) > 1:
                raise PodError(f"document {i + 1}: {exc}") from exc
            raise
    return pods


def load_pods_file(path: str | os.PathLike[str]) -> list[Pod]:
    """:func:`load_pods` on a UTF-8 file. Errors are prefixed with the file's path."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PodError(
            f"{os.fspath(path)}: not UTF-8 text (bad byte at offset {exc.start})"
        ) from exc
    try:
        return load_pods(text)
    except PodError as exc:
        raise PodError(f"{os.fspath(path)}: {exc}") from exc
