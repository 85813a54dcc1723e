//! `Scenarios` and `ReplayResults`: the scenario format decoded by the engine, replayed by
//! the engine, compared by the engine; Python only reads and writes the files.

use super::convert::{to_py, to_value};
use super::errors::{to_py_err, IntoPy};
use crate::decode::Subject;
use crate::error::{EngineError, Result};
use crate::scenario::{
    compare, replay_all, replay_each, results_meta, scenarios_from, Host, Reference, Scenario,
};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use serde_json::Value;

/// JSON text as data; a syntax error names the line and column.
pub fn parse_json(text: &str, what: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| {
        let text = e.to_string();
        let why = match text.strip_prefix("recursion limit exceeded") {
            Some(at) => format!("nested too deeply{at}"),
            None => text,
        };
        EngineError::scenario(None, format!("{what}: not valid JSON: {why}"))
    })
}

#[pyclass(module = "pymm._engine", name = "Scenarios", frozen)]
pub struct PyScenarios {
    pub inner: Vec<Scenario>,
}

/// A host whose state file lives where the Python caller keeps it.
struct PyHost<'py> {
    restart_from: Option<Bound<'py, PyAny>>,
    after: Option<Bound<'py, PyAny>>,
    failed: Option<PyErr>,
}

impl PyHost<'_> {
    fn fail(&mut self, e: PyErr) -> EngineError {
        let text = e.to_string();
        self.failed = Some(e);
        EngineError::scenario(None, text)
    }
}

impl Host for PyHost<'_> {
    fn restart_from(&mut self, text: &str) -> Result<(String, String)> {
        let Some(f) = self.restart_from.clone() else {
            return Ok((text.to_string(), "memory_manager_state".into()));
        };
        match f
            .call1((text,))
            .and_then(|r| r.extract::<(String, String)>())
        {
            Ok(r) => Ok(r),
            Err(e) => Err(self.fail(e)),
        }
    }
    fn after(&mut self, text: &str) -> Result<()> {
        let Some(f) = self.after.clone() else {
            return Ok(());
        };
        match f.call1((text,)) {
            Ok(_) => Ok(()),
            Err(e) => Err(self.fail(e)),
        }
    }
}

#[pymethods]
impl PyScenarios {
    /// Scenarios from plain data: `{"scenarios": [...]}`, or results that embed them.
    #[new]
    fn new(data: &Bound<'_, PyAny>) -> PyResult<Self> {
        let v = to_value(data, Subject::Scenario)?;
        Ok(PyScenarios {
            inner: scenarios_from(&v).py()?,
        })
    }

    /// Scenarios from a file's JSON text; `source` names the file in errors.
    #[staticmethod]
    #[pyo3(signature = (text, source="scenarios"))]
    fn from_json(text: &str, source: &str) -> PyResult<Self> {
        let v = parse_json(text, source).py()?;
        let inner = scenarios_from(&v)
            .map_err(|e| {
                let msg = format!("{source}: {}", e.message());
                e.with_message(msg)
            })
            .py()?;
        Ok(PyScenarios { inner })
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    #[getter]
    fn names(&self) -> Vec<String> {
        self.inner.iter().map(|s| s.name.clone()).collect()
    }

    #[getter]
    fn descriptions(&self) -> Vec<String> {
        self.inner.iter().map(|s| s.description.clone()).collect()
    }

    /// Scenario `index`'s operations, by their names in the format (`admit`, `remove`, ...).
    fn steps(&self, index: usize) -> PyResult<Vec<&'static str>> {
        let sc = self.inner.get(index).ok_or_else(|| {
            to_py_err(EngineError::scenario(
                None,
                format!("no scenario at {index}"),
            ))
        })?;
        Ok(sc.steps.iter().map(|s| s.name()).collect())
    }

