//! The Python boundary: the only code that names PyO3. Each method converts its arguments,
//! calls the core once, and converts back; errors map once onto `pymm.errors`.

use crate::checkpoint;
use crate::error::EngineError;
use crate::hints::{ProviderHints, TopologyHint};
use crate::machine::Machine;
use crate::manager::{AdmitResult, Config, ExtraProvider, Manager, Scope, Search};
use crate::nodemask::{IdMap, NodeMask};
use crate::quantity::Quantity;
use crate::request::Pod;
use crate::reserved::{
    node_allocatable_reservation, parse_reserved_memory_flag, validate_reserved_memory_config,
    MemoryReservation,
};
use crate::state::Block;
use crate::topology::{policy_merge, MergeContext, Policy, PolicyOptions};
use crate::version::KubeletVersion;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

pyo3::import_exception!(pymm.errors, QuantityError);
pyo3::import_exception!(pymm.errors, ReservedMemoryError);
pyo3::import_exception!(pymm.errors, ConfigError);
pyo3::import_exception!(pymm.errors, MachineError);
pyo3::import_exception!(pymm.errors, PodError);
pyo3::import_exception!(pymm.errors, AllocationError);
pyo3::import_exception!(pymm.errors, CheckpointCorruptedError);
pyo3::import_exception!(pymm.errors, StateMismatchError);

/// The one mapping from engine errors to Python exceptions.
fn err(e: EngineError) -> PyErr {
    let m = e.message().to_string();
    match e {
        EngineError::Quantity(_) => QuantityError::new_err(m),
        EngineError::ReservedMemory(_) => ReservedMemoryError::new_err(m),
        EngineError::Config(_) => ConfigError::new_err(m),
        EngineError::Machine(_) => MachineError::new_err(m),
        EngineError::Pod(_) => PodError::new_err(m),
        EngineError::Allocation(_) => AllocationError::new_err(m),
        EngineError::CorruptCheckpoint(_) => CheckpointCorruptedError::new_err(m),
        EngineError::StateMismatch(_, details) => StateMismatchError::new_err((m, details)),
    }
}

fn value(obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    pythonize::depythonize(obj).map_err(|e| PyValueError::new_err(e.to_string()))
}

fn to_py<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    pythonize::pythonize(py, v).map_err(|e| PyValueError::new_err(e.to_string()))
}

fn cfg_err(msg: String) -> PyErr {
    err(EngineError::Config(msg))
}

fn machine_from(obj: &Bound<'_, PyAny>) -> PyResult<Machine> {
    let v = value(obj)?;
    let m: Machine = serde_json::from_value(v).map_err(|e| {
        err(EngineError::Machine(format!(
            "invalid machine description: {e}"
        )))
    })?;
    m.validated().map_err(err)
}

fn reservations_from(v: &Value) -> PyResult<Vec<MemoryReservation>> {
    let Some(a) = v.as_array() else {
        return Ok(vec![]);
    };
    let mut out = Vec::new();
    for r in a {
        let node = r.get("numaNode").and_then(Value::as_i64).ok_or_else(|| {
            err(EngineError::ReservedMemory(
                "reserved memory entry needs an integer numaNode".into(),
            ))
        })?;
        let mut limits = BTreeMap::new();
        if let Some(m) = r.get("limits").and_then(Value::as_object) {
            for (k, q) in m {
                let t = quantity_text(k, q)?;
                let parsed = Quantity::parse(&t).map_err(|e| {
                    err(EngineError::ReservedMemory(format!(
                        "reserved memory for NUMA node {node} {k}={t}: {}",
                        e.message()
                    )))
                })?;
                limits.insert(k.clone(), (parsed, t));
            }
        }
        let numa_node = i32::try_from(node).map_err(|_| {
            err(EngineError::ReservedMemory(format!(
                "NUMA node {node} is out of range"
            )))
        })?;
        out.push(MemoryReservation { numa_node, limits });
    }
    Ok(out)
}

/// A quantity given as text or as a plain number.
fn quantity_text(name: &str, v: &Value) -> PyResult<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(err(EngineError::ReservedMemory(format!(
            "{name}: expected a quantity, got {v}"
        )))),
    }
}

