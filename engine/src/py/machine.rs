//! Machine descriptions: decoded and checked by the engine's one decoder.

use super::convert::{to_py, to_value};
use super::errors::IntoPy;
use crate::decode::Subject;
use crate::machine::{hugepage_size_kib as size_kib, Machine};
use pyo3::prelude::*;
use serde_json::{json, Value};

pub fn machine_from(obj: &Bound<'_, PyAny>) -> PyResult<Machine> {
    Machine::from_value(&to_value(obj, Subject::Machine)?).py()
}

pub fn machine_value(m: &Machine) -> Value {
    json!({
        "name": m.name,
        "nodes": m.nodes.iter().map(|n| json!({
            "id": n.id,
            "memory_bytes": n.memory_bytes,
            "cpus": n.cpus,
            "kind": n.kind.as_str(),
            "hugepages": n.hugepages.iter().map(|p| json!({
                "page_size_kib": p.page_size_kib, "num_pages": p.num_pages,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "distances": m.distances,
    })
}

/// A machine description checked and normalised (nodes sorted by id, types exact); keys
/// the engine does not use are dropped.
#[pyfunction]
pub fn decode_machine<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    to_py(py, &machine_value(&machine_from(data)?))
}

/// A hugepage size (`2Mi`, `hugepages-1Gi`) as KiB: positive, whole KiB, a power of two.
#[pyfunction]
pub fn hugepage_size_kib(text: &str) -> PyResult<u64> {
    size_kib(text).py()
}
