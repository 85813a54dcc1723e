//! Quantities and reservations.

use super::convert::{to_py, to_value};
use super::errors::IntoPy;
use super::machine::machine_from;
use crate::config::reservations_from;
use crate::decode::Subject;
use crate::quantity::Quantity;
use crate::reserved::node_allocatable_reservation;
use pyo3::prelude::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Bytes of a Kubernetes quantity, rounded up like `Quantity.Value()`.
#[pyfunction]
pub fn parse_quantity(text: &str) -> PyResult<i128> {
    Quantity::parse(text).map(|q| q.value()).py()
}

/// A quantity's canonical text (`1024Mi` -> `1Gi`).
#[pyfunction]
pub fn canonical_quantity(text: &str) -> PyResult<String> {
    Quantity::parse(text).map(|q| q.to_string()).py()
}

/// Reserved memory as the engine reads it (`--reserved-memory` text, one string per flag
/// occurrence, or a `reservedMemory` list), validated like the KubeletConfiguration
/// validator, as a `reservedMemory` list.
#[pyfunction]
pub fn parse_reserved_memory<'py>(
    py: Python<'py>,
    value: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let r = reservations_from(&to_value(value, Subject::Reserved)?).py()?;
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
pub fn node_allocatable(
    machine: &Bound<'_, PyAny>,
    kube_reserved: BTreeMap<String, String>,
    system_reserved: BTreeMap<String, String>,
    eviction_hard: BTreeMap<String, String>,
) -> PyResult<BTreeMap<String, String>> {
    let m = machine_from(machine)?;
    let r =
        node_allocatable_reservation(&m, &kube_reserved, &system_reserved, &eviction_hard).py()?;
    Ok(r.into_iter().map(|(k, q)| (k, q.to_string())).collect())
}