fn quantity_map(v: Option<&Value>) -> PyResult<Option<BTreeMap<String, Quantity>>> {
    let Some(Value::Object(m)) = v else {
        return Ok(None);
    };
    let mut out = BTreeMap::new();
    for (k, q) in m {
        let t = quantity_text(k, q)?;
        out.insert(k.clone(), Quantity::parse(&t).map_err(err)?);
    }
    Ok(Some(out))
}

fn config_from(obj: &Bound<'_, PyAny>) -> PyResult<Config> {
    let v = value(obj)?;
    let s = |k: &str, d: &str| v.get(k).and_then(Value::as_str).unwrap_or(d).to_string();
    let options: BTreeMap<String, String> = match v.get("options") {
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, x)| {
                (
                    k.clone(),
                    x.as_str().map_or_else(|| x.to_string(), String::from),
                )
            })
            .collect(),
        _ => BTreeMap::new(),
    };
    Ok(Config {
        memory_policy: s("memory_policy", "Static"),
        topology_policy: Policy::parse(&s("topology_policy", "best-effort")).map_err(err)?,
        scope: Scope::parse(&s("scope", "container")).map_err(err)?,
        options,
        version: KubeletVersion::parse(&s("kubelet_version", "latest")).map_err(err)?,
        reserved: reservations_from(v.get("reserved_memory").unwrap_or(&Value::Null))?,
        node_allocatable: quantity_map(v.get("node_allocatable"))?,
        search: Search::parse(&s("search", "auto")).map_err(err)?,
        drift_tolerance: match v.get("drift_tolerance") {
            None | Some(Value::Null) => None,
            Some(Value::String(t)) => {
                Some(Quantity::parse(t).and_then(|q| q.bytes()).map_err(err)?)
            }
            Some(Value::Number(n)) => Some(
                n.as_u64()
                    .ok_or_else(|| cfg_err("drift_tolerance must be a byte count".into()))?,
            ),
            Some(_) => return Err(cfg_err("drift_tolerance must be a quantity".into())),
        },
    })
}

fn hint_from(v: &Value, map: Option<&IdMap>) -> PyResult<TopologyHint> {
    let affinity = match v.get("affinity") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => {
            let ids: Vec<i64> = a
                .iter()
                .map(|x| {
                    x.as_i64()
                        .ok_or_else(|| cfg_err("hint affinity must be a list of node ids".into()))
                })
                .collect::<PyResult<_>>()?;
            // Engine hints name the machine's nodes; a standalone merge takes raw ids.
            Some(match map {
                Some(m) => m.mask(&ids).map_err(err)?,
                None => NodeMask::new(ids).map_err(err)?,
            })
        }
        Some(_) => {
            return Err(cfg_err(
                "hint affinity must be a list of node ids or None".into(),
            ))
        }
    };
    let preferred = v
        .get("preferred")
        .and_then(Value::as_bool)
        .ok_or_else(|| cfg_err("a hint needs a boolean 'preferred'".into()))?;
    Ok(TopologyHint {
        affinity,
        preferred,
    })
}

fn provider_from(v: Option<&Value>, map: Option<&IdMap>) -> PyResult<ProviderHints> {
    let Some(Value::Object(m)) = v else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for (r, l) in m {
        let list = match l {
            Value::Null => None,
            Value::Array(a) => Some(Arc::new(
                a.iter()
                    .map(|h| hint_from(h, map))
                    .collect::<PyResult<Vec<_>>>()?,
            )),
            _ => return Err(cfg_err(format!("hints for {r:?} must be a list or None"))),
        };
        out.push((r.clone(), list));
    }
    Ok(Some(out))
}

fn extra_from(obj: Option<&Bound<'_, PyAny>>, map: &IdMap) -> PyResult<Vec<ExtraProvider>> {
    let Some(obj) = obj else {
        return Ok(vec![]);
    };
    if obj.is_none() {
        return Ok(vec![]);
    }
    let v = value(obj)?;
    let Value::Array(a) = v else {
        return Err(cfg_err("extra hint providers must be a list".into()));
    };
    a.iter()
        .map(|p| {
            let mut containers = BTreeMap::new();
            if let Some(Value::Object(m)) = p.get("containers") {
                for (c, h) in m {
                    containers.insert(c.clone(), provider_from(Some(h), Some(map))?);
                }
            }
            Ok(ExtraProvider {
                name: p
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("extra")
                    .to_string(),
                containers,
                pod: provider_from(p.get("pod"), Some(map))?,
            })
        })
        .collect()
}

