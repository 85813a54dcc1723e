//! Python objects <-> plain data. Every decoder in the engine reads `serde_json::Value`; this
//! file is the only place Python objects become one, with a depth limit (a 100,000-deep
//! structure is an error, not a stack overflow) and exact integers (no silent float or
//! 64-bit wrap-around).

use super::errors::to_py_err;
use crate::decode::Subject;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyMapping, PyString, PyTuple};
use serde_json::{Map, Number, Value};

/// Deeper than any Pod manifest, machine or configuration (a Pod manifest nests about 8 deep).
const MAX_DEPTH: usize = 64;

/// A Python object as plain data; a failure raises the error class of `subject`.
pub fn to_value(obj: &Bound<'_, PyAny>, subject: Subject) -> PyResult<Value> {
    convert(obj, subject, "", 0)
}

/// Whether `v`, parsed from JSON text by serde, is the value [`to_value`] makes of what
/// Python's `json` parses from the same text: integers only (serde reads an integer wider
/// than 64 bits as a float, Python as an int that [`to_value`] refuses), and no deeper than
/// [`to_value`] goes.
pub fn reads_as_python(v: &Value) -> bool {
    fn within(v: &Value, depth: usize) -> bool {
        if depth > MAX_DEPTH {
            return false;
        }
        match v {
            Value::Number(n) => n.is_i64() || n.is_u64(),
            Value::Array(items) => items.iter().all(|i| within(i, depth + 1)),
            Value::Object(m) => m.values().all(|i| within(i, depth + 1)),
            Value::Null | Value::Bool(_) | Value::String(_) => true,
        }
    }
    within(v, 0)
}

fn fail(subject: Subject, path: &str, message: String) -> PyErr {
    to_py_err(subject.error(path, message))
}

fn key_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn convert(obj: &Bound<'_, PyAny>, subject: Subject, path: &str, depth: usize) -> PyResult<Value> {
    if depth > MAX_DEPTH {
        return Err(fail(
            subject,
            path,
            format!("nested more than {MAX_DEPTH} levels deep"),
        ));
    }
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Value::String(s.to_str()?.to_string()));
    }
    // bool before int: it is an int subclass in Python, but never a number in the data.
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if let Ok(i) = obj.cast::<PyInt>() {
        if let Ok(v) = i.extract::<i64>() {
            return Ok(Value::from(v));
        }
        if let Ok(v) = i.extract::<u64>() {
            return Ok(Value::from(v));
        }
        return Err(fail(
            subject,
            path,
            format!("number {i} is out of range (more than 64 bits)"),
        ));
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        let v = f.value();
        return Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| fail(subject, path, format!("expected a finite number, got {v}")));
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        let mut m = Map::with_capacity(d.len());
        for (k, v) in d.iter() {
            let key = mapping_key(&k, subject, path)?;
            let at = key_path(path, &key);
            m.insert(key, convert(&v, subject, &at, depth + 1)?);
        }
        return Ok(Value::Object(m));
    }
    if let Ok(l) = obj.cast::<PyList>() {
        return sequence(l.iter(), subject, path, depth);
    }
    if let Ok(t) = obj.cast::<PyTuple>() {
        return sequence(t.iter(), subject, path, depth);
    }
    if let Ok(mp) = obj.cast::<PyMapping>() {
        let mut m = Map::new();
        for item in mp.items()?.iter() {
            let (k, v): (Bound<'_, PyAny>, Bound<'_, PyAny>) = item.extract()?;
            let key = mapping_key(&k, subject, path)?;
            let at = key_path(path, &key);
            m.insert(key, convert(&v, subject, &at, depth + 1)?);
        }
        return Ok(Value::Object(m));
    }
    let name = obj.get_type().name()?.to_string();
    Err(fail(
        subject,
        path,
        format!("expected plain data (dict, list, str, int, float, bool, None), got {name}"),
    ))
}

fn mapping_key(k: &Bound<'_, PyAny>, subject: Subject, path: &str) -> PyResult<String> {
    match k.cast::<PyString>() {
        Ok(s) => Ok(s.to_str()?.to_string()),
        Err(_) => Err(fail(
            subject,
            path,
            format!("mapping keys must be strings, got {}", k.repr()?),
        )),
    }
}

fn sequence<'py>(
    items: impl Iterator<Item = Bound<'py, PyAny>>,
    subject: Subject,
    path: &str,
    depth: usize,
) -> PyResult<Value> {
    items
        .enumerate()
        .map(|(i, v)| convert(&v, subject, &format!("{path}[{i}]"), depth + 1))
        .collect::<PyResult<Vec<_>>>()
        .map(Value::Array)
}

/// Plain data as Python objects.
pub fn to_py<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    pythonize::pythonize(py, v).map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))
}
