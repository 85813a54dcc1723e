//! Pods as the memory manager sees them: containers with requests and limits, QoS class, and
//! the sizes a container or a whole pod asks for (init and sidecar rules included).

use crate::error::{EngineError, Result};
use crate::quantity::Quantity;
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub struct Container {
    pub name: String,
    pub requests: BTreeMap<String, Quantity>,
    pub limits: BTreeMap<String, Quantity>,
    /// `restartPolicy: Always` on an init container: a sidecar.
    pub restartable: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pod {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    pub containers: Vec<Container>,
    pub init_containers: Vec<Container>,
    /// `spec.resources` is set: the static policy leaves such pods alone (kubelet >= 1.32).
    pub pod_level_resources: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl QosClass {
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }
}

/// Requested bytes per resource (`memory`, `hugepages-*`).
pub type Requested = BTreeMap<String, u64>;

fn is_memory_resource(name: &str) -> bool {
    name == "memory" || name.starts_with("hugepages-")
}

fn pod_err(msg: String) -> EngineError {
    EngineError::Pod(msg)
}

fn quantities(v: Option<&Value>, path: &str) -> Result<BTreeMap<String, Quantity>> {
    let mut out = BTreeMap::new();
    match v {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, q) in m {
                let text = match q {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    other => {
                        return Err(pod_err(format!(
                            "{path}.{k}: expected a quantity, got {other}"
                        )))
                    }
                };
                let parsed = Quantity::parse(&text)
                    .map_err(|e| pod_err(format!("{path}.{k}: {}", e.message())))?;
                out.insert(k.clone(), parsed);
            }
        }
        Some(other) => return Err(pod_err(format!("{path}: expected a mapping, got {other}"))),
    }
    Ok(out)
}

fn get<'a>(m: &'a serde_json::Map<String, Value>, snake: &str, camel: &str) -> Option<&'a Value> {
    m.get(snake).or_else(|| m.get(camel))
}

fn container_from(v: &Value, path: &str) -> Result<Container> {
    let Value::Object(m) = v else {
        return Err(pod_err(format!("{path}: expected a mapping")));
    };
    let name = match m.get("name") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(pod_err(format!("{path}.name: a container needs a name"))),
    };
    let restart = get(m, "restart_policy", "restartPolicy");
    let restartable = matches!(restart, Some(Value::String(s)) if s == "Always");
    Ok(Container {
        requests: quantities(m.get("requests"), &format!("{path}.requests"))?,
        limits: quantities(m.get("limits"), &format!("{path}.limits"))?,
        name,
        restartable,
    })
}

impl Pod {
    /// Builds a pod from plain data: `{uid, name?, namespace?, containers: [...],
    /// init_containers|initContainers: [...], has_pod_level_resources?}` where each container is
    /// `{name, requests: {res: qty}, limits: {res: qty}, restart_policy|restartPolicy?}`.
    pub fn from_value(v: &Value) -> Result<Pod> {
        let Value::Object(m) = v else {
            return Err(pod_err("a pod must be a mapping".into()));
        };
        let s = |k: &str| match m.get(k) {
            Some(Value::String(s)) => s.clone(),
            _ => String::new(),
        };
        let list = |snake: &str, camel: &str| -> Result<Vec<Container>> {
            match get(m, snake, camel) {
                None | Some(Value::Null) => Ok(vec![]),
                Some(Value::Array(a)) => a
                    .iter()
                    .enumerate()
                    .map(|(i, c)| container_from(c, &format!("{camel}[{i}]")))
                    .collect(),
                Some(_) => Err(pod_err(format!("{camel}: expected a list"))),
            }
        };
        let pod = Pod {
            uid: s("uid"),
            name: s("name"),
            namespace: s("namespace"),
            containers: list("containers", "containers")?,
            init_containers: list("init_containers", "initContainers")?,
            pod_level_resources: matches!(
                get(m, "has_pod_level_resources", "hasPodLevelResources"),
                Some(Value::Bool(true))
            ),
        };
        let mut names: Vec<&str> = pod.all_containers().map(|c| c.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(pod_err(format!(
                "pod {:?}: container name {:?} is used twice",
                pod.uid, w[0]
            )));
        }
        Ok(pod)
    }