fn hint_json(h: &TopologyHint, map: &IdMap) -> Value {
    json!({"affinity": h.affinity.map(|m| map.ids(m)), "preferred": h.preferred})
}

fn provider_json(p: &ProviderHints, map: &IdMap) -> Value {
    match p {
        None => Value::Null,
        Some(m) => Value::Object(
            m.iter()
                .map(|(r, l)| {
                    let v = l.as_ref().map_or(Value::Null, |l| {
                        Value::Array(l.iter().map(|h| hint_json(h, map)).collect())
                    });
                    (r.clone(), v)
                })
                .collect(),
        ),
    }
}

fn blocks_json(b: &[Block]) -> Value {
    Value::Array(
        b.iter()
            .map(|b| json!({"numaAffinity": b.numa_affinity, "type": b.resource, "size": b.size}))
            .collect(),
    )
}

/// A pod, parsed and checked once, reusable across admissions.
#[pyclass(module = "pymm._engine", name = "Pod", frozen)]
pub struct PyPod {
    inner: Pod,
}

#[pymethods]
impl PyPod {
    #[new]
    fn new(spec: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(PyPod {
            inner: Pod::from_value(&value(spec)?).map_err(err)?,
        })
    }
    #[getter]
    fn uid(&self) -> &str {
        &self.inner.uid
    }
    #[getter]
    fn qos_class(&self) -> &'static str {
        self.inner.qos_class().as_str()
    }
    /// Container names, init containers first.
    #[getter]
    fn container_names(&self) -> Vec<String> {
        self.inner
            .all_containers()
            .map(|c| c.name.clone())
            .collect()
    }
    /// Requested bytes per memory resource: per container, or for the pod (`None`).
    #[pyo3(signature = (container=None, sidecars=true))]
    fn requested(
        &self,
        container: Option<&str>,
        sidecars: bool,
    ) -> PyResult<BTreeMap<String, u64>> {
        match container {
            Some(c) => {
                let c = self
                    .inner
                    .container(c)
                    .ok_or_else(|| err(EngineError::Pod(format!("no container {c:?}"))))?;
                crate::request::container_requested(c).map_err(err)
            }
            None => crate::request::pod_requested(&self.inner, sidecars).map_err(err),
        }
    }
}

/// The outcome of one admission.
#[pyclass(module = "pymm._engine", name = "AdmitResult", frozen)]
pub struct PyAdmitResult {
    inner: AdmitResult,
    map: IdMap,
    /// per container: name, NUMA nodes, blocks, taken after the admission
    placements: Vec<(String, Option<Vec<i64>>, Vec<Block>)>,
}

#[pymethods]
impl PyAdmitResult {
    #[getter]
    fn admit(&self) -> bool {
        self.inner.admit
    }
    #[getter]
    fn reason(&self) -> Option<&str> {
        self.inner.reason.as_deref()
    }
    #[getter]
    fn message(&self) -> Option<&str> {
        self.inner.message.as_deref()
    }
    /// `(container, numa_nodes or None, [(numa_nodes, resource, size), ...])` per container.
    #[getter]
    #[allow(clippy::type_complexity)]
    fn placements(&self) -> Vec<(String, Option<Vec<i64>>, Vec<(Vec<i64>, String, u64)>)> {
        self.placements
            .iter()
            .map(|(n, nodes, blocks)| {
                let b = blocks
                    .iter()
                    .map(|b| (b.affinity().to_vec(), b.resource.clone(), b.size))
                    .collect();
                (n.clone(), nodes.clone(), b)
            })
            .collect()
    }
    /// Every topology-manager consultation, in the replay format (providers only when traced).
    #[getter]
    fn hint_calls<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let v: Vec<Value> = self
            .inner
            .hint_calls
            .iter()
            .map(|c| {
                let providers: serde_json::Map<String, Value> = c
                    .providers
                    .iter()
                    .map(|(n, p)| (n.clone(), provider_json(p, &self.map)))
                    .collect();
                json!({"container": c.container, "scope": c.scope.as_str(), "providers": providers,
                       "merged": hint_json(&c.merged, &self.map), "mergeAdmit": c.admit})
            })
            .collect();
        to_py(py, &Value::Array(v))
    }
    /// Every Allocate call on the memory manager, in the replay format.
    #[getter]
    fn allocations<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let v: Vec<Value> = self
            .inner
            .allocations
            .iter()
            .map(|a| {
                json!({"container": a.container, "affinityFromStore": hint_json(&a.affinity_from_store, &self.map),
                       "error": a.error, "blocks": a.blocks.as_ref().map(|b| blocks_json(b))})
            })
            .collect();
        to_py(py, &Value::Array(v))
    }
}

