"""Pods as the memory manager sees them, and readers for Kubernetes Pod manifests.

Only what affects memory placement is kept: container names, resource requests and limits,
which init containers are sidecars, the pod's own requests and limits (``spec.resources``,
pod-level resources), and its annotations (``pymm.io/memory-tier``).

The engine decodes and checks every pod once, as the Kubernetes API server validates a Pod
(names, quantities, resource names, requests against limits, whole hugepages, duplicate
container names), and its errors name the field. This module only offers Python ways to
build pods and reads YAML/JSON text (a key given twice is refused, naming its line): a
:class:`Pod` is compiled by the engine when it is made, and admitting it reuses that.
Quantities are Kubernetes quantity strings (``"1Gi"``, ``"500m"``); numbers given from Python
become strings with :func:`str`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from pymm import _engine
from pymm._text import json_loads
from pymm.errors import InputFileError, PodError, PymmError, WrongTypeError

__all__ = [
    "Container",
    "Pod",
    "QuantityLike",
    "Resources",
    "check_unique_uids",
    "load_pods",
    "load_pods_file",
    "probe_pod",
]

QuantityLike = str | int | float
"""A Kubernetes quantity string, or a number that is converted with :func:`str`."""

#: The annotation naming the memory tier a pod's containers may use (``dram``, ``hbm``,
#: ``cxl``, ``any``); see the README's "Placement beyond the kubelet".
MEMORY_TIER_ANNOTATION = "pymm.io/memory-tier"


class _Frozen(Mapping[str, str]):
    """A read-only mapping, so that a frozen Container or Pod really is immutable and hashable."""

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


def _error(where: str, message: str, field: str | None = None) -> PodError:
    return PodError(f"{where}: {message}", field=field)


def _text(value: object, where: str) -> str:
    """A quantity given from Python as the engine's text. Only the conversion from Python
    values is done here; whether the text is a valid quantity is the engine's call."""
    # bool is an int subclass, but `memory=True` is always a mistake, never 1 byte.
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _error(where, f"expected a quantity, got {_kind(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise _error(where, f"expected a quantity, got {value}")
    return value if isinstance(value, str) else str(value)


def _resources(value: object, where: str) -> _Frozen:
    if isinstance(value, _Frozen):
        return value
    if value is None:
        return _Frozen({})
    if not isinstance(value, Mapping):
        raise _error(where, f"expected a mapping of resource name to quantity, got {_kind(value)}")
    out = {}
    for k, v in value.items():
        if not isinstance(k, str):
            raise _error(where, f"resource name must be a string, got {k!r}")
        out[k] = _text(v, f"{where}.{k}")
    return _Frozen(out)


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
        # Python types only; the engine checks the values when the container joins a Pod.
        if not isinstance(self.name, str):
            raise _error("container name", f"expected a string, got {_kind(self.name)}")
        where = f"container {self.name!r}: "
        object.__setattr__(self, "requests", _resources(self.requests, where + "requests"))
        object.__setattr__(self, "limits", _resources(self.limits, where + "limits"))
        if self.restart_policy is not None and not isinstance(self.restart_policy, str):
            raise _error(
                where + "restart_policy", f"expected a string, got {_kind(self.restart_policy)}"
            )

    @property
    def is_sidecar(self) -> bool:
        """Whether this is a restartable init container. Only meaningful for init containers."""
        return self.restart_policy == "Always"

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
        for where, given in (("hugepages", hugepages), ("requests", requests), ("limits", limits)):
            if given is not None and not isinstance(given, Mapping):
                raise _error(
                    f"container {name!r}: {where}", f"expected a mapping, got {_kind(given)}"
                )
        base: dict[str, QuantityLike] = {}
        if cpu is not None:
            base["cpu"] = cpu
        if memory is not None:
            base["memory"] = memory
        for size, amount in (hugepages or {}).items():
            if not isinstance(size, str):
                raise _error(
                    f"container {name!r}: hugepages", f"page size {size!r} is not a string"
                )
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
        return Container(self.name, {**self.requests, **missing}, self.limits, self.restart_policy)

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
        """Inverse of :meth:`to_dict`; also accepts ``restartPolicy`` as scenario files spell it."""
        return _container(d)


def _container(d: Mapping[str, Any]) -> Container:
    if not isinstance(d, Mapping):
        raise PodError(f"a container must be a mapping, got {_kind(d)}")
    # No coercion: Container checks the types (a name 5 or requests [] is an error, not
    # "5" or no requests).
    policy = d.get("restart_policy", d.get("restartPolicy"))
    requests, limits = d.get("requests"), d.get("limits")
    return Container(
        d.get("name", ""),
        {} if requests is None else requests,
        {} if limits is None else limits,
        policy,
    )


@dataclass(frozen=True, slots=True)
class Resources:
    """A pod's own requests and limits (``spec.resources``, pod-level resources): cpu, memory
    and hugepages for the pod as a whole. Falsy when neither is set, as the kubelet reads an
    empty ``resources: {}``."""

    requests: Mapping[str, str] = field(default_factory=dict)
    limits: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "requests", _resources(self.requests, "resources.requests"))
        object.__setattr__(self, "limits", _resources(self.limits, "resources.limits"))

    def __bool__(self) -> bool:
        return bool(self.requests) or bool(self.limits)

    def to_dict(self) -> dict[str, dict[str, str]]:
        return {"requests": dict(self.requests), "limits": dict(self.limits)}


