//! `simulate`: the simulation core, one configuration per call.

use super::convert::{to_py, to_value};
use super::errors::IntoPy;
use super::machine::machine_from;
use super::pod::PyPod;
use super::scenario::PyScenarios;
use crate::config::Config;
use crate::decode::Subject;
use crate::error::EngineError;
use crate::simulate::{run, Events, Workload};
use pyo3::prelude::*;
use serde_json::json;
use std::sync::Arc;

fn column<const N: usize>(bytes: &[u8], what: &str) -> PyResult<Vec<[u8; N]>> {
    if bytes.len() % N != 0 {
        return Err(super::errors::to_py_err(EngineError::config(format!(
            "simulate: the {what} column is not a whole number of {N}-byte values"
        ))));
    }
    Ok(bytes
        .chunks_exact(N)
        .map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            a
        })
        .collect())
}

/// Replays a workload on one configuration: generated events (the columns are the raw
/// little-endian bytes of numpy arrays, `op` uint8, `pod` int64, `shape` int32, so a million
/// events cross the boundary as three buffers) or, with `scenario`, a scenario's own
/// operations (`(Scenarios, index)`; `shapes` and the columns are then empty).
#[pyfunction]
#[pyo3(signature = (machine, config, shapes, op, pod, shape, probe, sample_at, cap=100_000, progress=None, scenario=None))]
#[allow(clippy::too_many_arguments)]
pub fn simulate<'py>(
    py: Python<'py>,
    machine: &Bound<'py, PyAny>,
    config: &Bound<'py, PyAny>,
    shapes: Vec<PyRef<'py, PyPod>>,
    op: &[u8],
    pod: &[u8],
    shape: &[u8],
    probe: &PyPod,
    sample_at: Vec<usize>,
    cap: usize,
    progress: Option<Bound<'py, PyAny>>,
    scenario: Option<(PyRef<'py, PyScenarios>, usize)>,
) -> PyResult<Bound<'py, PyAny>> {
    let m = machine_from(machine)?;
    let c = Config::from_value(&to_value(config, Subject::Config)?).py()?;
    let shapes: Vec<Arc<crate::request::Pod>> =
        shapes.iter().map(|p| Arc::clone(&p.inner)).collect();
    let pods: Vec<i64> = column::<8>(pod, "pod")?
        .into_iter()
        .map(i64::from_le_bytes)
        .collect();
    let shape_idx: Vec<i32> = column::<4>(shape, "shape")?
        .into_iter()
        .map(i32::from_le_bytes)
        .collect();
    let events = match &scenario {
        Some((s, i)) => Events::Scenario(
            &s.inner
                .get(*i)
                .ok_or_else(|| {
                    super::errors::to_py_err(EngineError::scenario(
                        None,
                        format!("no scenario at {i}"),
                    ))
                })?
                .steps,
        ),
        None => Events::Generated(Workload {
            shapes: &shapes,
            op,
            pod: &pods,
            shape: &shape_idx,
        }),
    };
    let mut failed: Option<PyErr> = None;
    let mut tick = |n: usize| {
        if let (Some(cb), None) = (&progress, &failed) {
            if let Err(e) = cb.call1((n,)) {
                failed = Some(e);
            }
        }
    };
    let out = run(&m, &c, &events, &probe.inner, &sample_at, cap, &mut tick).py()?;
    if let Some(e) = failed {
        return Err(e);
    }
    let samples: Vec<_> = out
        .samples
        .iter()
        .map(|s| {
            json!({"event": s.event, "reservedFraction": s.reserved_fraction,
                   "nodeReservedFraction": s.node_reserved_fraction, "fits": s.fits,
                   "nodeStranded": s.node_stranded})
        })
        .collect();
    let v = json!({
        "admitted": out.admitted,
        "rejectedByReason": out.rejected_by_reason,
        "rejectedByMessage": out.rejected_by_message,
        "crossNuma": out.cross_numa,
        "distanceSum": out.distance_sum,
        "fractionSum": out.fraction_sum,
        "peakFraction": out.peak_fraction,
        "tierSum": out.tier_sum,
        "samples": samples,
        "events": out.events,
        "restartError": out.restart_error,
        "finalCheckpoint": out.final_checkpoint,
        "finalError": out.final_error,
    });
    to_py(py, &v)
}
