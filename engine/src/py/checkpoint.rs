//! State files: decoding, the kubelet's checksum text, and inspection.

use super::convert::{to_py, to_value};
use super::errors::IntoPy;
use super::pod::PyPod;
use crate::checkpoint;
use crate::config::Config;
use crate::cpu_checkpoint;
use crate::decode::Subject;
use crate::fragmentation::Fragmentation;
use crate::inspect::{inspect, Inspection};
use pyo3::prelude::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Decodes a state file and checks its checksum: `(policy_name, checksum, state_as_data)`.
#[pyfunction]
pub fn decode_checkpoint<'py>(
    py: Python<'py>,
    text: &str,
) -> PyResult<(String, u64, Bound<'py, PyAny>)> {
    let cp = checkpoint::decode(text).py()?;
    let parse = |s: String| serde_json::from_str::<Value>(&s).unwrap_or(Value::Null);
    let data = json!({
        "machineState": parse(checkpoint::machine_state_json(&cp.state.machine_state)),
        "entries": parse(checkpoint::entries_json(&cp.state.entries)),
    });
    Ok((cp.policy_name, cp.checksum, to_py(py, &data)?))
}

/// Decodes a kubelet `cpu_manager_state` and checks its checksum:
/// `(policy_name, checksum, default_cpus, {pod: {container: cpus}})`.
#[pyfunction]
#[allow(clippy::type_complexity)]
pub fn decode_cpu_checkpoint(
    text: &str,
) -> PyResult<(
    String,
    u64,
    Vec<u32>,
    BTreeMap<String, BTreeMap<String, Vec<u32>>>,
)> {
    let cp = cpu_checkpoint::decode(text).py()?;
    let (default, pods) = cpu_checkpoint::cpu_sets(&cp).py()?;
    let pods = pods
        .into_iter()
        .map(|(pod, cs)| {
            (
                pod,
                cs.into_iter()
                    .map(|(c, s)| (c, s.into_iter().collect()))
                    .collect(),
            )
        })
        .collect();
    Ok((
        cp.policy_name,
        cp.checksum,
        default.into_iter().collect(),
        pods,
    ))
}

/// go-spew's text that the state file's checksum is computed over.
#[pyfunction]
pub fn checkpoint_spew_text(text: &str) -> PyResult<String> {
    let cp = checkpoint::decode_unverified(text).py()?;
    Ok(checkpoint::spew_text(&cp.policy_name, &cp.state))
}

/// A state file inspected: what it records, and what does not add up. Raises only when the
/// text is not a checkpoint; a wrong checksum is one of the findings.
#[pyclass(module = "pymm._engine", name = "Inspection", frozen)]
pub struct PyInspection {
    inner: Inspection,
}

#[pymethods]
impl PyInspection {
    #[new]
    fn new(text: &str) -> PyResult<Self> {
        Ok(PyInspection {
            inner: inspect(text).py()?,
        })
    }
    #[getter]
    fn policy_name(&self) -> &str {
        &self.inner.policy_name
    }
    #[getter]
    fn stored_checksum(&self) -> u64 {
        self.inner.stored_checksum
    }
    #[getter]
    fn computed_checksum(&self) -> u64 {
        self.inner.computed_checksum
    }
    #[getter]
    fn checksum_valid(&self) -> bool {
        self.inner.checksum_valid()
    }
    #[getter]
    fn node_count(&self) -> usize {
        self.inner.state.machine_state.len()
    }
    #[getter]
    fn pod_count(&self) -> usize {
        self.inner.state.entries.len()
    }
    #[getter]
    fn container_count(&self) -> usize {
        self.inner.containers()
    }
    /// `(kind, message)` per inconsistency.
    #[getter]
    fn findings(&self) -> Vec<(&'static str, String)> {
        self.inner
            .findings
            .iter()
            .map(|f| (f.kind, f.message.clone()))
            .collect()
    }
    fn node_rows<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &Value::Array(self.inner.node_rows()))
    }
    fn group_rows<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &Value::Array(self.inner.group_rows()))
    }
    #[pyo3(signature = (limit=usize::MAX))]
    fn pod_rows<'py>(&self, py: Python<'py>, limit: usize) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &Value::Array(self.inner.pod_rows(limit)))
    }
    /// Stranded memory for a probe shape on the recorded state, with the file's own machine
    /// and reservation and `config` for the rest (default: the kubelet's defaults).
    #[pyo3(signature = (probe, config=None, cap=100_000))]
    fn fragmentation<'py>(
        &self,
        py: Python<'py>,
        probe: &PyPod,
        config: Option<&Bound<'py, PyAny>>,
        cap: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let c = match config {
            Some(c) => Config::from_value(&to_value(c, Subject::Config)?).py()?,
            None => Config::default(),
        };
        let f = self.inner.fragmentation(c, &probe.inner, cap).py()?;
        to_py(py, &fragmentation_value(&f))
    }

    /// The whole inspection as JSON text, with `extra` top-level fields (written by the
    /// engine: a file with a million entries never becomes Python objects).
    #[pyo3(signature = (pods_limit=usize::MAX, indent=true, extra=None))]
    fn to_json(
        &self,
        pods_limit: usize,
        indent: bool,
        extra: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<String> {
        let extra = match extra {
            Some(e) => match to_value(e, Subject::Config)? {
                Value::Object(m) => m,
                _ => serde_json::Map::new(),
            },
            None => serde_json::Map::new(),
        };
        let text = self.inner.to_json(pods_limit, &extra);
        if !indent {
            return Ok(text);
        }
        // Indenting means one tree of the whole document: for people reading small files.
        Ok(serde_json::from_str::<Value>(&text)
            .and_then(|v| serde_json::to_string_pretty(&v))
            .unwrap_or(text))
    }
}

/// A fragmentation as plain data, node ids as keys.
pub fn fragmentation_value(f: &Fragmentation) -> Value {
    let map = |m: &std::collections::BTreeMap<i64, u64>| -> serde_json::Map<String, Value> {
        m.iter().map(|(k, v)| (k.to_string(), json!(v))).collect()
    };
    json!({"fits": f.fits, "capped": f.capped, "byNode": map(&f.by_node), "freeBefore": map(&f.free_before)})
}