def _pod_resources(value: object) -> Resources:
    if isinstance(value, Resources):
        return value
    # False in this place is the boolean this field replaced: no pod-level resources.
    if value is None or value is False:
        return Resources()
    if not isinstance(value, Mapping):
        raise _error("resources", f"expected a mapping, got {_kind(value)}", "resources")
    unknown = sorted(str(k) for k in value if k not in ("requests", "limits"))
    if unknown:
        raise _error(
            "resources", f"unknown key {unknown[0]!r} (known: requests, limits)", "resources"
        )
    return Resources(value.get("requests") or {}, value.get("limits") or {})


@dataclass(frozen=True, slots=True)
class Pod:
    """A pod: its identity, its app containers and its init containers (in start order).

    ``resources`` are the pod's own requests and limits (``spec.resources``); the kubelet's
    memory manager does not place memory for a pod that sets them. The engine checks the pod
    when it is made (:class:`~pymm.errors.PodError` names the field) and keeps the result in
    ``compiled``.
    """

    uid: str
    name: str = ""
    namespace: str = "default"
    containers: tuple[Container, ...] = ()
    init_containers: tuple[Container, ...] = ()
    resources: Resources = field(default_factory=Resources)
    annotations: Mapping[str, str] = field(default_factory=dict)
    compiled: _engine.Pod = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        # Python types only (the dataclass's own fields); every rule about the values is the
        # engine's, applied when it compiles the pod below.
        for attr in ("uid", "name", "namespace"):
            if not isinstance(getattr(self, attr), str):
                raise _error(attr, f"expected a string, got {_kind(getattr(self, attr))}", attr)
        object.__setattr__(self, "resources", _pod_resources(self.resources))
        for attr in ("containers", "init_containers"):
            value = getattr(self, attr)
            if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
                raise _error(attr, f"expected a sequence of Container, got {_kind(value)}", attr)
            items = tuple(value)
            for i, item in enumerate(items):
                if not isinstance(item, Container):
                    where = f"{attr}[{i}]"
                    raise _error(where, f"expected a Container, got {_kind(item)}", where)
            object.__setattr__(self, attr, items)
        if not isinstance(self.annotations, _Frozen):
            if not isinstance(self.annotations, Mapping):
                raise _error("annotations", f"expected a mapping, got {_kind(self.annotations)}")
            object.__setattr__(self, "annotations", _Frozen(self.annotations))
        object.__setattr__(self, "compiled", _engine.Pod(self.to_dict()))

    def __reduce__(self) -> tuple[Any, ...]:
        # The compiled engine pod is not picklable; it is rebuilt from the fields.
        return (
            Pod,
            (
                self.uid,
                self.name,
                self.namespace,
                self.containers,
                self.init_containers,
                self.resources,
                dict(self.annotations),
            ),
        )

    @classmethod
    def of(
        cls,
        uid: str,
        *containers: Container,
        init: Iterable[Container] = (),
        name: str = "",
        namespace: str = "default",
        resources: Resources | Mapping[str, Mapping[str, QuantityLike]] | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> Pod:
        """``Pod.of("p1", Container.of("c1", memory="1Gi"), init=[...])``; ``resources`` are
        the pod's own ``{"requests": {...}, "limits": {...}}``."""
        return cls(
            uid=uid,
            name=name,
            namespace=namespace,
            containers=tuple(containers),
            init_containers=tuple(init),
            resources=resources,  # type: ignore[arg-type]
            annotations=annotations or {},
        )

    @property
    def has_pod_level_resources(self) -> bool:
        """Whether the pod sets its own requests or limits (``spec.resources``)."""
        return bool(self.resources)

    @property
    def memory_tier(self) -> str | None:
        """The ``pymm.io/memory-tier`` annotation, if the pod has one."""
        return self.annotations.get(MEMORY_TIER_ANNOTATION)

    def with_defaults(self) -> Pod:
        """A copy as the Kubernetes API server defaults it: in every container a resource
        with a limit but no request requests its limit, and a pod with pod-level limits gets
        the pod-level requests (and hugepage limits) the API server fills in. Checked as the
        API server checks the defaulted pod."""
        return _from_compiled(self.compiled.with_defaults())

    def to_dict(self) -> dict[str, Any]:
        """The plain data the engine takes (snake_case keys, JSON-serialisable)."""
        return {
            "uid": self.uid,
            "name": self.name,
            "namespace": self.namespace,
            "containers": [c.to_dict() for c in self.containers],
            "init_containers": [c.to_dict() for c in self.init_containers],
            "resources": self.resources.to_dict(),
            "annotations": dict(self.annotations),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, kubelet: bool = False) -> Pod:
        """A pod from plain data (the shape of :meth:`to_dict`), also in the camelCase of
        scenario files (``initContainers``, ``restartPolicy``). Keys the engine does not read
        (a scenario's ``fakePodHints``) are ignored.

        Checked as the API server checks a pod; ``kubelet=True`` reads it as the kubelet is
        handed it instead, without the API server's name, uid and resource rules (the
        kubelet's own unit tests use container names such as ``fakeContainer1`` and pods
        without a uid)."""
        return _from_compiled(_engine.Pod(d, kubelet))

    @classmethod
    def from_manifest(cls, obj: Mapping[str, Any], *, defaults: bool = False) -> Pod:
        """Read a Kubernetes Pod object as ``kubectl get pod -o yaml`` (or ``-o json``) prints
        it, or as written for ``kubectl apply``. Fields that do not affect memory placement
        (status, managedFields, images, ...) are ignored; ``defaults`` applies the API
        server's defaulting (a limit without a request is also the request).

        The uid is ``metadata.uid``, or ``"<namespace>/<name>"`` for a pod not yet created.
        """
        return _from_compiled(_engine.Pod.from_manifest(obj, defaults))


def _from_compiled(compiled: _engine.Pod) -> Pod:
    """The Python view of a pod the engine has already decoded and checked."""
    d = compiled.to_dict()
    pod = object.__new__(Pod)
    for key, value in (
        ("uid", d["uid"]),
        ("name", d["name"]),
        ("namespace", d["namespace"]),
        ("containers", tuple(_container(c) for c in d["containers"])),
        ("init_containers", tuple(_container(c) for c in d["init_containers"])),
        ("resources", Resources(d["resources"]["requests"], d["resources"]["limits"])),
        ("annotations", _Frozen(d["annotations"])),
        ("compiled", compiled),
    ):
        object.__setattr__(pod, key, value)
    return pod


# --------------------------------------------------------------------------------------------
# Manifests: Python reads the text, the engine reads the objects.


def _one_line(text: str) -> str:
    return " ".join(text.split())


_TOO_DEEP = "invalid {}: nested too deeply (no Pod manifest is anywhere near this deep)"


class _OnceLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a mapping key given twice (PyYAML keeps the last one
    silently, so ``limits: {memory: 1Gi, memory: 100Gi}`` would reserve 100Gi; kubectl's
    reader refuses it). Keys a ``<<`` merge brings in may repeat: overriding them is what a
    merge is for."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, yaml.Mark] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=deep)
                try:
                    first = seen.setdefault(key, key_node.start_mark)
                except TypeError:
                    continue  # an unhashable key: the base constructor reports it
                if first is not key_node.start_mark:
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"key {key!r} is given twice in one mapping (first at line "
                        f"{first.line + 1})",
                        key_node.start_mark,
                    )
        return super().construct_mapping(node, deep=deep)


