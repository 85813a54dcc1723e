//! Pods as the memory manager sees them: containers with requests and limits, QoS class, and
//! the sizes a container or a whole pod asks for (init and sidecar rules included).

use crate::decode::{index, join, kind, Obj, Subject};
use crate::error::{EngineError, Result};
use crate::machine::{Tier, TIER_ANNOTATION};
use crate::quantity::Quantity;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

#[derive(Debug, Clone, PartialEq)]
pub struct Container {
    pub name: String,
    pub requests: BTreeMap<String, Quantity>,
    pub limits: BTreeMap<String, Quantity>,
    /// `restartPolicy: Always` on an init container: a sidecar.
    pub restartable: bool,
    /// [`container_requested`], computed once (every hint and Allocate call asks for it).
    pub requested: OnceLock<Requested>,
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
    pub annotations: BTreeMap<String, String>,
    /// The `pymm.io/memory-tier` annotation, checked when the pod is decoded.
    pub tier: Option<Tier>,
    /// [`Pod::qos_class`], computed once (every hint and Allocate call asks for it).
    pub qos: OnceLock<QosClass>,
    /// Container name -> position among init then app containers, for large pods.
    pub index: OnceLock<HashMap<String, usize>>,
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

const P: Subject = Subject::Pod;

/// A resource list (`requests` or `limits`), checked as the API server checks it: quantities
/// parse and are not negative, and a `hugepages-<size>` name has a real size.
fn resource_list(v: Option<(&Value, String)>) -> Result<BTreeMap<String, Quantity>> {
    let mut out = BTreeMap::new();
    let Some((v, path)) = v else {
        return Ok(out);
    };
    let list = match v {
        Value::Object(_) => Obj::new(v, &path, P)?,
        other => {
            return Err(P.error(
                &path,
                format!(
                    "expected a mapping of resource name to quantity, got {}",
                    kind(other)
                ),
            ))
        }
    };
    for (name, q) in list.map {
        let at = list.at(name);
        if name.is_empty() {
            return Err(P.error(&path, "a resource name must not be empty"));
        }
        let text = match q {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            other => return Err(P.error(&at, format!("expected a quantity, got {}", kind(other)))),
        };
        let parsed = Quantity::parse(&text).map_err(|e| P.error(&at, e.message()))?;
        if parsed.is_negative() {
            return Err(P.error(
                &at,
                format!("must be greater than or equal to 0, got {text}"),
            ));
        }
        if let Some(size) = name.strip_prefix("hugepages-") {
            if !Quantity::parse(size).is_ok_and(|q| q.is_positive()) {
                return Err(P.error(
                    &at,
                    format!("{name:?} is not a hugepage resource: the size after \"hugepages-\" must be a quantity such as 2Mi or 1Gi"),
                ));
            }
        }
        out.insert(name.clone(), parsed);
    }
    Ok(out)
}

/// One container. `manifest` reads `resources.requests/limits` (a Pod manifest); otherwise
/// `requests`/`limits` sit on the container (engine and scenario data).
fn container_from(v: &Value, path: &str, manifest: bool, defaults: bool) -> Result<Container> {
    let c = Obj::new(v, path, P)?;
    let name = match c.get("name") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::String(_)) => return Err(c.err("name", "must not be empty")),
        Some(other) => return Err(c.err("name", format!("expected a string, got {}", kind(other)))),
        None => return Err(c.err("name", "required")),
    };
    let (requests, limits, restart) = if manifest {
        let res = c.obj("resources")?;
        let pick = |k: &str| res.as_ref().and_then(|r| r.get(k).map(|v| (v, r.at(k))));
        (pick("requests"), pick("limits"), c.str("restartPolicy")?)
    } else {
        let restart = match c.either("restart_policy", "restartPolicy")? {
            None => None,
            Some((Value::String(s), _)) => Some(s.as_str()),
            Some((other, at)) => {
                return Err(P.error(&at, format!("expected a string, got {}", kind(other))))
            }
        };
        (
            c.get("requests").map(|v| (v, c.at("requests"))),
            c.get("limits").map(|v| (v, c.at("limits"))),
            restart,
        )
    };
    let requests_path = requests.as_ref().map(|(_, p)| p.clone());
    let mut requests = resource_list(requests)?;
    let limits = resource_list(limits)?;
    for (name, limit) in &limits {
        match requests.get(name) {
            Some(r) if r > limit => {
                let at = join(requests_path.as_deref().unwrap_or(path), name);
                return Err(P.error(
                    &at,
                    format!("must be less than or equal to {name} limit of {limit}, got {r}"),
                ));
            }
            None if defaults => {
                // API-server defaulting: a resource with a limit and no request requests it.
                requests.insert(name.clone(), *limit);
            }
            _ => {}
        }
    }
    Ok(Container {
        name,
        requests,
        limits,
        restartable: restart == Some("Always"),
        requested: OnceLock::new(),
    })
}

