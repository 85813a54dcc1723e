//! `Engine`: the manager a Python `MemoryManager` holds. Each method converts its arguments,
//! calls the core once and converts back.

use super::convert::{to_py, to_value};
use super::errors::IntoPy;
use super::lifecycle::PyOp;
use super::machine::machine_from;
use super::pod::PyPod;
use crate::checkpoint;
use crate::config::Config;
use crate::decode::Subject;
use crate::lifecycle::{Op, Outcome};
use crate::manager::{AdmitResult, Manager, Snapshot};
use crate::nodemask::IdMap;
use crate::provider::answer_value;
use crate::scenario::{allocations_value, hint_calls_value};
use pyo3::prelude::*;
use pyo3::IntoPyObjectExt;
use serde_json::Value;

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
    /// The pod-level allocation (`AllocatePod`): `(pinning_requests, exclusive, shared,
    /// containers, failed)`, or None when the pod was not allocated as a whole.
    #[getter]
    fn pod_level(&self) -> Option<(u32, u32, u32, u32, bool)> {
        self.inner.pod_level.map(|(c, failed)| {
            (
                c.pinning_requests,
                c.exclusive,
                c.shared,
                c.containers,
                failed,
            )
        })
    }
    /// `(container, numa_nodes or None, [(numa_nodes, resource, size), ...])` per container.
    #[getter]
    fn placements(&self) -> Vec<Placement> {
        self.placements.clone()
    }
    /// Every topology-manager consultation, in the replay format (providers only when traced).
    #[getter]
    fn hint_calls<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &Value::Array(hint_calls_value(&self.inner, &self.map)))
    }
    /// Every Allocate call on the memory manager, in the replay format (with `trace`).
    #[getter]
    fn allocations<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &Value::Array(allocations_value(&self.inner, &self.map)))
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

impl PyEngine {
    pub(super) fn manager(&self) -> &Manager {
        &self.inner
    }

    pub(super) fn of(inner: Manager) -> PyEngine {
        PyEngine { inner }
    }

    /// Other hint providers, decoded against this machine.
    pub(super) fn providers(
        &self,
        extra: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Vec<crate::provider::ExtraProvider>> {
        match extra {
            Some(e) if !e.is_none() => {
                crate::provider::providers_from(&to_value(e, Subject::Config)?, self.inner.id_map())
                    .py()
            }
            _ => Ok(vec![]),
        }
    }

    fn outcome(&self, py: Python<'_>, op: &Op, outcome: Outcome) -> PyResult<Py<PyAny>> {
        match (op, outcome) {
            (Op::Admit { pod, .. } | Op::AdmitOn { pod, .. }, Outcome::Admission(r)) => {
                let placements = pod
                    .all_containers()
                    .map(|c| {
                        let blocks = r
                            .placements
                            .iter()
                            .find(|(n, _)| n == &c.name)
                            .map(|(_, b)| b.as_slice())
                            .unwrap_or_default();
                        let nodes = crate::state::block_nodes(blocks);
                        let rows = blocks
                            .iter()
                            .map(|b| (b.affinity().to_vec(), b.resource.clone(), b.size))
                            .collect();
                        (c.name.clone(), (!nodes.is_empty()).then_some(nodes), rows)
                    })
                    .collect();
                let result = PyAdmitResult {
                    inner: *r,
                    map: self.inner.id_map().clone(),
                    placements,
                };
                Ok(Py::new(py, result)?.into_any())
            }
            (_, Outcome::Stopped { released } | Outcome::Released { released }) => {
                Ok(released.into_py_any(py)?)
            }
            (_, Outcome::Resized(r)) => {
                let changed: Vec<Value> = r
                    .changed
                    .iter()
                    .map(|(p, c, b)| {
                        serde_json::json!({"podUID": p, "container": c,
                                           "blocks": crate::scenario::blocks_value(b)})
                    })
                    .collect();
                let v = serde_json::json!({"admit": r.admit, "reason": r.reason,
                                           "message": r.message, "changed": changed});
                Ok(to_py(py, &v)?.unbind())
            }
            _ => Ok(py.None()),
        }
    }
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

    /// Applies one lifecycle operation: an admission returns its `AdmitResult`, a stop or
    /// release whether anything was released, a resize `{"admit", "reason", "message",
    /// "changed"}`, a start or restart None.
    fn apply(&mut self, py: Python<'_>, op: &PyOp) -> PyResult<Py<PyAny>> {
        let outcome = self.inner.apply(&op.inner).py()?;
        self.outcome(py, &op.inner, outcome)
    }

    /// Applies operations in order, all or nothing (the first failure undoes the ones before
    /// it and is raised); one result per operation, as `apply` gives it.
    fn apply_all(&mut self, py: Python<'_>, ops: Vec<PyRef<'_, PyOp>>) -> PyResult<Vec<Py<PyAny>>> {
        let list: Vec<Op> = ops.iter().map(|o| o.inner.clone()).collect();
        let outcomes = self.inner.apply_all(&list).py()?;
        list.iter()
            .zip(outcomes)
            .map(|(op, o)| self.outcome(py, op, o))
            .collect()
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