def _parse_documents(text: str) -> list[object]:
    # Like kubectl: text that starts like JSON is JSON, so a stray trailing comma is reported
    # as the JSON error it is rather than being read as a YAML flow mapping.
    if text.lstrip().startswith(("{", "[")):
        try:
            return [json_loads(text)]
        except json.JSONDecodeError as exc:
            msg = _one_line(exc.msg)
            raise PodError(f"invalid JSON at line {exc.lineno}, column {exc.colno}: {msg}") from exc
        except RecursionError:
            raise PodError(_TOO_DEEP.format("JSON")) from None
    try:
        docs = list(yaml.load_all(text, Loader=_OnceLoader))
    except yaml.YAMLError as exc:
        raise PodError(_yaml_message(exc)) from exc
    except RecursionError:
        # PyYAML's composer recurses once per nesting level, like json's decoder.
        raise PodError(_TOO_DEEP.format("YAML")) from None
    try:
        _refuse_alias_bombs(docs)
    except RecursionError:
        raise PodError(_TOO_DEEP.format("YAML")) from None
    return docs


#: How many values YAML aliases may add to a manifest by repetition. A hand-written manifest
#: that reuses a ``resources`` block adds a few dozen; a "billion laughs" document of nine
#: nested nine-fold aliases adds 387 million from a kilobyte, and reading them all would take
#: the engine minutes. go-yaml (kubectl) refuses such documents as "excessive aliasing".
MAX_ALIASED_VALUES = 1_000_000