fn containers_from(
    list: Option<(&Value, String)>,
    manifest: bool,
    defaults: bool,
) -> Result<Vec<Container>> {
    let Some((v, path)) = list else {
        return Ok(vec![]);
    };
    let Value::Array(items) = v else {
        return Err(P.error(&path, format!("expected a list, got {}", kind(v))));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, c)| container_from(c, &index(&path, i), manifest, defaults))
        .collect()
}

/// Container names are unique across init and app containers; the later one is reported.
fn check_unique(
    init: &[Container],
    init_path: &str,
    app: &[Container],
    app_path: &str,
) -> Result<()> {
    let mut seen: HashMap<&str, String> = HashMap::with_capacity(init.len() + app.len());
    let paths = (0..init.len())
        .map(|i| index(init_path, i))
        .chain((0..app.len()).map(|i| index(app_path, i)));
    for (c, at) in init.iter().chain(app).zip(paths) {
        if let Some(first) = seen.get(c.name.as_str()) {
            return Err(P.error(
                &join(&at, "name"),
                format!("duplicate container name '{}' (also {first}.name)", c.name),
            ));
        }
        seen.insert(&c.name, at);
    }
    Ok(())
}

fn annotations_from(v: Option<(&Value, String)>) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let Some((v, path)) = v else {
        return Ok(out);
    };
    let m = Obj::new(v, &path, P)?;
    for (k, x) in m.map {
        match x {
            Value::String(s) => {
                out.insert(k.clone(), s.clone());
            }
            other => {
                return Err(P.error(
                    &format!("{path}[{k:?}]"),
                    format!("expected a string, got {}", kind(other)),
                ))
            }
        }
    }
    Ok(out)
}

/// The memory tier a pod's annotation names; a value pymm does not know is an error, so a
/// typo does not silently place memory on the wrong kind of node.
fn tier_of(annotations: &BTreeMap<String, String>, path: &str) -> Result<Option<Tier>> {
    let Some(v) = annotations.get(TIER_ANNOTATION) else {
        return Ok(None);
    };
    Tier::parse(v).map(Some).ok_or_else(|| {
        P.error(
            &format!("{path}[\"{TIER_ANNOTATION}\"]"),
            format!(
                "unknown memory tier '{v}' (expected one of {})",
                Tier::NAMES.join(", ")
            ),
        )
    })
}

impl Pod {
    /// A pod from plain data: `{uid, name?, namespace?, containers: [...],
    /// init_containers|initContainers: [...], has_pod_level_resources?, annotations?}` where
    /// each container is `{name, requests: {res: qty}, limits: {res: qty},
    /// restart_policy|restartPolicy?}`. Other keys (a scenario's `fakePodHints`) are ignored.
    pub fn from_value(v: &Value) -> Result<Pod> {
        Pod::from_spec(v, false)
    }

