//! Text helpers the readers in `pymm/` share.

use crate::decode::first_duplicate_key;
use pyo3::prelude::*;

/// The first key given twice in one object of a JSON text, as `(key, line, column)`.
#[pyfunction]
pub fn json_duplicate_key(text: &str) -> Option<(String, usize, usize)> {
    first_duplicate_key(text)
}
