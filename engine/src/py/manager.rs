//! `Engine`: the manager a Python `MemoryManager` holds. Each method converts its arguments,
//! calls the core once and converts back.

use super::convert::{to_py, to_value};
use super::errors::IntoPy;
use super::machine::machine_from;
use super::pod::PyPod;
use crate::checkpoint;
use crate::config::Config;
use crate::decode::Subject;
use crate::manager::{AdmitResult, Manager, Snapshot};
use crate::nodemask::IdMap;
use crate::provider::{answer_value, hint_value, providers_from};
use crate::state::Block;
use pyo3::prelude::*;
use serde_json::{json, Value};

fn config_from(obj: &Bound<'_, PyAny>) -> PyResult<Config> {
    Config::from_value(&to_value(obj, Subject::Config)?).py()
}

type Placement = (String, Option<Vec<i64>>, Vec<(Vec<i64>, String, u64)>);

/// The outcome of one admission, with each container's placement taken right after it.
#[pyclass(module = "pymm._engine", name = "AdmitResult", frozen)]
pub struct PyAdmitResult {
    inner: AdmitResult,
    map: IdMap,
    placements: Vec<Placement>,
}

fn blocks_value(b: &[Block]) -> Value {
    Value::Array(
        b.iter()
            .map(|b| json!({"numaAffinity": b.numa_affinity, "type": b.resource, "size": b.size}))
            .collect(),
    )
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
    /// `(calls, errors)` of the memory manager's Allocate during this admission.
    #[getter]
    fn allocate_counts(&self) -> (u32, u32) {
        (self.inner.allocate_calls, self.inner.allocate_errors)
    }
    /// `(container, numa_nodes or None, [(numa_nodes, resource, size), ...])` per container.
    #[getter]
    fn placements(&self) -> Vec<Placement> {
        self.placements.clone()
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
                    .map(|(n, p)| (n.clone(), answer_value(p, &self.map)))
                    .collect();
                json!({"container": c.container, "scope": c.scope.as_str(), "providers": providers,
                       "merged": hint_value(&c.merged, &self.map), "mergeAdmit": c.admit})
            })
            .collect();
        to_py(py, &Value::Array(v))
    }
    /// Every Allocate call on the memory manager, in the replay format (with `trace`).
    #[getter]
    fn allocations<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let v: Vec<Value> = self
            .inner
            .allocations
            .iter()
            .map(|a| {
                json!({"container": a.container,
                       "affinityFromStore": hint_value(&a.affinity_from_store, &self.map),
                       "error": a.error, "blocks": a.blocks.as_ref().map(|b| blocks_value(b))})
            })
            .collect();
        to_py(py, &Value::Array(v))
    }
}