    /// [`Pod::from_value`], with the API server's defaulting when `defaults` (a limit without
    /// a request is also the request), as a scenario's `applyDefaults` asks.
    pub fn from_spec(v: &Value, defaults: bool) -> Result<Pod> {
        if !v.is_object() {
            return Err(P.error("", format!("expected a mapping for a pod, got {}", kind(v))));
        }
        let m = Obj::new(v, "", P)?;
        let uid = match m.map.get("uid") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                return Err(m.err("uid", format!("expected a string, got {}", kind(other))))
            }
            None => return Err(m.err("uid", "required")),
        };
        let init = m.either("init_containers", "initContainers")?;
        let init_path = init
            .as_ref()
            .map_or("initContainers".into(), |(_, p)| p.clone());
        let init_containers = containers_from(init, false, defaults)?;
        let containers = containers_from(
            m.get("containers").map(|v| (v, m.at("containers"))),
            false,
            defaults,
        )?;
        check_unique(&init_containers, &init_path, &containers, "containers")?;
        let plr = match m.either("has_pod_level_resources", "hasPodLevelResources")? {
            None => false,
            Some((Value::Bool(b), _)) => *b,
            Some((other, at)) => {
                return Err(P.error(&at, format!("expected a bool, got {}", kind(other))))
            }
        };
        let annotations = annotations_from(m.get("annotations").map(|v| (v, m.at("annotations"))))?;
        Ok(Pod {
            uid,
            name: m.str("name")?.unwrap_or_default().to_string(),
            namespace: m.str("namespace")?.unwrap_or("default").to_string(),
            containers,
            init_containers,
            pod_level_resources: plr,
            tier: tier_of(&annotations, "annotations")?,
            annotations,
            qos: OnceLock::new(),
            index: OnceLock::new(),
        })
    }

    /// The pods of a Kubernetes object: a Pod, or a `List`/`PodList` of them, as `kubectl get
    /// -o yaml` prints them. With `defaults`, the API server's defaulting applies (a limit
    /// without a request is also the request). Fields that do not affect memory placement
    /// (status, images, ...) are ignored. The uid is `metadata.uid`, or `namespace/name` for a
    /// pod not yet created.
    pub fn from_manifest(v: &Value, defaults: bool) -> Result<Vec<Pod>> {
        let top = Obj::new(v, "", P)?;
        match top.str("kind")? {
            Some("List" | "PodList") => {
                let items = top.list("items")?.map(Vec::as_slice).unwrap_or_default();
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| pod_from_manifest(item, &index("items", i), true, defaults))
                    .collect()
            }
            _ => Ok(vec![pod_from_manifest(v, "", false, defaults)?]),
        }
    }

    /// Init containers first, then app containers: the order the kubelet admits them in.
    pub fn all_containers(&self) -> impl Iterator<Item = &Container> {
        self.init_containers.iter().chain(self.containers.iter())
    }

    pub fn container(&self, name: &str) -> Option<&Container> {
        // Admission looks every container up by name several times; a scan would make a pod
        // of 10,000 containers quadratic.
        const SCAN: usize = 16;
        if self.init_containers.len() + self.containers.len() <= SCAN {
            return self.all_containers().find(|c| c.name == name);
        }
        let index = self.index.get_or_init(|| {
            self.all_containers()
                .enumerate()
                .map(|(i, c)| (c.name.clone(), i))
                .collect()
        });
        let i = *index.get(name)?;
        let k = self.init_containers.len();
        if i < k {
            self.init_containers.get(i)
        } else {
            self.containers.get(i - k)
        }
    }

    /// `GetPodQOS`: only cpu and memory count, summed over all containers.
    pub fn qos_class(&self) -> QosClass {
        *self.qos.get_or_init(|| self.compute_qos())
    }

    fn compute_qos(&self) -> QosClass {
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

fn pod_from_manifest(v: &Value, path: &str, in_list: bool, defaults: bool) -> Result<Pod> {
    let obj = Obj::new(v, path, P)?;
    match (obj.str("kind")?, in_list) {
        (Some("Pod"), _) | (None, true) => {}
        (other, _) => {
            let got = other.map_or("nothing".to_string(), |k| format!("'{k}'"));
            let hint = if matches!(other, Some("List" | "PodList")) {
                "; use load_pods() for a List"
            } else {
                ""
            };
            return Err(obj.err("kind", format!("expected 'Pod', got {got}{hint}")));
        }
    }
    if let Some(api) = obj.str("apiVersion")? {
        if api != "v1" {
            return Err(obj.err("apiVersion", format!("expected 'v1', got '{api}'")));
        }
    }
    // Present but null is a type error, as `metadata:` alone in YAML is.
    let meta = match obj.map.get("metadata") {
        None => return Err(obj.err("metadata", "required")),
        Some(v) => Obj::new(v, &obj.at("metadata"), P)?,
    };
    let name = match meta.str("name")? {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => return Err(meta.err("name", "required")),
    };
    // An empty namespace is the default one to the API server, too.
    let namespace = match meta.str("namespace")? {
        Some(ns) if !ns.is_empty() => ns.to_string(),
        _ => "default".to_string(),
    };
    let uid = match meta.str("uid")? {
        Some(u) if !u.is_empty() => u.to_string(),
        _ => format!("{namespace}/{name}"),
    };
    let spec = match obj.map.get("spec") {
        None => return Err(obj.err("spec", "required")),
        Some(v) => Obj::new(v, &obj.at("spec"), P)?,
    };
    let app_path = spec.at("containers");
    let containers = match spec.get("containers") {
        None => return Err(spec.err("containers", "required")),
        Some(v) => containers_from(Some((v, app_path.clone())), true, defaults)?,
    };
    if containers.is_empty() {
        return Err(spec.err("containers", "must list at least one container"));
    }
    let init_path = spec.at("initContainers");
    let init_containers = containers_from(
        spec.get("initContainers").map(|v| (v, init_path.clone())),
        true,
        defaults,
    )?;
    check_unique(&init_containers, &init_path, &containers, &app_path)?;
    // `resources: {}` is set-but-empty, which the kubelet treats as not set.
    let pod_level_resources = match spec.obj("resources")? {
        None => false,
        Some(r) => {
            let req = resource_list(r.get("requests").map(|v| (v, r.at("requests"))))?;
            let lim = resource_list(r.get("limits").map(|v| (v, r.at("limits"))))?;
            !req.is_empty() || !lim.is_empty()
        }
    };
    let annotations =
        annotations_from(meta.get("annotations").map(|v| (v, meta.at("annotations"))))?;
    Ok(Pod {
        uid,
        name,
        namespace,
        containers,
        init_containers,
        pod_level_resources,
        tier: tier_of(&annotations, "metadata.annotations")?,
        annotations,
        qos: OnceLock::new(),
        index: OnceLock::new(),
    })
}

/// [`container_requested`], cached on the container.
pub fn requested_of(c: &Container) -> Result<&Requested> {
    if let Some(r) = c.requested.get() {
        return Ok(r);
    }
    let r = container_requested(c)?;
    Ok(c.requested.get_or_init(|| r))
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