/// The memory manager engine: machine, policies, state.
#[pyclass(module = "pymm._engine", name = "Engine")]
pub struct PyEngine {
    inner: Manager,
}

#[pymethods]
impl PyEngine {
    #[new]
    #[pyo3(signature = (machine, config, checkpoint=None, state_path="memory_manager_state", rebuild_entries=None))]
    fn new(
        machine: &Bound<'_, PyAny>,
        config: &Bound<'_, PyAny>,
        checkpoint: Option<&str>,
        state_path: &str,
        rebuild_entries: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let m = machine_from(machine)?;
        let c = config_from(config)?;
        let inner = match rebuild_entries {
            Some(e) => {
                let entries = checkpoint::parse_entries(&value(e)?).map_err(err)?;
                Manager::rebuilt(m, c, entries)
            }
            None => Manager::new(m, c, checkpoint, state_path),
        };
        Ok(PyEngine {
            inner: inner.map_err(err)?,
        })
    }

    /// What start-up accepted beyond the kubelet's rules (drift rebased, state rebuilt).
    #[getter]
    fn notes(&self) -> Vec<String> {
        self.inner.notes().to_vec()
    }

    #[pyo3(signature = (pod, extra=None, trace=false))]
    fn admit(
        &mut self,
        pod: &PyPod,
        extra: Option<&Bound<'_, PyAny>>,
        trace: bool,
    ) -> PyResult<PyAdmitResult> {
        let map = self.inner.id_map();
        let extra = extra_from(extra, &map)?;
        let r = self.inner.admit(&pod.inner, &extra, trace);
        let placements = pod
            .inner
            .all_containers()
            .map(|c| {
                let blocks = self
                    .inner
                    .state()
                    .blocks(&pod.inner.uid, &c.name)
                    .cloned()
                    .unwrap_or_default();
                (
                    c.name.clone(),
                    self.inner.container_nodes(&pod.inner.uid, &c.name),
                    blocks,
                )
            })
            .collect();
        Ok(PyAdmitResult {
            inner: r,
            map,
            placements,
        })
    }