    /// Scenario `index`'s admitted pods in order, each with its fake provider's hints (None
    /// without `useFakeProvider`): the batch `pymm plan --scenario` places.
    fn admits<'py>(
        &self,
        py: Python<'py>,
        index: usize,
    ) -> PyResult<Vec<(super::pod::PyPod, Bound<'py, PyAny>)>> {
        let sc = self.inner.get(index).ok_or_else(|| {
            to_py_err(EngineError::scenario(
                None,
                format!("no scenario at {index}"),
            ))
        })?;
        sc.steps
            .iter()
            .filter_map(|s| match s {
                crate::scenario::Step::Admit { pod, hints, .. } => Some((pod, hints)),
                _ => None,
            })
            .map(|(pod, hints)| {
                let hints = to_py(py, hints.as_ref().unwrap_or(&serde_json::Value::Null))?;
                Ok((
                    super::pod::PyPod {
                        inner: std::sync::Arc::clone(pod),
                    },
                    hints,
                ))
            })
            .collect()
    }

    /// The scenarios at these positions, in this order.
    fn select(&self, indices: Vec<usize>) -> PyResult<PyScenarios> {
        let inner = indices
            .iter()
            .map(|i| {
                self.inner.get(*i).cloned().ok_or_else(|| {
                    to_py_err(EngineError::scenario(None, format!("no scenario at {i}")))
                })
            })
            .collect::<PyResult<_>>()?;
        Ok(PyScenarios { inner })
    }

    /// Scenario `index`'s machine (the engine's description) and configuration (the engine's
    /// keys, `kubelet_version` applying when it names none).
    #[pyo3(signature = (index, kubelet_version=None))]
    fn setup<'py>(
        &self,
        py: Python<'py>,
        index: usize,
        kubelet_version: Option<&str>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        let sc = self.inner.get(index).ok_or_else(|| {
            to_py_err(EngineError::scenario(
                None,
                format!("no scenario at {index}"),
            ))
        })?;
        Ok((
            to_py(py, &sc.machine)?,
            to_py(py, &sc.config_value(kubelet_version))?,
        ))
    }

    /// Replays every scenario. `restart_from(text) -> (text, path)` keeps the state file where
    /// a restart reads it back; `after(text)` is told the state file after every operation;
    /// `progress(done)` how many scenarios are done.
    #[pyo3(signature = (kubelet_version=None, restart_from=None, after=None, progress=None))]
    fn replay<'py>(
        &self,
        kubelet_version: Option<&str>,
        restart_from: Option<Bound<'py, PyAny>>,
        after: Option<Bound<'py, PyAny>>,
        progress: Option<Bound<'py, PyAny>>,
    ) -> PyResult<PyReplayResults> {
        let mut host = PyHost {
            restart_from,
            after,
            failed: None,
        };
        let mut progress_failed: Option<PyErr> = None;
        let mut tick = |n: usize| {
            if let (Some(cb), None) = (&progress, &progress_failed) {
                if let Err(e) = cb.call1((n,)) {
                    progress_failed = Some(e);
                }
            }
        };
        let out = replay_all(&self.inner, kubelet_version, &mut host, &mut tick);
        if let Some(e) = host.failed.take() {
            return Err(e);
        }
        if let Some(e) = progress_failed {
            return Err(e);
        }
        Ok(PyReplayResults { inner: out.py()? })
    }

    /// Replays every scenario, handing each one's results to `each(index, result)` as soon
    /// as it is done (a long replay need not hold them all); hosts as in `replay`.
    #[pyo3(signature = (each, kubelet_version=None, restart_from=None, after=None))]
    fn replay_each<'py>(
        &self,
        py: Python<'py>,
        each: Bound<'py, PyAny>,
        kubelet_version: Option<&str>,
        restart_from: Option<Bound<'py, PyAny>>,
        after: Option<Bound<'py, PyAny>>,
    ) -> PyResult<()> {
        let mut host = PyHost {
            restart_from,
            after,
            failed: None,
        };
        let mut failed: Option<PyErr> = None;
        let out = replay_each(&self.inner, kubelet_version, &mut host, &mut |i, v| {
            let r = Py::new(py, PyReplayResults { inner: v })
                .map_err(|e| EngineError::scenario(None, e.to_string()))?;
            each.call1((i, r)).map(|_| ()).map_err(|e| {
                let text = e.to_string();
                failed = Some(e);
                EngineError::scenario(None, text)
            })
        });
        if let Some(e) = host.failed.take().or(failed) {
            return Err(e);
        }
        out.py()
    }

    /// The `meta` a replay's results carry.
    #[staticmethod]
    #[pyo3(signature = (kubelet_version=None))]
    fn meta<'py>(py: Python<'py>, kubelet_version: Option<&str>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &results_meta(kubelet_version))
    }
}