def _refuse_alias_bombs(docs: list[object]) -> None:
    """PyYAML shares one object for every use of an anchor; count each container once and
    what its repeated uses would add, without expanding anything."""
    sizes: dict[int, int] = {}
    added = 0

    def size(value: object) -> int:
        nonlocal added
        if not isinstance(value, dict | list):
            return 1
        known = sizes.get(id(value))
        if known is not None:
            added += known
            if added > MAX_ALIASED_VALUES:
                raise PodError(
                    f"invalid YAML: its aliases repeat more than {MAX_ALIASED_VALUES:,} values "
                    "(excessive aliasing)"
                )
            return known
        children = value.values() if isinstance(value, dict) else value
        total = 1 + sum(size(child) for child in children)
        sizes[id(value)] = total
        return total

    for doc in docs:
        size(doc)


def _yaml_message(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        parts = [p for p in (exc.context, exc.problem) if p]
        detail = _one_line("; ".join(parts)) or "malformed document"
        if mark is not None:
            return f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {detail}"
        return f"invalid YAML: {detail}"
    return f"invalid YAML: {_one_line(str(exc))}"


def load_pods(text: str, *, defaults: bool = False) -> list[Pod]:
    """Read pods from YAML or JSON text: one Pod, several YAML documents (``---``), or a
    ``kind: List``/``PodList`` with ``items`` (what ``kubectl get pods -o yaml`` prints).
    Empty documents are skipped; a key given twice in one mapping, and a pod uid given twice,
    are errors. ``defaults`` applies the API server's defaulting (see
    :meth:`Pod.with_defaults`).

    Raises :class:`~pymm.errors.PodError` naming the document and field path of any problem.
    """
    pods, labels = read_pods(text, defaults=defaults)
    check_unique_uids(pods, labels)
    return pods


def read_pods(text: str, *, defaults: bool = False) -> tuple[list[Pod], list[str]]:
    """:func:`load_pods`' pods, each with where it was read (``document 2: items[0]``), for a
    caller that reads several inputs and checks their uids together."""
    if not isinstance(text, str):
        raise WrongTypeError.of(
            "text", text, "str (the manifest's text; load_pods_file reads a file)"
        )
    docs = _parse_documents(text)
    pods: list[Pod] = []
    labels: list[str] = []
    for i, doc in enumerate(docs):
        if doc is None:
            continue
        # Numbered only when there is more than one document, so a lone pod's path stays
        # plain.
        where = f"document {i + 1}" if len(docs) > 1 else ""
        try:
            if not isinstance(doc, Mapping):
                raise PodError(f"expected a mapping (a Pod, List or PodList), got {_kind(doc)}")
            compiled = _engine.pods_from_manifest(doc, defaults)
        except PodError as exc:
            if where:
                raise PodError(f"{where}: {exc}", field=exc.field) from exc
            raise
        pods.extend(_from_compiled(p) for p in compiled)
        listed = doc.get("kind") in ("List", "PodList")
        labels.extend(
            ": ".join(filter(None, (where, f"items[{j}]" if listed else ""))) or "the manifest"
            for j in range(len(compiled))
        )
    return pods, labels


def check_unique_uids(pods: Sequence[Pod], labels: Sequence[str]) -> None:
    """Refuses a pod uid given twice among ``pods`` (:class:`~pymm.errors.PodError` naming
    both places, as ``labels`` give them): in one batch the second copy would be reported
    admitted while the first holds the memory."""
    _engine.check_unique_uids([p.compiled for p in pods], list(labels))


def load_pods_file(path: str | os.PathLike[str], *, defaults: bool = False) -> list[Pod]:
    """:func:`load_pods` on a UTF-8 file. Errors are prefixed with the file's path; a file
    that cannot be read raises :class:`~pymm.errors.InputFileError` (an ``OSError``), and one
    without a pod (empty, ``/dev/null``) :class:`~pymm.errors.PodError`."""
    pods, labels = read_pods_file(path, defaults=defaults)
    check_unique_uids(pods, labels)
    return pods


def read_pods_file(
    path: str | os.PathLike[str], *, defaults: bool = False
) -> tuple[list[Pod], list[str]]:
    """:func:`load_pods_file`'s pods, each with where it was read (``pods.yaml: items[1]``).
    ``"-"`` is not special here: the caller reads standard input."""
    if isinstance(path, bool | int) or not isinstance(path, str | os.PathLike):
        # An int would be read as an open file descriptor.
        raise WrongTypeError.of("path", path, "a file path (str or os.PathLike)")
    name = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise InputFileError.of(name, exc, "manifest") from exc
    return read_pods_bytes(data, str(name), defaults=defaults)


def read_pods_bytes(
    data: bytes, name: str, *, defaults: bool = False
) -> tuple[list[Pod], list[str]]:
    """Pods of a manifest's bytes read from ``name`` (a path, or ``standard input``): UTF-8,
    at least one pod; errors and labels start with ``name``."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PodError(f"{name}: not UTF-8 text (bad byte at offset {exc.start})") from exc
    try:
        pods, labels = read_pods(text, defaults=defaults)
    except PodError as exc:
        raise PodError(f"{name}: {exc}", field=exc.field) from exc
    if not pods:
        raise PodError(f"{name}: no pods in the manifest (expected a Pod, a List or a PodList)")
    return pods, [name if label == "the manifest" else f"{name}: {label}" for label in labels]


def probe_pod(spec: str | Pod | None = None) -> Pod:
    """A probe shape for fragmentation: a Pod, or ``"8Gi"`` (memory only, the default), or a
    resource list ``"memory=4Gi,hugepages-1Gi=2Gi"``; always one Guaranteed container, with
    something to place (a probe nothing pins would "fit" without end)."""
    if isinstance(spec, Pod):
        return _guaranteed(spec, f"probe pod {spec.uid!r}")
    if spec is not None and not isinstance(spec, str):
        raise WrongTypeError.of(
            "probe", spec, "a Pod, a size such as '8Gi', or 'memory=QTY,hugepages-SIZE=QTY'"
        )
    text = (spec or "8Gi").strip()
    where = f"probe {text!r}"
    resources: dict[str, str] = {}
    for item in text.split(","):
        key, eq, value = (s.strip() for s in item.partition("="))
        if not eq:
            key, value = "memory", key
        if not (key == "memory" or key.startswith("hugepages-")) or not value:
            raise PodError(f"{where}: expected a quantity (8Gi) or memory=QTY,hugepages-SIZE=QTY")
        if key in resources:
            raise PodError(f"{where}: {key} is given twice")
        try:
            amount = _engine.parse_quantity(value)
        except PymmError as e:
            raise PodError(f"{where}: {key}: {e}") from e
        if amount <= 0:
            raise PodError(f"{where}: {key} must be more than 0")
        resources[key] = value
    pod = Pod.of("pymm-probe", Container.of("probe", requests=resources, limits=resources, cpu=1))
    return _guaranteed(pod, where)


def _guaranteed(probe: Pod, where: str) -> Pod:
    if probe.compiled.qos_class != "Guaranteed":
        # Nothing pins a Burstable probe, so it always "fits": 100,000 copies per sample.
        raise PodError(f"{where}: a probe must be Guaranteed (memory and cpu limits)")
    return probe
