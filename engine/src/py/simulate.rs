//! `Simulation` and `simulate`: the simulation core, one configuration each. The loop runs
//! with the GIL released, so that several configurations can run at once on threads.

use super::convert::{to_py, to_value};
use super::errors::IntoPy;
use super::lifecycle::PyOp;
use super::machine::machine_from;
use super::manager::PyEngine;
use super::pod::PyPod;
use super::scenario::PyScenarios;
use crate::config::Config;
use crate::decode::Subject;
use crate::error::EngineError;
use crate::lifecycle::Op;
use crate::scenario::Step;
use crate::simulate::{Events, Outcome, Simulation, Workload};
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

fn not_running() -> PyErr {
    super::errors::to_py_err(EngineError::config(
        "simulate: this simulation has finished",
    ))
}

/// Calls `progress` (with the GIL) every few thousand events; the first error it raises is
/// kept and no further call is made.
struct Progress {
    callback: Option<Py<PyAny>>,
    failed: Option<PyErr>,
}

impl Progress {
    fn tick(&mut self, n: usize) {
        if let (Some(cb), None) = (&self.callback, &self.failed) {
            if let Err(e) = Python::attach(|py| cb.call1(py, (n,)).map(drop)) {
                self.failed = Some(e);
            }
        }
    }

    fn done(self) -> PyResult<()> {
        self.failed.map_or(Ok(()), Err)
    }
}

/// One workload replayed on one configuration (the core's `Simulation`): generated events
/// (the columns are the raw little-endian bytes of numpy arrays, `op` uint8, `pod` int64,
/// `shape` int32, so a million events cross the boundary as three buffers) or, with
/// `scenario`, a scenario's own operations (`(Scenarios, index)`; `shapes` and the columns are
/// then empty; with `admits_only`, only its admissions: a static batch).
#[pyclass(module = "pymm._engine", name = "Simulation")]
pub struct PySimulation {
    inner: Option<Simulation>,
}

fn outcome_value<'py>(py: Python<'py>, out: &Outcome) -> PyResult<Bound<'py, PyAny>> {
    let samples: Vec<_> = out
        .samples
        .iter()
        .map(|s| {
            json!({"event": s.event, "reservedFraction": s.reserved_fraction,
                   "nodeReservedFraction": s.node_reserved_fraction, "fits": s.fits,
                   "nodeStranded": s.node_stranded, "admitted": s.admitted,
                   "rejected": s.rejected, "moves": s.moves})
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
        "defragmented": out.defragmented,
        "moves": out.moves,
        "evictions": out.evictions,
        "finalCheckpoint": out.final_checkpoint,
        "finalError": out.final_error,
    });
    to_py(py, &v)
}

#[pymethods]
impl PySimulation {
    #[new]
    #[pyo3(signature = (machine, config, shapes, op, pod, shape, probe, sample_at, cap=100_000, scenario=None, admits_only=false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        machine: &Bound<'_, PyAny>,
        config: &Bound<'_, PyAny>,
        shapes: Vec<PyRef<'_, PyPod>>,
        op: &[u8],
        pod: &[u8],
        shape: &[u8],
        probe: &PyPod,
        sample_at: Vec<usize>,
        cap: usize,
        scenario: Option<(PyRef<'_, PyScenarios>, usize)>,
        admits_only: bool,
    ) -> PyResult<Self> {
        let m = machine_from(machine)?;
        let c = Config::from_value(&to_value(config, Subject::Config)?).py()?;
        let events = match &scenario {
            Some((s, i)) => Events::Scenario(
                s.inner
                    .get(*i)
                    .ok_or_else(|| {
                        super::errors::to_py_err(EngineError::scenario(
                            None,
                            format!("no scenario at {i}"),
                        ))
                    })?
                    .steps
                    .iter()
                    .filter(|s| !admits_only || matches!(s, Step::Admit { .. }))
                    .cloned()
                    .collect(),
            ),
            None => Events::Generated(Workload {
                shapes: shapes.iter().map(|p| Arc::clone(&p.inner)).collect(),
                op: op.to_vec(),
                pod: column::<8>(pod, "pod")?
                    .into_iter()
                    .map(i64::from_le_bytes)
                    .collect(),
                shape: column::<4>(shape, "shape")?
                    .into_iter()
                    .map(i32::from_le_bytes)
                    .collect(),
            }),
        };
        let s = Simulation::new(&m, &c, events, (*probe.inner).clone(), sample_at, cap).py()?;
        Ok(PySimulation { inner: Some(s) })
    }

    /// Applies events (the GIL released) to the end, or with `pause_on_reject` up to a
    /// rejected admission, whose event index it returns (None at the end). `progress(n)` is
    /// told how many more events were applied, every 10,000 and at the end.
    #[pyo3(signature = (pause_on_reject=false, progress=None))]
    fn run(
        &mut self,
        py: Python<'_>,
        pause_on_reject: bool,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Option<usize>> {
        let s = self.inner.as_mut().ok_or_else(not_running)?;
        let mut p = Progress {
            callback: progress,
            failed: None,
        };
        let r = py.detach(|| s.run(pause_on_reject, &mut |n| p.tick(n)));
        p.done()?;
        r.py()
    }

    /// The rejected pod waiting to be settled and the provider hints it came with, or None.
    fn pending<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<Option<(PyPod, Option<Bound<'py, PyAny>>)>> {
        let s = self.inner.as_ref().ok_or_else(not_running)?;
        s.pending()
            .map(|(pod, hints)| {
                let hints = hints.map(|h| to_py(py, h)).transpose()?;
                Ok((
                    PyPod {
                        inner: Arc::clone(pod),
                    },
                    hints,
                ))
            })
            .transpose()
    }

    /// A copy of the simulated manager as it is now (to plan on; nothing flows back).
    fn engine(&self) -> PyResult<PyEngine> {
        let s = self.inner.as_ref().ok_or_else(not_running)?;
        Ok(PyEngine::of(s.manager().clone()))
    }

    /// Settles the pending rejection, with the steps of a defragmentation plan or without
    /// (the core's `Simulation::settle`); returns whether the pod was admitted.
    #[pyo3(signature = (steps=None, progress=None))]
    fn settle(
        &mut self,
        steps: Option<Vec<PyRef<'_, PyOp>>>,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<bool> {
        let s = self.inner.as_mut().ok_or_else(not_running)?;
        let ops: Option<Vec<Op>> = steps.map(|v| v.iter().map(|o| o.inner.clone()).collect());
        let mut p = Progress {
            callback: progress,
            failed: None,
        };
        let r = s.settle(ops.as_deref(), &mut |n| p.tick(n));
        p.done()?;
        r.py()
    }

    /// Ends the simulation: its results, the final state file and whether it restores.
    fn finish<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let s = self.inner.take().ok_or_else(not_running)?;
        let out = py.detach(|| s.finish());
        outcome_value(py, &out)
    }
}