/// A reference file: its text held, each scenario's results parsed when compared.
#[pyclass(module = "pymm._engine", name = "Reference", frozen)]
pub struct PyReference {
    inner: Reference,
}

#[pymethods]
impl PyReference {
    #[staticmethod]
    #[pyo3(signature = (text, source="results"))]
    fn from_json(text: &str, source: &str) -> PyResult<Self> {
        Ok(PyReference {
            inner: Reference::parse(text, source).py()?,
        })
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    #[getter]
    fn meta<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.inner.meta)
    }

    /// Every result as Python data.
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.inner.to_value())
    }

    /// The kubelet whose results these are (`"1.38"`, `"1.32"`, `"1.26"`), from the meta.
    #[getter]
    fn kubelet_version(&self) -> Option<&'static str> {
        self.inner.kubelet_version()
    }

    /// The reference's scenarios that are not among `names`, as differences.
    fn missing(&self, names: Vec<String>) -> Vec<String> {
        self.inner.missing(names.iter().map(String::as_str))
    }
}

/// Replay results in the reference format (all of a replay's, or, from `replay_each`, one
/// scenario's).
#[pyclass(module = "pymm._engine", name = "ReplayResults", frozen)]
pub struct PyReplayResults {
    pub inner: Value,
}

/// Converts op results, each state file part that equals the previous operation's being the
/// same Python object: a long replay changes a node or two and one pod per operation, so the
/// results' memory grows with what changed, not with the operations times the state.
struct Shared<'py> {
    py: Python<'py>,
    prev: Option<(Value, Bound<'py, PyAny>)>,
    parts: std::collections::HashMap<(String, String), (Value, Bound<'py, PyAny>)>,
}

impl<'py> Shared<'py> {
    fn checkpoint(&mut self, v: &Value) -> PyResult<Bound<'py, PyAny>> {
        if let Some((pv, po)) = &self.prev {
            if pv == v {
                return Ok(po.clone());
            }
        }
        let Value::Object(map) = v else {
            return to_py(self.py, v);
        };
        let d = PyDict::new(self.py);
        for (k, x) in map {
            let obj = match (k.as_str(), x) {
                ("machineState" | "entries", Value::Object(inner)) => {
                    let sub = PyDict::new(self.py);
                    for (key, part) in inner {
                        let slot = (k.clone(), key.clone());
                        let reuse = self
                            .parts
                            .get(&slot)
                            .filter(|(pv, _)| pv == part)
                            .map(|(_, o)| o.clone());
                        let o = match reuse {
                            Some(o) => o,
                            None => {
                                let o = to_py(self.py, part)?;
                                self.parts.insert(slot, (part.clone(), o.clone()));
                                o
                            }
                        };
                        sub.set_item(key, o)?;
                    }
                    sub.into_any()
                }
                _ => to_py(self.py, x)?,
            };
            d.set_item(k, obj)?;
        }
        let o = d.into_any();
        self.prev = Some((v.clone(), o.clone()));
        Ok(o)
    }
}

impl PyReplayResults {
    /// A whole replay (`{"meta", "results": [scenario...]}`), not one scenario's results.
    fn is_whole_replay(&self) -> bool {
        self.inner.get("meta").is_some()
    }
}

