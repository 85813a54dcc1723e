//! `Pod`: a pod decoded and checked once by the engine, shared (not copied) by every
//! admission that uses it.

use super::convert::{to_py, to_value};
use super::errors::IntoPy;
use crate::decode::Subject;
use crate::error::EngineError;
use crate::request::{
    check_unique_uids, container_requested, pod_requested, Container, Pod, PodResources, Rules,
};
use pyo3::prelude::*;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

#[pyclass(module = "pymm._engine", name = "Pod", frozen)]
pub struct PyPod {
    pub inner: Arc<Pod>,
}

fn list(m: &BTreeMap<String, crate::quantity::Quantity>) -> Map<String, Value> {
    m.iter()
        .map(|(k, q)| (k.clone(), json!(q.to_string())))
        .collect()
}

fn resources_value(r: &PodResources) -> Value {
    json!({"requests": list(&r.requests), "limits": list(&r.limits)})
}

fn container_value(c: &Container) -> Value {
    json!({
        "name": c.name,
        "requests": list(&c.requests),
        "limits": list(&c.limits),
        "restart_policy": if c.restartable { Some("Always") } else { None },
    })
}

#[pymethods]
impl PyPod {
    /// A pod from plain data (`{uid, containers: [...], init_containers: [...], ...}`),
    /// checked by the API server's rules, or with `kubelet` as the kubelet is handed it.
    #[new]
    #[pyo3(signature = (spec, kubelet=false))]
    fn new(spec: &Bound<'_, PyAny>, kubelet: bool) -> PyResult<Self> {
        let v = to_value(spec, Subject::Pod)?;
        let rules = if kubelet {
            Rules::Kubelet
        } else {
            Rules::ApiServer
        };
        Ok(PyPod {
            inner: Arc::new(Pod::from_value_by(&v, rules).py()?),
        })
    }

    /// A pod from a Kubernetes Pod manifest; `defaults` applies the API server's defaulting.
    #[staticmethod]
    #[pyo3(signature = (manifest, defaults=true))]
    fn from_manifest(manifest: &Bound<'_, PyAny>, defaults: bool) -> PyResult<Self> {
        let v = to_value(manifest, Subject::Pod)?;
        if let Some(k @ ("List" | "PodList")) = v.get("kind").and_then(|k| k.as_str()) {
            return Err(super::errors::to_py_err(EngineError::pod(
                Some("kind"),
                format!("expected 'Pod', got '{k}'; use load_pods() for a List"),
            )));
        }
        let mut pods = Pod::from_manifest(&v, defaults).py()?;
        Ok(PyPod {
            inner: Arc::new(pods.remove(0)),
        })
    }

    #[getter]
    fn uid(&self) -> &str {
        &self.inner.uid
    }
    #[getter]
    fn name(&self) -> &str {
        &self.inner.name
    }
    #[getter]
    fn namespace(&self) -> &str {
        &self.inner.namespace
    }
    #[getter]
    fn qos_class(&self) -> &'static str {
        self.inner.qos_class().as_str()
    }
    /// Container names, init containers first.
    #[getter]
    fn container_names(&self) -> Vec<String> {
        self.inner
            .all_containers()
            .map(|c| c.name.clone())
            .collect()
    }
    #[getter]
    fn annotations(&self) -> BTreeMap<String, String> {
        self.inner.annotations.clone()
    }
    /// Whether the pod sets pod-level resources (`spec.resources`).
    #[getter]
    fn has_pod_level_resources(&self) -> bool {
        self.inner.has_pod_level_resources()
    }

    /// The pod as the API server stores it after its defaulting.
    fn with_defaults(&self) -> PyResult<PyPod> {
        Ok(PyPod {
            inner: Arc::new(self.inner.with_defaults().py()?),
        })
    }

    /// Requested bytes per memory resource: per container, or for the pod (`None`).
    #[pyo3(signature = (container=None, sidecars=true))]
    fn requested(
        &self,
        container: Option<&str>,
        sidecars: bool,
    ) -> PyResult<BTreeMap<String, u64>> {
        match container {
            Some(c) => container_requested(self.inner.require_container(c).py()?).py(),
            None => pod_requested(&self.inner, sidecars).py(),
        }
    }

    /// The pod as plain data in the engine's shape (quantities in canonical text).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let p = &self.inner;
        let v = json!({
            "uid": p.uid,
            "name": p.name,
            "namespace": p.namespace,
            "containers": p.containers.iter().map(container_value).collect::<Vec<_>>(),
            "init_containers": p.init_containers.iter().map(container_value).collect::<Vec<_>>(),
            "resources": resources_value(&p.resources),
            "annotations": p.annotations,
        });
        to_py(py, &v)
    }
}

/// The pods of a Kubernetes object (a Pod, or a List/PodList of them).
#[pyfunction]
#[pyo3(signature = (manifest, defaults=true))]
pub fn pods_from_manifest(manifest: &Bound<'_, PyAny>, defaults: bool) -> PyResult<Vec<PyPod>> {
    let v = to_value(manifest, Subject::Pod)?;
    Ok(Pod::from_manifest(&v, defaults)
        .py()?
        .into_iter()
        .map(|p| PyPod { inner: Arc::new(p) })
        .collect())
}

/// The pods of a Kubernetes object given as JSON text, read in one call (the agent's hot
/// path: no Python objects between the text and the pods). `None` when the text is anything
/// but JSON that reads exactly as Python's `json` and [`pods_from_manifest`] would read it: a
/// key given twice, a syntax error, a value that is not an object, a float or an integer
/// wider than 64 bits, nesting deeper than the conversion allows. The caller then takes that
/// slower path, which says what is wrong in its own words.
#[pyfunction]
#[pyo3(signature = (text, defaults=true))]
pub fn pods_from_json(text: &str, defaults: bool) -> PyResult<Option<Vec<PyPod>>> {
    if crate::decode::first_duplicate_key(text).is_some() {
        return Ok(None);
    }
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return Ok(None);
    };
    if !v.is_object() || !super::convert::reads_as_python(&v) {
        return Ok(None);
    }
    Ok(Some(
        Pod::from_manifest(&v, defaults)
            .py()?
            .into_iter()
            .map(|p| PyPod { inner: Arc::new(p) })
            .collect(),
    ))
}

/// Refuses a pod uid given twice among `pods`; `labels` say where each pod was read
/// (default: its position).
#[pyfunction]
#[pyo3(name = "check_unique_uids", signature = (pods, labels=None))]
pub fn check_unique_uids_of(
    pods: Vec<PyRef<'_, PyPod>>,
    labels: Option<Vec<String>>,
) -> PyResult<()> {
    let labels = labels.unwrap_or_else(|| (0..pods.len()).map(|i| format!("pods[{i}]")).collect());
    if labels.len() != pods.len() {
        return Err(super::errors::to_py_err(EngineError::pod(
            Some("labels"),
            format!(
                "expected one label per pod ({}), got {}",
                pods.len(),
                labels.len()
            ),
        )));
    }
    check_unique_uids(
        pods.iter()
            .map(|p| p.inner.as_ref())
            .zip(labels.iter().map(String::as_str)),
    )
    .py()
}
