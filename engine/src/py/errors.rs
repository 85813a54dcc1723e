//! The one mapping from engine errors to `pymm.errors`: each variant is one class, and its
//! data (which key, which node, both checksums, what differs) become the exception's
//! attributes, so callers dispatch on type and fields, never on message text.

use crate::error::EngineError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use pyo3::{IntoPyObjectExt, PyTypeInfo};

pyo3::import_exception!(pymm.errors, QuantityError);
pyo3::import_exception!(pymm.errors, ReservedMemoryError);
pyo3::import_exception!(pymm.errors, ConfigError);
pyo3::import_exception!(pymm.errors, MachineError);
pyo3::import_exception!(pymm.errors, PodError);
pyo3::import_exception!(pymm.errors, ScenarioError);
pyo3::import_exception!(pymm.errors, AllocationError);
pyo3::import_exception!(pymm.errors, NotFoundError);
pyo3::import_exception!(pymm.errors, PlacementError);
pyo3::import_exception!(pymm.errors, CheckpointCorruptedError);
pyo3::import_exception!(pymm.errors, PolicyMismatchError);
pyo3::import_exception!(pymm.errors, StateMismatchError);

fn build<T: PyTypeInfo>(py: Python<'_>, message: &str, fields: &[(&str, Py<PyAny>)]) -> PyErr {
    let make = || -> PyResult<PyErr> {
        let kwargs = PyDict::new(py);
        for (k, v) in fields {
            kwargs.set_item(k, v)?;
        }
        let e = T::type_object(py).call((message,), Some(&kwargs))?;
        Ok(PyErr::from_value(e))
    };
    make().unwrap_or_else(|e| e)
}

fn any<'py, T: IntoPyObjectExt<'py>>(py: Python<'py>, x: T) -> Py<PyAny> {
    x.into_py_any(py).unwrap_or_else(|_| py.None())
}

pub fn to_py_err(e: EngineError) -> PyErr {
    Python::attach(|py| {
        let m = e.message();
        match &e {
            EngineError::Quantity(_) => build::<QuantityError>(py, m, &[]),
            EngineError::ReservedMemory { node, .. } => {
                build::<ReservedMemoryError>(py, m, &[("node", any(py, *node))])
            }
            EngineError::Config {
                key, suggestion, ..
            } => build::<ConfigError>(
                py,
                m,
                &[
                    ("key", any(py, key.clone())),
                    ("suggestion", any(py, suggestion.clone())),
                ],
            ),
            EngineError::Machine { node, .. } => {
                build::<MachineError>(py, m, &[("node", any(py, *node))])
            }
            EngineError::Pod { field, .. } => {
                build::<PodError>(py, m, &[("field", any(py, field.clone()))])
            }
            EngineError::Scenario { path, .. } => {
                build::<ScenarioError>(py, m, &[("path", any(py, path.clone()))])
            }
            EngineError::Allocation(_) | EngineError::EmptyPodSharedPool(_) => {
                build::<AllocationError>(py, m, &[])
            }
            EngineError::NotFound { pod, container, .. } => build::<NotFoundError>(
                py,
                m,
                &[
                    ("pod_uid", any(py, pod.clone())),
                    ("container", any(py, container.clone())),
                ],
            ),
            EngineError::Placement {
                pod,
                container,
                nodes,
                ..
            } => build::<PlacementError>(
                py,
                m,
                &[
                    ("pod_uid", any(py, pod.clone())),
                    ("container", any(py, container.clone())),
                    ("nodes", any(py, nodes.clone())),
                ],
            ),
            EngineError::CorruptCheckpoint {
                stored,
                computed,
                checksum_field,
                ..
            } => build::<CheckpointCorruptedError>(
                py,
                m,
                &[
                    ("stored_checksum", any(py, *stored)),
                    ("computed_checksum", any(py, *computed)),
                    ("checksum_field", any(py, *checksum_field)),
                ],
            ),
            EngineError::PolicyMismatch {
                configured, stored, ..
            } => build::<PolicyMismatchError>(
                py,
                m,
                &[
                    ("configured_policy", any(py, configured.clone())),
                    ("stored_policy", any(py, stored.clone())),
                ],
            ),
            EngineError::StateMismatch {
                kind,
                details,
                least_drift,
                ..
            } => build::<StateMismatchError>(
                py,
                m,
                &[
                    ("kind", any(py, kind.as_str())),
                    ("details", any(py, details.clone())),
                    ("least_drift_tolerance", any(py, *least_drift)),
                ],
            ),
        }
    })
}

/// `Result<T, EngineError>` -> `PyResult<T>`.
pub trait IntoPy<T> {
    fn py(self) -> PyResult<T>;
}

impl<T> IntoPy<T> for crate::error::Result<T> {
    fn py(self) -> PyResult<T> {
        self.map_err(to_py_err)
    }
}
