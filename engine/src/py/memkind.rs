//! `classify_memory`: the engine's memory-kind rule (`crate::memkind`) over what sysfs
//! discovery read.

use super::convert::to_value;
use super::errors::to_py_err;
use crate::decode::Subject;
use crate::error::EngineError;
use crate::memkind::{classify, NodeFacts, RULE};
use pyo3::prelude::*;
use serde_json::Value;

fn facts(v: &Value) -> NodeFacts {
    let uint = |x: Option<&Value>| x.and_then(Value::as_u64);
    let access = v.get("access");
    NodeFacts {
        cpus: uint(v.get("cpus")).unwrap_or(0),
        has_memory: match v.get("has_memory").and_then(Value::as_bool) {
            Some(b) => b,
            None => uint(v.get("memory_bytes")).unwrap_or(0) > 0,
        },
        tier: v.get("tier").and_then(Value::as_i64),
        read_bandwidth: uint(access.and_then(|a| a.get("read_bandwidth_mbps"))),
        read_latency: uint(access.and_then(|a| a.get("read_latency_ns"))),
    }
}

/// `(kind, reason)` for every node: `nodes` need `cpus` and `memory_bytes` (or
/// `has_memory`); `tier` and `access` (HMAT) are used when present; `distances` rows follow
/// the order of `nodes`.
#[pyfunction]
#[pyo3(signature = (nodes, distances=None))]
pub fn classify_memory(
    nodes: &Bound<'_, PyAny>,
    distances: Option<&Bound<'_, PyAny>>,
) -> PyResult<Vec<(&'static str, String)>> {
    let v = to_value(nodes, Subject::Machine)?;
    let list: Vec<NodeFacts> = v
        .as_array()
        .map(|a| a.iter().map(facts).collect())
        .unwrap_or_default();
    let rows: Option<Vec<Vec<u64>>> = match distances {
        None => None,
        Some(d) if d.is_none() => None,
        Some(d) => Some(d.extract()?),
    };
    if let Some(r) = &rows {
        if r.len() != list.len() || r.iter().any(|row| row.len() != list.len()) {
            return Err(to_py_err(EngineError::machine(
                None,
                format!(
                    "distances: expected {n} rows of {n} distances",
                    n = list.len()
                ),
            )));
        }
    }
    Ok((0..list.len())
        .map(|i| {
            let (kind, why) = classify(i, &list, rows.as_deref());
            (kind.as_str(), why)
        })
        .collect())
}

/// The rule in one line.
#[pyfunction]
pub fn memory_kind_rule() -> &'static str {
    RULE
}