    /// The memory manager's hints (container scope with a name, pod scope with None).
    #[pyo3(signature = (pod, container=None))]
    fn hints<'py>(
        &self,
        py: Python<'py>,
        pod: &PyPod,
        container: Option<&str>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let h = self
            .inner
            .memory_hints(&pod.inner, container)
            .map_err(err)?;
        to_py(py, &provider_json(&h, &self.inner.id_map()))
    }

    fn start_pod(&mut self, pod_uid: &str) -> PyResult<()> {
        self.inner.start_pod(pod_uid).map_err(err)
    }
    fn remove_container(&mut self, pod_uid: &str, container: &str) {
        self.inner.remove_container(pod_uid, container)
    }
    fn remove_pod(&mut self, pod_uid: &str) {
        self.inner.remove_pod(pod_uid)
    }
    fn release_pod(&mut self, pod_uid: &str) {
        self.inner.release_pod(pod_uid)
    }

    /// The state file text, exactly as the kubelet writes it.
    fn checkpoint(&self) -> String {
        self.inner.checkpoint_json()
    }

    #[pyo3(signature = (checkpoint, state_path, machine=None, config=None))]
    fn restart(
        &mut self,
        checkpoint: &str,
        state_path: &str,
        machine: Option<&Bound<'_, PyAny>>,
        config: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let m = machine.map(machine_from).transpose()?;
        let c = config.map(config_from).transpose()?;
        self.inner
            .restart(m, c, checkpoint, state_path)
            .map_err(err)
    }

    fn cpuset_mems(&self, pod_uid: &str, container: &str) -> Option<String> {
        self.inner.cpuset_mems(pod_uid, container)
    }

    fn container_nodes(&self, pod_uid: &str, container: &str) -> Option<Vec<i64>> {
        self.inner.container_nodes(pod_uid, container)
    }

    /// `(node, resource, size)` per node and resource with allocatable memory.
    fn allocatable_memory(&self) -> Vec<(i64, String, u64)> {
        self.inner
            .allocatable_memory()
            .iter()
            .map(|b| {
                (
                    b.affinity().first().copied().unwrap_or(-1),
                    b.resource.clone(),
                    b.size,
                )
            })
            .collect()
    }

    fn active_pods(&self) -> Vec<String> {
        self.inner.active_pods().map(|p| p.uid.clone()).collect()
    }

    #[getter]
    fn policy_name(&self) -> &'static str {
        self.inner.policy_name()
    }

    /// Per node and resource: `(node, resource, total, system_reserved, allocatable, reserved, free)`.
    #[allow(clippy::type_complexity)]
    fn usage(&self) -> Vec<(i64, String, u64, u64, u64, u64, u64)> {
        let mut out = Vec::new();
        for (id, n) in &self.inner.state().machine_state {
            for (r, t) in &n.memory_map {
                out.push((
                    *id,
                    r.clone(),
                    t.total,
                    t.system_reserved,
                    t.allocatable,
                    t.reserved,
                    t.free,
                ));
            }
        }
        out
    }

    /// Per node: `(node, number_of_assignments, group)`.
    fn groups(&self) -> Vec<(i64, i64, Vec<i64>)> {
        self.inner
            .state()
            .machine_state
            .iter()
            .map(|(id, n)| (*id, n.number_of_assignments, n.cells().to_vec()))
            .collect()
    }
}

/// Bytes of a Kubernetes quantity, rounded up like `Quantity.Value()`.
#[pyfunction]
fn parse_quantity(text: &str) -> PyResult<i128> {
    Quantity::parse(text).map(|q| q.value()).map_err(err)
}

/// A quantity's canonical text (`1024Mi` -> `1Gi`).
#[pyfunction]
fn canonical_quantity(text: &str) -> PyResult<String> {
    Quantity::parse(text).map(|q| q.to_string()).map_err(err)
}

/// Parses every `--reserved-memory` value (one string per flag occurrence) and validates the
/// result like the KubeletConfiguration validator.
#[pyfunction]
fn parse_reserved_memory<'py>(py: Python<'py>, values: Vec<String>) -> PyResult<Bound<'py, PyAny>> {
    let r = parse_reserved_memory_flag(&values).map_err(err)?;
    if let Some(first) = validate_reserved_memory_config(&r).into_iter().next() {
        return Err(err(EngineError::ReservedMemory(first)));
    }
    let v: Vec<Value> = r
        .iter()
        .map(|x| {
            let limits: serde_json::Map<String, Value> = x
                .limits
                .iter()
                .map(|(k, (_, t))| (k.clone(), json!(t)))
                .collect();
            json!({"numaNode": x.numa_node, "limits": limits})
        })
        .collect();
    to_py(py, &Value::Array(v))
}

/// Node Allocatable's memory reservation from kube-reserved, system-reserved and eviction-hard.
#[pyfunction]
fn node_allocatable(
    machine: &Bound<'_, PyAny>,
    kube_reserved: BTreeMap<String, String>,
    system_reserved: BTreeMap<String, String>,
    eviction_hard: BTreeMap<String, String>,
) -> PyResult<BTreeMap<String, String>> {
    let m = machine_from(machine)?;
    let r = node_allocatable_reservation(&m, &kube_reserved, &system_reserved, &eviction_hard)
        .map_err(err)?;
    Ok(r.into_iter().map(|(k, q)| (k, q.to_string())).collect())
}