    /// Init containers first, then app containers: the order the kubelet admits them in.
    pub fn all_containers(&self) -> impl Iterator<Item = &Container> {
        self.init_containers.iter().chain(self.containers.iter())
    }

    pub fn container(&self, name: &str) -> Option<&Container> {
        self.all_containers().find(|c| c.name == name)
    }

    pub fn is_init_container(&self, name: &str) -> bool {
        self.init_containers.iter().any(|c| c.name == name)
    }

    /// `GetPodQOS`: only cpu and memory count, summed over all containers.
    pub fn qos_class(&self) -> QosClass {
        let mut requests: BTreeMap<&str, Quantity> = BTreeMap::new();
        let mut limits: BTreeMap<&str, Quantity> = BTreeMap::new();
        let mut guaranteed = true;
        for c in self.containers.iter().chain(self.init_containers.iter()) {
            for (name, q) in &c.requests {
                if (name == "cpu" || name == "memory") && q.is_positive() {
                    let e = requests.entry(name).or_insert(Quantity::ZERO);
                    *e = e.add(q);
                }
            }
            let mut found = (false, false);
            for (name, q) in &c.limits {
                if (name == "cpu" || name == "memory") && q.is_positive() {
                    if name == "cpu" {
                        found.0 = true;
                    } else {
                        found.1 = true;
                    }
                    let e = limits.entry(name).or_insert(Quantity::ZERO);
                    *e = e.add(q);
                }
            }
            if found != (true, true) {
                guaranteed = false;
            }
        }
        if requests.is_empty() && limits.is_empty() {
            return QosClass::BestEffort;
        }
        if guaranteed && requests.iter().any(|(n, r)| limits.get(n) != Some(r)) {
            guaranteed = false;
        }
        if guaranteed && requests.len() == limits.len() {
            QosClass::Guaranteed
        } else {
            QosClass::Burstable
        }
    }
}

/// `getRequestedResources`: the container's memory and hugepage requests (limits are never
/// read).
pub fn container_requested(c: &Container) -> Result<Requested> {
    let mut out = Requested::new();
    for (name, q) in &c.requests {
        if !is_memory_resource(name) {
            continue;
        }
        let v = q.as_i64().ok_or_else(|| {
            EngineError::Allocation("[memorymanager] failed to represent quantity as int64".into())
        })?;
        // Go converts with uint64(int64).
        out.insert(name.clone(), v as u64);
    }
    Ok(out)
}

/// `getPodRequestedResources`: per resource, the larger of (app containers + sidecars) and the
/// biggest regular init container (plus the sidecars started before it). With `sidecars`
/// false (kubelet 1.26) every init container is a regular one.
pub fn pod_requested(pod: &Pod, sidecars: bool) -> Result<Requested> {
    let mut init_max = Requested::new();
    let mut sidecar_sum = Requested::new();
    for c in &pod.init_containers {
        let req = container_requested(c)?;
        for (name, v) in req {
            if sidecars && c.restartable {
                *sidecar_sum.entry(name).or_default() += v;
            } else {
                let total = sidecar_sum.get(&name).copied().unwrap_or(0) + v;
                let e = init_max.entry(name).or_default();
                if total > *e {
                    *e = total;
                }
            }
        }
    }
    let mut app = Requested::new();
    for c in &pod.containers {
        for (name, v) in container_requested(c)? {
            *app.entry(name).or_default() += v;
        }
    }
    for (name, v) in app.iter_mut() {
        *v += sidecar_sum.get(name).copied().unwrap_or(0);
        let i = init_max.get(name).copied().unwrap_or(0);
        if i > *v {
            *v = i;
        }
    }
    Ok(app)
}