#[pymethods]
impl PyReplayResults {
    /// The results as JSON text (`indent` spaces per level; compact without).
    #[pyo3(signature = (indent=None))]
    fn to_json(&self, indent: Option<usize>) -> PyResult<String> {
        let out = match indent {
            None => serde_json::to_string(&self.inner),
            Some(n) => {
                let pad = vec![b' '; n];
                let mut buf = Vec::new();
                let fmt = serde_json::ser::PrettyFormatter::with_indent(&pad);
                let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
                serde::Serialize::serialize(&self.inner, &mut ser)
                    .map(|()| String::from_utf8_lossy(&buf).into_owned())
            }
        };
        out.map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))
    }

    /// The results as Python data.
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let out = PyDict::new(py);
        let mut shared = Shared {
            py,
            prev: None,
            parts: std::collections::HashMap::new(),
        };
        for (k, v) in self.inner.as_object().into_iter().flatten() {
            if k != "results" {
                out.set_item(k, to_py(py, v)?)?;
                continue;
            }
            let runs = PyList::empty(py);
            for run in v.as_array().into_iter().flatten() {
                let r = PyDict::new(py);
                for (rk, rv) in run.as_object().into_iter().flatten() {
                    if rk != "results" {
                        r.set_item(rk, to_py(py, rv)?)?;
                        continue;
                    }
                    let ops = PyList::empty(py);
                    for op in rv.as_array().into_iter().flatten() {
                        let o = PyDict::new(py);
                        for (ok, ov) in op.as_object().into_iter().flatten() {
                            if ok == "checkpoint" {
                                o.set_item(ok, shared.checkpoint(ov)?)?;
                            } else {
                                o.set_item(ok, to_py(py, ov)?)?;
                            }
                        }
                        ops.append(o)?;
                    }
                    r.set_item(rk, ops)?;
                }
                runs.append(r)?;
            }
            out.set_item(k, runs)?;
        }
        Ok(out.into_any())
    }

    /// The differences from `reference` under SCENARIOS.md's comparison rules (one
    /// scenario's results are compared with the reference's for that scenario).
    fn compare(&self, reference: &PyReference) -> Vec<String> {
        match self.inner.get("results").and_then(Value::as_array) {
            Some(all) if self.is_whole_replay() => {
                let mut diffs: Vec<String> = all
                    .iter()
                    .flat_map(|r| reference.inner.compare_one(r))
                    .collect();
                let names: Vec<&str> = all.iter().filter_map(|r| r["name"].as_str()).collect();
                diffs.extend(reference.inner.missing(names));
                diffs
            }
            _ => reference.inner.compare_one(&self.inner),
        }
    }

    /// The scenario's name (for one scenario's results).
    #[getter]
    fn name(&self) -> Option<&str> {
        self.inner.get("name").and_then(Value::as_str)
    }

    /// `(scenarios, ops, admitted, rejected, refused at setup)`.
    #[getter]
    fn counts(&self) -> (usize, usize, usize, usize, usize) {
        let runs = if self.is_whole_replay() {
            self.inner["results"]
                .as_array()
                .map_or(&[][..], Vec::as_slice)
        } else {
            std::slice::from_ref(&self.inner)
        };
        let ops: Vec<&Value> = runs
            .iter()
            .flat_map(|r| r["results"].as_array().into_iter().flatten())
            .collect();
        let admit = |b: bool| {
            ops.iter()
                .filter(|o| o.get("admit") == Some(&Value::Bool(b)))
                .count()
        };
        let setup = runs
            .iter()
            .filter(|r| r.get("setupError").is_some_and(|e| !e.is_null()))
            .count();
        (runs.len(), ops.len(), admit(true), admit(false), setup)
    }
}

/// Compares two result sets given as plain data (for results built or edited in Python).
#[pyfunction]
pub fn compare_results(
    mine: &Bound<'_, PyAny>,
    reference: &Bound<'_, PyAny>,
) -> PyResult<Vec<String>> {
    let a = to_value(mine, Subject::Scenario)?;
    let b = to_value(reference, Subject::Scenario)?;
    Ok(compare(&a, &b))
}