/// Decodes a state file and checks its checksum: `(policy_name, checksum, state_as_data)`.
#[pyfunction]
fn decode_checkpoint<'py>(
    py: Python<'py>,
    text: &str,
) -> PyResult<(String, u64, Bound<'py, PyAny>)> {
    let cp = checkpoint::decode(text).map_err(err)?;
    let ms: Value = serde_json::from_str(&checkpoint::machine_state_json(&cp.state.machine_state))
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    let en: Value = serde_json::from_str(&checkpoint::entries_json(&cp.state.entries))
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    let data = to_py(py, &json!({"machineState": ms, "entries": en}))?;
    Ok((cp.policy_name, cp.checksum, data))
}

/// go-spew's text that the state file's checksum is computed over.
#[pyfunction]
fn checkpoint_spew_text(text: &str) -> PyResult<String> {
    let cp = checkpoint::decode(text).map_err(err)?;
    Ok(checkpoint::spew_text(&cp.policy_name, &cp.state))
}

/// The topology manager's merge of hint providers' answers, on its own.
#[pyfunction]
#[pyo3(signature = (providers, numa_nodes, policy="best-effort", options=None, distances=None))]
fn merge_hints<'py>(
    py: Python<'py>,
    providers: &Bound<'py, PyList>,
    numa_nodes: Vec<i64>,
    policy: &str,
    options: Option<BTreeMap<String, String>>,
    distances: Option<Vec<Vec<u64>>>,
) -> PyResult<(Bound<'py, PyDict>, bool)> {
    let policy = Policy::parse(policy).map_err(err)?;
    let opts = PolicyOptions::parse(&options.unwrap_or_default(), true).map_err(err)?;
    let answers: Vec<ProviderHints> = providers
        .iter()
        .map(|p| provider_from(Some(&value(&p)?), None))
        .collect::<PyResult<_>>()?;
    let closest = if opts.prefer_closest_numa_nodes {
        let d = distances.ok_or_else(|| {
            cfg_err(
                "cannot discover NUMA topology: error getting NUMA distances from cadvisor".into(),
            )
        })?;
        let max = numa_nodes.iter().copied().max().unwrap_or(0).max(0) as usize;
        let mut mat = vec![vec![0u64; max + 1]; max + 1];
        for (i, a) in numa_nodes.iter().enumerate() {
            for (j, b) in numa_nodes.iter().enumerate() {
                let x = d.get(i).and_then(|r| r.get(j)).copied().ok_or_else(|| {
                    cfg_err("the distance matrix must have one row and column per NUMA node".into())
                })?;
                mat[*a as usize][*b as usize] = x;
            }
        }
        Some(mat)
    } else {
        None
    };
    let ctx = MergeContext {
        default: NodeMask::new(numa_nodes).map_err(err)?,
        closest,
    };
    let refs: Vec<&ProviderHints> = answers.iter().collect();
    let (h, admit) = policy_merge(policy, &refs, &ctx);
    let d = PyDict::new(py);
    d.set_item("affinity", h.affinity.map(NodeMask::to_vec))?;
    d.set_item("preferred", h.preferred)?;
    Ok((d, admit))
}

#[pymodule]
fn _engine(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", crate::VERSION)?;
    m.add("STATE_FILE_NAME", checkpoint::STATE_FILE_NAME)?;
    m.add_class::<PyEngine>()?;
    m.add_class::<PyPod>()?;
    m.add_class::<PyAdmitResult>()?;
    m.add_function(wrap_pyfunction!(parse_quantity, m)?)?;
    m.add_function(wrap_pyfunction!(canonical_quantity, m)?)?;
    m.add_function(wrap_pyfunction!(parse_reserved_memory, m)?)?;
    m.add_function(wrap_pyfunction!(node_allocatable, m)?)?;
    m.add_function(wrap_pyfunction!(decode_checkpoint, m)?)?;
    m.add_function(wrap_pyfunction!(checkpoint_spew_text, m)?)?;
    m.add_function(wrap_pyfunction!(merge_hints, m)?)?;
    Ok(())
}
