//! What the batch planner and the defragmentation planner ask the engine
//! (`crate::placement::plan`): plain data in and out.

use super::convert::to_py;
use super::errors::IntoPy;
use super::manager::PyEngine;
use super::pod::PyPod;
use pyo3::prelude::*;
use serde_json::Value;
use std::sync::Arc;

/// The solver's view of `pods` (with each one's other hint providers, or None) on top of what
/// runs now: `{"policy", "scope", "nodes": [...], "pods": [...]}`.
#[pyfunction]
#[pyo3(signature = (engine, pods, extras=None))]
pub fn plan_input<'py>(
    py: Python<'py>,
    engine: &PyEngine,
    pods: Vec<PyRef<'py, PyPod>>,
    extras: Option<Vec<Option<Bound<'py, PyAny>>>>,
) -> PyResult<Bound<'py, PyAny>> {
    let mut batch = Vec::with_capacity(pods.len());
    for (i, p) in pods.iter().enumerate() {
        let extra = extras
            .as_ref()
            .and_then(|e| e.get(i))
            .and_then(|e| e.as_ref());
        batch.push((Arc::clone(&p.inner), engine.providers(extra)?));
    }
    let input = engine.manager().plan_input(&batch).py()?;
    to_py(py, &input.to_value())
}

/// The defragmentation planner's view: the machine without the running pods that can move,
/// those pods (with the nodes each unit holds now), then `pending`; and the movable pods as
/// they would be admitted again.
#[pyfunction]
#[pyo3(signature = (engine, pending=None, extra=None))]
pub fn defrag_input<'py>(
    py: Python<'py>,
    engine: &PyEngine,
    pending: Option<PyRef<'py, PyPod>>,
    extra: Option<Bound<'py, PyAny>>,
) -> PyResult<(Bound<'py, PyAny>, Vec<PyPod>)> {
    let extra = engine.providers(extra.as_ref())?;
    let d = engine
        .manager()
        .defrag_input(pending.as_ref().map(|p| (&p.inner, extra.as_slice())))
        .py()?;
    let pods = d.movable.into_iter().map(|inner| PyPod { inner }).collect();
    Ok((to_py(py, &d.input.to_value())?, pods))
}

/// Each running pod's containers and the NUMA node ids each sits on.
#[pyfunction]
pub fn placements<'py>(py: Python<'py>, engine: &PyEngine) -> PyResult<Bound<'py, PyAny>> {
    let v = serde_json::to_value(engine.manager().placements()).unwrap_or(Value::Null);
    to_py(py, &v)
}