/// What an operation may change, to undo it when its durable write fails.
#[pyclass(module = "pymm._engine", name = "Snapshot", frozen)]
pub struct PySnapshot {
    inner: std::sync::Mutex<Option<Snapshot>>,
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
                let entries = checkpoint::parse_entries(&to_value(e, Subject::Config)?).py()?;
                Manager::rebuilt(m, c, entries)
            }
            None => Manager::new(m, c, checkpoint, state_path),
        };
        Ok(PyEngine { inner: inner.py()? })
    }

    /// The effective configuration, every default filled in.
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.inner.config().to_value())
    }

    /// What start-up accepted beyond the kubelet's rules (drift rebased, state rebuilt).
    #[getter]
    fn notes(&self) -> Vec<String> {
        self.inner.notes().to_vec()
    }

    /// Admits a pod and, with `start`, starts its containers (one call for the common case).
    #[pyo3(signature = (pod, extra=None, trace=false, start=true))]
    fn admit(
        &mut self,
        pod: &PyPod,
        extra: Option<&Bound<'_, PyAny>>,
        trace: bool,
        start: bool,
    ) -> PyResult<PyAdmitResult> {
        let extra = match extra {
            Some(e) if !e.is_none() => {
                providers_from(&to_value(e, Subject::Config)?, self.inner.id_map()).py()?
            }
            _ => vec![],
        };
        let r = self.inner.admit_shared(&pod.inner, &extra, trace);
        self.result(pod, r, start)
    }

    /// Admits a pod on the nodes given per container (`{container: [node ids]}`), refusing
    /// with `PlacementError` a set the kubelet's rules would not reach (see
    /// `Manager::admit_on`); nothing changes then.
    #[pyo3(signature = (pod, targets, extra=None, start=true))]
    fn admit_on(
        &mut self,
        pod: &PyPod,
        targets: std::collections::BTreeMap<String, Vec<i64>>,
        extra: Option<&Bound<'_, PyAny>>,
        start: bool,
    ) -> PyResult<PyAdmitResult> {
        let extra = self.providers(extra)?;
        let r = self.inner.admit_on(&pod.inner, &targets, &extra).py()?;
        self.result(pod, r, start)
    }

    /// The memory manager's hints (container scope with a name, pod scope with None).
    #[pyo3(signature = (pod, container=None))]
    fn hints<'py>(
        &self,
        py: Python<'py>,
        pod: &PyPod,
        container: Option<&str>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let h = self.inner.memory_hints(&pod.inner, container).py()?;
        to_py(py, &answer_value(&h, self.inner.id_map()))
    }

    fn start_pod(&mut self, pod_uid: &str) -> PyResult<()> {
        self.inner.start_pod(pod_uid).py()
    }

    /// Releases a container, or (without one) the whole pod; unknown ones are an error
    /// unless `missing_ok`.
    #[pyo3(signature = (pod_uid, container=None, missing_ok=false))]
    fn remove(&mut self, pod_uid: &str, container: Option<&str>, missing_ok: bool) -> PyResult<()> {
        self.inner.remove(pod_uid, container, missing_ok).py()
    }

    /// The kubelet's view of a pod going away: started containers release their memory.
    fn remove_pod(&mut self, pod_uid: &str) {
        self.inner.remove_pod(pod_uid)
    }

    /// An independent copy (no file behind it): for what-if questions on the current state.
    fn copy(&self) -> PyEngine {
        PyEngine {
            inner: self.inner.clone(),
        }
    }

    fn snapshot(&self) -> PySnapshot {
        PySnapshot {
            inner: std::sync::Mutex::new(Some(self.inner.snapshot())),
        }
    }

    /// Undoes everything since `snapshot` (each snapshot can be rolled back to once).
    fn rollback(&mut self, snapshot: &PySnapshot) -> PyResult<()> {
        let taken = snapshot.inner.lock().ok().and_then(|mut s| s.take());
        match taken {
            Some(s) => {
                self.inner.rollback(s);
                Ok(())
            }
            None => Err(pyo3::exceptions::PyRuntimeError::new_err(
                "this snapshot was already rolled back to",
            )),
        }
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
        self.inner.restart(m, c, checkpoint, state_path).py()
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

    /// Stranded memory for a probe shape: `{"fits", "capped", "byNode", "freeBefore"}`
    /// (see `crate::fragmentation::Fragmentation`).
    #[pyo3(signature = (probe, cap=100_000))]
    fn fragmentation<'py>(
        &self,
        py: Python<'py>,
        probe: &PyPod,
        cap: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let f = self.inner.fragmentation(&probe.inner, cap).py()?;
        to_py(py, &super::checkpoint::fragmentation_value(&f))
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

impl PyEngine {
    pub(super) fn manager(&self) -> &Manager {
        &self.inner
    }

    pub(super) fn providers(
        &self,
        extra: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Vec<crate::provider::ExtraProvider>> {
        match extra {
            Some(e) if !e.is_none() => {
                providers_from(&to_value(e, Subject::Config)?, self.inner.id_map()).py()
            }
            _ => Ok(vec![]),
        }
    }

    /// The result of an admission with each container's placement taken right after it.
    fn result(&mut self, pod: &PyPod, r: AdmitResult, start: bool) -> PyResult<PyAdmitResult> {
        let p = &pod.inner;
        let placements = p
            .all_containers()
            .map(|c| {
                let blocks = self
                    .inner
                    .state()
                    .blocks(&p.uid, &c.name)
                    .map(|bs| {
                        bs.iter()
                            .map(|b| (b.affinity().to_vec(), b.resource.clone(), b.size))
                            .collect()
                    })
                    .unwrap_or_default();
                (
                    c.name.clone(),
                    self.inner.container_nodes(&p.uid, &c.name),
                    blocks,
                )
            })
            .collect();
        if r.admit && start {
            self.inner.start_pod(&p.uid).py()?;
        }
        Ok(PyAdmitResult {
            inner: r,
            map: self.inner.id_map().clone(),
            placements,
        })
    }
}
