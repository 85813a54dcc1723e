//! State files: decoding, the kubelet's checksum text, inspection and conversion.

use super::convert::{to_py, to_value};
use super::errors::IntoPy;
use super::pod::PyPod;
use crate::checkpoint;
use crate::config::Config;
use crate::decode::Subject;
use crate::fragmentation::Fragmentation;
use crate::inspect::{inspect, Inspection};
use crate::version::{CheckpointFormat, KubeletVersion};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use serde_json::{json, Value};

/// A converted file: its bytes, notes, checksum and dataChecksum.
type Converted<'py> = (Bound<'py, PyBytes>, Vec<String>, u64, Option<u64>);

fn version(v: Option<&str>) -> PyResult<KubeletVersion> {
    v.map_or(Ok(KubeletVersion::default()), |v| {
        KubeletVersion::parse(v).py()
    })
}

/// Decodes a state file and checks its checksums as the kubelet of `kubelet_version` does
/// (default `latest`): `(policy_name, checksum, state_as_data)`; `podEntries` is in the data
/// when the file has pod entries and that kubelet reads them (V2, V3).
#[pyfunction]
#[pyo3(signature = (text, kubelet_version=None))]
pub fn decode_checkpoint<'py>(
    py: Python<'py>,
    text: &str,
    kubelet_version: Option<&str>,
) -> PyResult<(String, u64, Bound<'py, PyAny>)> {
    let cp = checkpoint::decode_as(text, version(kubelet_version)?).py()?;
    let parse = |s: String| serde_json::from_str::<Value>(&s).unwrap_or(Value::Null);
    let mut data = json!({
        "machineState": parse(checkpoint::machine_state_json(&cp.state.machine_state)),
        "entries": parse(checkpoint::entries_json(&cp.state.entries)),
    });
    if let (false, Value::Object(m)) = (cp.state.pod_entries.is_empty(), &mut data) {
        m.insert(
            "podEntries".into(),
            parse(checkpoint::pod_entries_json(&cp.state.pod_entries)),
        );
    }
    Ok((cp.policy_name, cp.checksum, to_py(py, &data)?))
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
    /// `"v1"`, `"v2"` or `"v3"`.
    #[getter]
    fn format(&self) -> &'static str {
        self.inner.format.as_str()
    }
    /// A V3 file's `dataChecksum` (None for V1 and V2).
    #[getter]
    fn stored_data_checksum(&self) -> Option<u64> {
        self.inner.data.as_ref().map(|d| d.stored_checksum)
    }
    /// The checksum of a V3 file's `data` as stored (None for V1 and V2).
    #[getter]
    fn computed_data_checksum(&self) -> Option<u64> {
        self.inner.data.as_ref().map(|d| d.computed_checksum)
    }
    /// A V3 file's `data` decodes and matches `dataChecksum` (None for V1 and V2).
    #[getter]
    fn data_checksum_valid(&self) -> Option<bool> {
        self.inner.data_checksum_valid()
    }
    /// Why a V3 file's `data` does not decode, in the kubelet's words (None if it does).
    #[getter]
    fn data_error(&self) -> Option<String> {
        self.inner.data.as_ref().and_then(|d| d.error.clone())
    }
    /// Every checksum the file carries matches what it covers.
    #[getter]
    fn intact(&self) -> bool {
        self.inner.intact()
    }
    #[getter]
    fn pod_entry_count(&self) -> usize {
        self.inner.pod_entry_count()
    }
    /// The layout the kubelet of `kubelet_version` restores from this file (`"v1"`, `"v2"`,
    /// `"v3"`); raises its error (:class:`~pymm.errors.CheckpointCorruptedError`, the
    /// kubelet's inner text) when it refuses the file.
    fn accepted_as(&self, kubelet_version: &str) -> PyResult<&'static str> {
        let v = KubeletVersion::parse(kubelet_version).py()?;
        Ok(self.inner.accepted_as(v).py()?.as_str())
    }
    /// The file in layout `to` (`"v1"`, `"v2"`, `"v3"`) with fresh checksums:
    /// `(file_bytes, notes, checksum, data_checksum)`, the notes saying what changed beyond
    /// the layout. Raises :class:`~pymm.errors.CheckpointCorruptedError` when a checksum
    /// fails (unless `ignore_checksum`), and :class:`~pymm.errors.ConfigError` when pod
    /// entries would be lost to V1 (unless `drop_pod_entries`).
    #[pyo3(signature = (to, ignore_checksum=false, drop_pod_entries=false))]
    fn convert<'py>(
        &self,
        py: Python<'py>,
        to: &str,
        ignore_checksum: bool,
        drop_pod_entries: bool,
    ) -> PyResult<Converted<'py>> {
        let to = CheckpointFormat::parse(to).py()?;
        let c = self
            .inner
            .convert(to, ignore_checksum, drop_pod_entries)
            .py()?;
        // Bytes, ready to write: a large file is not copied again into a str and back.
        let file = PyBytes::new(py, c.file.text.as_bytes());
        Ok((file, c.notes, c.file.checksum, c.file.data_checksum))
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
    /// Pod-level reservations (`podEntries`): `podUID`, `numaNodes`, `blocks` each.
    #[pyo3(signature = (limit=usize::MAX))]
    fn pod_entry_rows<'py>(&self, py: Python<'py>, limit: usize) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &Value::Array(self.inner.pod_entry_rows(limit)))
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
