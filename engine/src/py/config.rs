//! The configuration's one set of choices and defaults, for the CLI and other front ends.

use super::convert::{to_py, to_value};
use super::errors::IntoPy;
use crate::config::{schema, size, Config};
use crate::decode::Subject;
use pyo3::prelude::*;

/// Every configuration key with its default and, for a key with a fixed set of values, the
/// choices: `{key: {"default": ..., "choices": [...]}}`.
#[pyfunction]
pub fn config_schema(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    to_py(py, &schema())
}

/// The effective configuration of the keys given (the rest defaulted), checked as the
/// manager checks it.
#[pyfunction]
pub fn decode_config<'py>(
    py: Python<'py>,
    config: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let c = Config::from_value(&to_value(config, Subject::Config)?).py()?;
    to_py(py, &c.to_value())
}

/// The concrete kubelet version a configuration recorded by an earlier pymm names: there,
/// `latest` meant 1.32 (the newest behaviour of its day).
#[pyfunction]
pub fn recorded_kubelet_version(text: &str) -> PyResult<&'static str> {
    crate::version::KubeletVersion::parse_recorded(text)
        .map(crate::version::KubeletVersion::as_str)
        .py()
}

/// Bytes of a size (a drift tolerance): a quantity, zero or more, within 64 bits.
#[pyfunction]
pub fn parse_size(text: &str) -> PyResult<u64> {
    size(text).py()
}
