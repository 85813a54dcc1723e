//! `Op`: one lifecycle operation, built by the Python drivers and applied by `Engine.apply`
//! (what each one means is `crate::lifecycle`'s, not this file's).

use super::convert::to_value;
use super::machine::machine_from;
use super::pod::PyPod;
use crate::config::Config;
use crate::decode::Subject;
use crate::lifecycle::{Op, Restart};
use pyo3::prelude::*;
use std::sync::Arc;

#[pyclass(module = "pymm._engine", name = "Op", frozen)]
pub struct PyOp {
    pub inner: Op,
}

#[pymethods]
impl PyOp {
    /// Admission (and, with `start`, every container starts). `hints`: other providers'
    /// answers, `[{"name", "containers", "pod"}]`.
    #[staticmethod]
    #[pyo3(signature = (pod, hints=None, start=true, trace=false))]
    fn admit(
        pod: &PyPod,
        hints: Option<&Bound<'_, PyAny>>,
        start: bool,
        trace: bool,
    ) -> PyResult<Self> {
        let hints = match hints {
            Some(h) if !h.is_none() => Some(to_value(h, Subject::Config)?),
            _ => None,
        };
        Ok(PyOp {
            inner: Op::Admit {
                pod: Arc::clone(&pod.inner),
                hints,
                start,
                trace,
            },
        })
    }

    /// Admission on the nodes given per container (`{container: [node ids]}`), refused with
    /// `PlacementError` where the kubelet's rules would not reach them.
    #[staticmethod]
    #[pyo3(signature = (pod, targets, hints=None, start=true))]
    fn admit_on(
        pod: &PyPod,
        targets: std::collections::BTreeMap<String, Vec<i64>>,
        hints: Option<&Bound<'_, PyAny>>,
        start: bool,
    ) -> PyResult<Self> {
        let hints = match hints {
            Some(h) if !h.is_none() => Some(to_value(h, Subject::Config)?),
            _ => None,
        };
        Ok(PyOp {
            inner: Op::AdmitOn {
                pod: Arc::clone(&pod.inner),
                targets,
                hints,
                start,
            },
        })
    }

    /// Every container of an admitted pod starts (the kubelet's AddContainer, in order).
    #[staticmethod]
    fn start(pod_uid: String) -> Self {
        PyOp {
            inner: Op::Start { pod_uid },
        }
    }

    /// The kubelet's RemoveContainer: a started container stops; an unknown one is no error.
    #[staticmethod]
    fn stop(pod_uid: String, container: String) -> Self {
        PyOp {
            inner: Op::Stop { pod_uid, container },
        }
    }

    /// Every container of the pod stops, and the pod is no longer active.
    #[staticmethod]
    fn stop_pod(pod_uid: String) -> Self {
        PyOp {
            inner: Op::StopPod { pod_uid },
        }
    }

    /// An operator gives the memory back, started or not.
    #[staticmethod]
    #[pyo3(signature = (pod_uid, container=None, missing_ok=false))]
    fn release(pod_uid: String, container: Option<String>, missing_ok: bool) -> Self {
        PyOp {
            inner: Op::Release {
                pod_uid,
                container,
                missing_ok,
            },
        }
    }

    /// An in-place resize to `pod` (the pod as desired; the uid of an admitted pod).
    #[staticmethod]
    fn resize(pod: &PyPod) -> Self {
        PyOp {
            inner: Op::Resize {
                pod: Arc::clone(&pod.inner),
            },
        }
    }

    /// A restart from the state file's text, possibly on another machine or configuration.
    #[staticmethod]
    #[pyo3(signature = (checkpoint, state_path, machine=None, config=None))]
    fn restart(
        checkpoint: String,
        state_path: String,
        machine: Option<&Bound<'_, PyAny>>,
        config: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let machine = machine.map(machine_from).transpose()?;
        let config = match config {
            Some(c) => Some(
                Config::from_value(&to_value(c, Subject::Config)?)
                    .map_err(super::errors::to_py_err)?,
            ),
            None => None,
        };
        Ok(PyOp {
            inner: Op::Restart(Box::new(Restart {
                checkpoint,
                state_path,
                machine,
                config,
            })),
        })
    }

    #[getter]
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    #[getter]
    fn pod_uid(&self) -> Option<&str> {
        self.inner.pod_uid()
    }

    fn __repr__(&self) -> String {
        match self.inner.pod_uid() {
            Some(uid) => format!("<Op {} {uid:?}>", self.inner.name()),
            None => format!("<Op {}>", self.inner.name()),
        }
    }
}
