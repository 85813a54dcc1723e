//! Pods as the memory manager sees them: containers with requests and limits, QoS class, and
//! the sizes a container or a whole pod asks for (init and sidecar rules included).
//!
//! Every pod is decoded and checked here, once, as the Kubernetes API server validates a Pod
//! (k8s.io/kubernetes `pkg/apis/core/validation/validation.go`: `validateContainerCommon`,
//! `validateResourceRequirements`, `validateContainerResourceName`, `validatePodResourceName`,
//! `validateResourceQuantityHugePageValue`, `validatePodResourceConsistency`; names by
//! k8s.io/apimachinery `util/validation`), and defaulted as it defaults one
//! (`pkg/apis/core/v1/defaults.go`: `SetDefaults_Pod`, `defaultHugePagePodLimits`,
//! `defaultPodRequests`) when the caller asks for that. Two rules are applied only where the
//! API server's defaulting is applied too (a manifest read with `defaults`): pod-level
//! requests covering the containers' (`validatePodResourceConsistency`), which compares the
//! defaulted objects, and which the newest kubelet's own reference scenarios break on purpose
//! (the kubelet, handed such a pod, still admits it).
//!
//! [`Rules::Kubelet`] reads a pod as the kubelet is handed it, without the API server's rules:
//! the kubelet's own unit tests (the conformance vectors) use container names such as
//! `fakeContainer1`, pods without a uid and hugepage requests below their limits.

use crate::decode::{
    dns1123_label_errors, dns1123_subdomain_errors, escaped, index, invalid_name, is_unprintable,
    join, kind, odd_character, qualified_name_errors, shown, Obj, Subject,
};
use crate::error::{EngineError, Result};
use crate::machine::{Tier, TIER_ANNOTATION};
use crate::quantity::Quantity;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

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

/// A pod's containers: shared, and changed only while the pod is built, so that instances of
/// one pod shape (a simulation's million admissions) share them and their computed requests
/// instead of copying them.
#[derive(Clone, PartialEq, Default)]
pub struct Containers(Arc<Vec<Container>>);

impl Containers {
    fn make_mut(&mut self) -> &mut Vec<Container> {
        Arc::make_mut(&mut self.0)
    }
}

impl std::fmt::Debug for Containers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::ops::Deref for Containers {
    type Target = [Container];
    fn deref(&self) -> &[Container] {
        &self.0
    }
}

impl<'a> IntoIterator for &'a Containers {
    type Item = &'a Container;
    type IntoIter = std::slice::Iter<'a, Container>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl FromIterator<Container> for Containers {
    fn from_iter<I: IntoIterator<Item = Container>>(iter: I) -> Self {
        Containers(Arc::new(iter.into_iter().collect()))
    }
}

impl From<Vec<Container>> for Containers {
    fn from(v: Vec<Container>) -> Self {
        Containers(Arc::new(v))
    }
}

/// A pod's own requests and limits (`spec.resources`, pod-level resources): cpu, memory and
/// hugepages for the pod as a whole. Empty maps mean "not set", as the kubelet reads them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PodResources {
    pub requests: BTreeMap<String, Quantity>,
    pub limits: BTreeMap<String, Quantity>,
}

impl PodResources {
    /// `IsPodLevelResourcesSet`: a supported resource (cpu, memory, hugepages) is set.
    pub fn is_set(&self) -> bool {
        self.requests
            .keys()
            .chain(self.limits.keys())
            .any(|n| is_pod_level_resource(n))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pod {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    pub containers: Containers,
    pub init_containers: Containers,
    /// `spec.resources`; the static policy leaves pods that set it alone (kubelet >= 1.32).
    pub resources: PodResources,
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

/// The largest size the memory manager holds: it converts with `Quantity.AsInt64`.
const MAX_MEMORY_BYTES: i128 = i64::MAX as i128;

/// Whose rules a pod is read by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rules {
    /// The API server's: every pod a user, a manifest or an API call gives.
    ApiServer,
    /// The kubelet's: the pod as the kubelet is handed it (its unit tests' data).
    Kubelet,
}

/// Which names a resource list may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListOf {
    /// A container's: `validateContainerResourceName`.
    Container,
    /// The pod's own (`spec.resources`): `validatePodResourceName`.
    Pod,
}

/// Where a decoded pod's fields are reported: a manifest's paths (below `items[i]` in a list),
/// or engine data's.
#[derive(Debug, Clone)]
struct Paths {
    init: String,
    app: String,
    pod_resources: String,
    manifest: bool,
}

impl Paths {
    fn data(init: &str) -> Paths {
        Paths {
            init: init.to_string(),
            app: "containers".into(),
            pod_resources: "resources".into(),
            manifest: false,
        }
    }
    fn manifest(prefix: &str) -> Paths {
        Paths {
            init: join(prefix, "spec.initContainers"),
            app: join(prefix, "spec.containers"),
            pod_resources: join(prefix, "spec.resources"),
            manifest: true,
        }
    }
    /// Where a container's `requests` and `limits` sit, below the container's path.
    fn lists(&self, container: &str) -> String {
        if self.manifest {
            join(container, "resources")
        } else {
            container.to_string()
        }
    }
}

fn hugepage_size(name: &str) -> Option<Quantity> {
    name.strip_prefix("hugepages-")
        .and_then(|size| Quantity::parse(size).ok())
        .filter(Quantity::is_positive)
}

/// `IsNativeResource`: unprefixed, or in the `kubernetes.io/` namespace.
fn is_native(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

/// `IsOvercommitAllowed`: requests may be below limits only for native, non-hugepage resources.
fn overcommit_allowed(name: &str) -> bool {
    is_native(name) && !name.starts_with("hugepages-")
}

/// `IsExtendedResourceName`.
fn is_extended(name: &str) -> bool {
    !is_native(name)
        && !name.starts_with("requests.")
        && qualified_name_errors(&format!("requests.{name}")).is_empty()
}

/// `IsSupportedPodLevelResource`.
fn is_pod_level_resource(name: &str) -> bool {
    name == "cpu" || name == "memory" || name.starts_with("hugepages-")
}

/// The names `IsStandardResourceName` knows besides hugepages.
const STANDARD_RESOURCES: [&str; 20] = [
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
    "resourcequotas",
    "services",
    "replicationcontrollers",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "storage",
    "requests.storage",
    "services.nodeports",
    "services.loadbalancers",
];

fn not_a_hugepage_resource(name: &str) -> String {
    format!(
        "{} is not a hugepage resource: the size after \"hugepages-\" must be a quantity such as 2Mi or 1Gi",
        shown(name)
    )
}

/// `validateContainerResourceName` / `validatePodResourceName`: a qualified name; unprefixed,
/// a standard resource (a look-alike letter in `mеmory` is pointed at); prefixed, an extended
/// resource; for the pod itself, cpu, memory or hugepages only.
fn resource_name_error(name: &str, list: ListOf) -> Option<String> {
    let invalid = |why: &str| {
        let mut m = format!("invalid resource name {}: {why}", shown(name));
        if let Some(odd) = odd_character(name) {
            m.push_str(&format!(" ({odd})"));
        }
        Some(m)
    };
    let errs = qualified_name_errors(name);
    if !errs.is_empty() {
        return invalid(&errs.join(", "));
    }
    let unprefixed = !name.contains('/');
    let hugepages = name.starts_with("hugepages-") || name.starts_with("requests.hugepages-");
    if unprefixed && !STANDARD_RESOURCES.contains(&name) && !hugepages {
        return invalid("must be a standard resource type or fully qualified");
    }
    match list {
        ListOf::Container => {
            let standard = ["cpu", "memory", "ephemeral-storage"].contains(&name)
                || name.starts_with("hugepages-");
            if unprefixed && !standard {
                return invalid("must be a standard resource for containers (cpu, memory, ephemeral-storage, hugepages-<size>)");
            }
            if !unprefixed && !is_native(name) && !is_extended(name) {
                return invalid("doesn't follow extended resource name standard");
            }
        }
        ListOf::Pod => {
            if !is_pod_level_resource(name) {
                return invalid("supported values: \"cpu\", \"hugepages-\", \"memory\"");
            }
        }
    }
    if name.starts_with("hugepages-") && hugepage_size(name).is_none() {
        return Some(not_a_hugepage_resource(name));
    }
    None
}

/// A resource list (`requests` or `limits`): names and quantities checked one by one
/// (`ValidateResourceQuantityValue`, `validateResourceQuantityHugePageValue`), and memory and
/// hugepage sizes within the int64 the memory manager holds them in.
fn resource_list(
    v: Option<(&Value, String)>,
    list: ListOf,
    rules: Rules,
) -> Result<BTreeMap<String, Quantity>> {
    let mut out = BTreeMap::new();
    let Some((v, path)) = v else {
        return Ok(out);
    };
    let entries = match v {
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
    for (name, q) in entries.map {
        let at = entries.at(name);
        if name.is_empty() {
            return Err(P.error(&path, "a resource name must not be empty"));
        }
        match rules {
            Rules::ApiServer => {
                if let Some(why) = resource_name_error(name, list) {
                    return Err(P.error(&at, why));
                }
            }
            Rules::Kubelet => {
                // The one name rule the memory manager itself needs: a real page size.
                if name.starts_with("hugepages-") && hugepage_size(name).is_none() {
                    return Err(P.error(&at, not_a_hugepage_resource(name)));
                }
            }
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
        if rules == Rules::Kubelet {
            out.insert(name.clone(), parsed);
            continue;
        }
        if is_extended(name) && !parsed.is_whole() {
            return Err(P.error(&at, format!("must be an integer, got {text}")));
        }
        if is_memory_resource(name) && parsed.value() > MAX_MEMORY_BYTES {
            return Err(P.error(
                &at,
                format!(
                    "{text} is out of range: memory and hugepage sizes must be 0 to {MAX_MEMORY_BYTES} bytes (8Ei - 1), the int64 the memory manager holds them in"
                ),
            ));
        }
        if let Some(page) = hugepage_size(name) {
            // `IsHugePageResourceValueDivisible`: page sizes in fractions of a byte never divide.
            let (page, value) = (page.value(), parsed.value());
            if !page_divides(page, value, hugepage_size(name)) {
                return Err(P.error(
                    &at,
                    format!("{parsed} is not positive integer multiple of {name}: hugepages come in whole pages"),
                ));
            }
        }
        out.insert(name.clone(), parsed);
    }
    Ok(out)
}

fn page_divides(page: i128, value: i128, size: Option<Quantity>) -> bool {
    size.is_some_and(|s| s.is_whole()) && page > 0 && value % page == 0
}

/// The rules between a requests and a limits list (`validateResourceRequirements`); by the
/// kubelet's rules, only that a request does not exceed its limit.
fn check_requirements(
    requests: &BTreeMap<String, Quantity>,
    limits: &BTreeMap<String, Quantity>,
    at: &str,
    rules: Rules,
) -> Result<()> {
    let api = rules == Rules::ApiServer;
    for (name, r) in requests {
        let req_at = join(&join(at, "requests"), name);
        match limits.get(name) {
            Some(l) if api && r != l && !overcommit_allowed(name) => {
                return Err(P.error(
                    &req_at,
                    format!("must be equal to {name} limit of {l}, got {r}"),
                ));
            }
            Some(l) if r > l => {
                return Err(P.error(
                    &req_at,
                    format!("must be less than or equal to {name} limit of {l}, got {r}"),
                ));
            }
            None if api && !overcommit_allowed(name) => {
                return Err(P.error(
                    &join(at, "limits"),
                    format!(
                        "Limit must be set for non overcommitable resources ({name} is requested)"
                    ),
                ));
            }
            _ => {}
        }
    }
    if !api {
        return Ok(());
    }
    let names = || requests.keys().chain(limits.keys());
    let cpu_or_memory = names().any(|n| n == "cpu" || n == "memory");
    if !cpu_or_memory && names().any(|n| n.starts_with("hugepages-")) {
        return Err(P.error(at, "HugePages require cpu or memory"));
    }
    Ok(())
}

/// `SetDefaults_Pod` for one container: a resource with a limit and no request requests it.
fn default_container(c: &mut Container) {
    for (name, limit) in &c.limits {
        c.requests.entry(name.clone()).or_insert(*limit);
    }
    // What was computed from the requests before is no longer theirs.
    c.requested = OnceLock::new();
}

/// `aggregateContainerResourcesByFn`: app containers and sidecars add up; each regular init
/// container, with the sidecars started before it, is a floor.
fn aggregate(
    pod: &Pod,
    pick: impl Fn(&Container) -> &BTreeMap<String, Quantity>,
) -> BTreeMap<String, Quantity> {
    let add = |to: &mut BTreeMap<String, Quantity>, from: &BTreeMap<String, Quantity>| {
        for (name, q) in from {
            let e = to.entry(name.clone()).or_insert(Quantity::ZERO);
            *e = e.add(q);
        }
    };
    let max = |to: &mut BTreeMap<String, Quantity>, from: &BTreeMap<String, Quantity>| {
        for (name, q) in from {
            match to.get(name) {
                Some(have) if have >= q => {}
                _ => {
                    to.insert(name.clone(), *q);
                }
            }
        }
    };
    let mut result = BTreeMap::new();
    for c in &pod.containers {
        add(&mut result, pick(c));
    }
    let mut sidecars = BTreeMap::new();
    let mut init = BTreeMap::new();
    for c in &pod.init_containers {
        if c.restartable {
            add(&mut result, pick(c));
            add(&mut sidecars, pick(c));
            max(&mut init, &sidecars);
        } else {
            let mut combined = pick(c).clone();
            add(&mut combined, &sidecars);
            max(&mut init, &combined);
        }
    }
    max(&mut result, &init);
    result
}

/// `defaultHugePagePodLimits`, then `defaultPodRequests` (`pkg/apis/core/v1/defaults.go`), for
/// a pod that sets pod-level resources.
fn default_pod_resources(pod: &mut Pod) {
    if !pod.resources.is_set() {
        return;
    }
    let limits = aggregate(pod, |c| &c.limits);
    for (name, q) in limits {
        if name.starts_with("hugepages-") && !pod.resources.requests.contains_key(&name) {
            pod.resources.limits.entry(name).or_insert(q);
        }
    }
    if pod.resources.limits.is_empty() {
        return;
    }
    let requests = aggregate(pod, |c| &c.requests);
    for (name, q) in requests {
        if is_pod_level_resource(&name) && overcommit_allowed(&name) {
            pod.resources.requests.entry(name).or_insert(q);
        }
    }
    for (name, q) in &pod.resources.limits {
        pod.resources.requests.entry(name.clone()).or_insert(*q);
    }
}

/// `validatePodResourceConsistency`, for the resources a pod may set for itself: its requests
/// cover what its containers request together, and no app container's limit exceeds the pod's.
fn check_pod_consistency(pod: &Pod, paths: &Paths) -> Result<()> {
    if !pod.resources.is_set() {
        return Ok(());
    }
    let at = join(&paths.pod_resources, "requests");
    for (name, total) in aggregate(pod, |c| &c.requests) {
        if !is_pod_level_resource(&name) {
            continue;
        }
        let own = pod
            .resources
            .requests
            .get(&name)
            .copied()
            .unwrap_or(Quantity::ZERO);
        if total > own {
            return Err(P.error(
                &join(&at, &name),
                format!("must be greater than or equal to aggregate container requests of {total}, got {own}"),
            ));
        }
    }
    for (i, c) in pod.containers.iter().enumerate() {
        for (name, limit) in &c.limits {
            match pod.resources.limits.get(name) {
                Some(own) if limit > own => {
                    let c_at = paths.lists(&index(&paths.app, i));
                    return Err(P.error(
                        &join(&join(&c_at, "limits"), name),
                        format!("must be less than or equal to pod limits of {own}, got {limit}"),
                    ));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// A container name: required, and a DNS-1123 label (`validateContainerCommon`); printable
/// by the kubelet's rules.
fn container_name(c: &Obj, rules: Rules) -> Result<String> {
    match c.get("name") {
        Some(Value::String(s)) if s.is_empty() => Err(c.err("name", "must not be empty")),
        Some(Value::String(s)) => {
            let errors = match rules {
                Rules::ApiServer => dns1123_label_errors(s),
                Rules::Kubelet if s.chars().any(is_unprintable) => {
                    vec!["a container name must not hold control, bidi or other invisible characters".into()]
                }
                Rules::Kubelet => vec![],
            };
            match invalid_name(s, errors) {
                Some(why) => Err(c.err("name", why)),
                None => Ok(s.clone()),
            }
        }
        Some(other) => Err(c.err("name", format!("expected a string, got {}", kind(other)))),
        None => Err(c.err("name", "required")),
    }
}

/// One container, its lists checked value by value. `manifest` reads
/// `resources.requests/limits` (a Pod manifest); otherwise `requests`/`limits` sit on the
/// container (engine and scenario data).
fn container_from(v: &Value, path: &str, manifest: bool, rules: Rules) -> Result<Container> {
    let c = Obj::new(v, path, P)?;
    let name = container_name(&c, rules)?;
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
    Ok(Container {
        name,
        requests: resource_list(requests, ListOf::Container, rules)?,
        limits: resource_list(limits, ListOf::Container, rules)?,
        restartable: restart == Some("Always"),
        requested: OnceLock::new(),
    })
}

fn containers_from(
    list: Option<(&Value, String)>,
    manifest: bool,
    rules: Rules,
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
        .map(|(i, c)| container_from(c, &index(&path, i), manifest, rules))
        .collect()
}

/// `spec.resources` (a manifest) or `resources` (engine data): `{requests?, limits?}`.
fn pod_resources_from(v: Option<&Value>, at: &str, rules: Rules) -> Result<PodResources> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(PodResources::default());
    };
    let r = Obj::new(v, at, P)?;
    r.deny_unknown(
        "key of pod-level resources",
        &["requests", "limits", "claims"],
    )?;
    if r.get("claims").is_some() {
        return Err(r.err("claims", "claims cannot be set for Resources at pod-level"));
    }
    let list = |k: &str| resource_list(r.get(k).map(|v| (v, r.at(k))), ListOf::Pod, rules);
    Ok(PodResources {
        requests: list("requests")?,
        limits: list("limits")?,
    })
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

/// The API server's limit on all annotations together (`TotalAnnotationSizeLimitB`).
const ANNOTATIONS_MAX_BYTES: usize = 256 * 1024;

/// Annotations as `ValidateAnnotations` checks them: each key a qualified name (compared in
/// lower case), all of them within 256 KiB.
fn annotations_from(v: Option<(&Value, String)>, rules: Rules) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let Some((v, path)) = v else {
        return Ok(out);
    };
    let m = Obj::new(v, &path, P)?;
    let mut total = 0usize;
    for (k, x) in m.map {
        let at = format!("{path}[{}]", shown(k));
        if rules == Rules::ApiServer {
            if let Some(why) = invalid_name(k, qualified_name_errors(&k.to_lowercase())) {
                return Err(P.error(&at, why));
            }
        }
        match x {
            Value::String(s) => {
                total = total.saturating_add(k.len() + s.len());
                out.insert(k.clone(), s.clone());
            }
            other => return Err(P.error(&at, format!("expected a string, got {}", kind(other)))),
        }
    }
    if rules == Rules::ApiServer && total > ANNOTATIONS_MAX_BYTES {
        return Err(P.error(
            &path,
            format!("may not be more than {ANNOTATIONS_MAX_BYTES} bytes, got {total}"),
        ));
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
                "unknown memory tier '{}' (expected one of {})",
                escaped(v),
                Tier::NAMES.join(", ")
            ),
        )
    })
}

/// A pod uid: the API server generates one (a UUID) and refuses an empty owner uid; pymm takes
/// any other text the kubelet would key its state by, except characters that would let a
/// printed uid forge output (control, bidi and invisible format characters).
fn check_uid(uid: &str, at: &str, rules: Rules) -> Result<()> {
    if uid.is_empty() && rules == Rules::ApiServer {
        return Err(P.error(at, "must not be empty"));
    }
    if uid.chars().any(is_unprintable) {
        let odd = odd_character(uid).unwrap_or_default();
        return Err(P.error(
            at,
            format!(
                "invalid value {}: a pod uid must not hold control, bidi or other invisible characters ({odd})",
                shown(uid)
            ),
        ));
    }
    Ok(())
}

/// A pod name: a DNS-1123 subdomain (`ValidatePodName`).
fn check_pod_name(name: &str, at: &str) -> Result<()> {
    match invalid_name(name, dns1123_subdomain_errors(name)) {
        Some(why) => Err(P.error(at, why)),
        None => Ok(()),
    }
}

/// A namespace: a DNS-1123 label (`ValidateNamespaceName`).
fn check_namespace(ns: &str, at: &str) -> Result<()> {
    match invalid_name(ns, dns1123_label_errors(ns)) {
        Some(why) => Err(P.error(at, why)),
        None => Ok(()),
    }
}

impl Pod {
    /// A pod from plain data: `{uid, name?, namespace?, containers: [...],
    /// init_containers|initContainers: [...], resources?: {requests, limits}, annotations?}`
    /// where each container is `{name, requests: {res: qty}, limits: {res: qty},
    /// restart_policy|restartPolicy?}`. Other keys (a scenario's `fakePodHints`) are ignored.
    /// No defaulting: the data is what the kubelet is handed. Checked by the API server's
    /// rules.
    pub fn from_value(v: &Value) -> Result<Pod> {
        Pod::from_value_by(v, Rules::ApiServer)
    }

    /// [`Pod::from_value`], defaulted as a scenario's `applyDefaults` asks: each container's
    /// limit without a request is also its request. The pod's own resources are left as
    /// given, as the reference harness leaves them (it hands the kubelet pods whose budget
    /// lacks the hugepages its containers limit, which the API server's
    /// `defaultHugePagePodLimits` would have added). The defaulted pod's requests and limits
    /// are checked again; pod-level consistency is not (the kubelet was handed the pod).
    pub fn from_spec(v: &Value, defaults: bool) -> Result<Pod> {
        let mut pod = Pod::decode_value(v, Rules::ApiServer, false)?;
        if defaults {
            pod.default_containers();
            pod.check_requirements(&Paths::data("initContainers"), Rules::ApiServer)?;
        }
        Ok(pod)
    }

    /// [`Pod::from_value`] by the given rules ([`Rules::Kubelet`]: the kubelet's own data).
    pub fn from_value_by(v: &Value, rules: Rules) -> Result<Pod> {
        Pod::decode_value(v, rules, false)
    }

    fn decode_value(v: &Value, rules: Rules, defaults: bool) -> Result<Pod> {
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
        check_uid(&uid, "uid", rules)?;
        let name = m.str("name")?.unwrap_or_default().to_string();
        let namespace = m.str("namespace")?.unwrap_or("default").to_string();
        if rules == Rules::ApiServer {
            if !name.is_empty() {
                check_pod_name(&name, "name")?;
            }
            if !namespace.is_empty() {
                check_namespace(&namespace, "namespace")?;
            }
        }
        let init = m.either("init_containers", "initContainers")?;
        let init_path = init
            .as_ref()
            .map_or("initContainers".into(), |(_, p)| p.clone());
        let init_containers = containers_from(init, false, rules)?;
        let containers = containers_from(
            m.get("containers").map(|v| (v, m.at("containers"))),
            false,
            rules,
        )?;
        check_unique(&init_containers, &init_path, &containers, "containers")?;
        let resources = pod_resources_from(m.get("resources"), "resources", rules)?;
        // The flag this field replaced: still read, and refused where it would claim
        // resources the data does not give.
        if let Some((flag, at)) = m.either("has_pod_level_resources", "hasPodLevelResources")? {
            match flag {
                Value::Bool(b) if *b && !resources.is_set() => {
                    return Err(P.error(
                        &at,
                        "true without pod-level resources: give them as resources: {requests, limits} (the pod's spec.resources)",
                    ))
                }
                Value::Bool(_) => {}
                other => return Err(P.error(&at, format!("expected a bool, got {}", kind(other)))),
            }
        }
        let annotations = annotations_from(
            m.get("annotations").map(|v| (v, m.at("annotations"))),
            rules,
        )?;
        let mut pod = Pod {
            uid,
            name,
            namespace,
            containers: containers.into(),
            init_containers: init_containers.into(),
            resources,
            tier: tier_of(&annotations, "annotations")?,
            annotations,
            qos: OnceLock::new(),
            index: OnceLock::new(),
        };
        if defaults {
            pod.apply_defaults();
        }
        pod.check_requirements(&Paths::data(&init_path), rules)?;
        Ok(pod)
    }

    /// The pods of a Kubernetes object: a Pod, or a `List`/`PodList` of them, as `kubectl get
    /// -o yaml` prints them. With `defaults`, the API server's defaulting applies (a limit
    /// without a request is also the request; pod-level requests and hugepage limits as
    /// `defaults.go` fills them), and its checks of the defaulted pod. Fields that do not
    /// affect memory placement (status, images, ...) are ignored. The uid is `metadata.uid`,
    /// or `namespace/name` for a pod not yet created; a list may hold a uid once.
    pub fn from_manifest(v: &Value, defaults: bool) -> Result<Vec<Pod>> {
        let top = Obj::new(v, "", P)?;
        match top.str("kind")? {
            Some("List" | "PodList") => {
                let items = top.list("items")?.map(Vec::as_slice).unwrap_or_default();
                let pods = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| pod_from_manifest(item, &index("items", i), true, defaults))
                    .collect::<Result<Vec<_>>>()?;
                let labels: Vec<String> = (0..pods.len()).map(|i| index("items", i)).collect();
                check_unique_uids(pods.iter().zip(labels.iter().map(String::as_str)))?;
                Ok(pods)
            }
            _ => Ok(vec![pod_from_manifest(v, "", false, defaults)?]),
        }
    }

    /// The same pod under another uid: containers and what was computed from them are shared,
    /// not copied (a simulation admits many instances of a few pod shapes).
    pub fn instance(&self, uid: String) -> Pod {
        Pod {
            uid,
            name: self.name.clone(),
            namespace: self.namespace.clone(),
            containers: self.containers.clone(),
            init_containers: self.init_containers.clone(),
            resources: self.resources.clone(),
            annotations: self.annotations.clone(),
            tier: self.tier,
            qos: self.qos.clone(),
            index: self.index.clone(),
        }
    }

    /// `IsPodLevelResourcesSet`: the static policy leaves such pods alone (kubelet >= 1.32).
    pub fn has_pod_level_resources(&self) -> bool {
        self.resources.is_set()
    }

    /// The pod as the API server stores it after its defaulting (`SetDefaults_Pod`), checked
    /// as it checks the defaulted pod.
    pub fn with_defaults(&self) -> Result<Pod> {
        let fresh = |c: &Container| Container {
            requested: OnceLock::new(),
            ..c.clone()
        };
        let mut pod = Pod {
            containers: self.containers.iter().map(fresh).collect(),
            init_containers: self.init_containers.iter().map(fresh).collect(),
            qos: OnceLock::new(),
            index: OnceLock::new(),
            ..self.clone()
        };
        pod.apply_defaults();
        let paths = Paths::data("init_containers");
        pod.check_requirements(&paths, Rules::ApiServer)?;
        check_pod_consistency(&pod, &paths)?;
        Ok(pod)
    }

    fn apply_defaults(&mut self) {
        self.default_containers();
        default_pod_resources(self);
    }

    /// `SetDefaults_Pod` for every container (init containers first).
    fn default_containers(&mut self) {
        for c in self
            .init_containers
            .make_mut()
            .iter_mut()
            .chain(self.containers.make_mut().iter_mut())
        {
            default_container(c);
        }
        // The QoS class follows the requests just defaulted.
        self.qos = OnceLock::new();
    }

    /// The rules between a container's (and the pod's) requests and limits.
    fn check_requirements(&self, paths: &Paths, rules: Rules) -> Result<()> {
        for (list, items) in [
            (&paths.init, &self.init_containers),
            (&paths.app, &self.containers),
        ] {
            for (i, c) in items.iter().enumerate() {
                check_requirements(&c.requests, &c.limits, &paths.lists(&index(list, i)), rules)?;
            }
        }
        check_requirements(
            &self.resources.requests,
            &self.resources.limits,
            &paths.pod_resources,
            rules,
        )
    }

    /// The container of this name, or [`EngineError::NotFound`] naming both.
    pub fn require_container(&self, name: &str) -> Result<&Container> {
        self.container(name).ok_or_else(|| EngineError::NotFound {
            message: format!(
                "pod {} has no container {} (its containers: {})",
                shown(&self.uid),
                shown(name),
                self.all_containers()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            pod: self.uid.clone(),
            container: Some(name.to_string()),
        })
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

    /// `GetPodQOS` as a kubelet with the `PodLevelResources` gate (`pod_level`) computes it:
    /// from the pod's own requests and limits when it sets any (`resourceQOS` of
    /// `spec.resources`), else as [`Pod::qos_class`]. An empty `spec.resources` counts as not
    /// given (the kubelet, handed a non-nil empty one, would call the pod BestEffort).
    pub fn qos_class_for(&self, pod_level: bool) -> QosClass {
        let r = &self.resources;
        if pod_level && !(r.requests.is_empty() && r.limits.is_empty()) {
            return resource_qos(&r.requests, &r.limits);
        }
        self.qos_class()
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
    check_pod_name(&name, &meta.at("name"))?;
    // An empty namespace is the default one to the API server, too.
    let namespace = match meta.str("namespace")? {
        Some(ns) if !ns.is_empty() => ns.to_string(),
        _ => "default".to_string(),
    };
    check_namespace(&namespace, &meta.at("namespace"))?;
    let uid = match meta.str("uid")? {
        Some(u) if !u.is_empty() => u.to_string(),
        _ => format!("{namespace}/{name}"),
    };
    check_uid(&uid, &meta.at("uid"), Rules::ApiServer)?;
    let spec = match obj.map.get("spec") {
        None => return Err(obj.err("spec", "required")),
        Some(v) => Obj::new(v, &obj.at("spec"), P)?,
    };
    let paths = Paths::manifest(path);
    let containers = match spec.get("containers") {
        None => return Err(spec.err("containers", "required")),
        Some(v) => containers_from(Some((v, paths.app.clone())), true, Rules::ApiServer)?,
    };
    if containers.is_empty() {
        return Err(spec.err("containers", "must list at least one container"));
    }
    let init_containers = containers_from(
        spec.get("initContainers").map(|v| (v, paths.init.clone())),
        true,
        Rules::ApiServer,
    )?;
    check_unique(&init_containers, &paths.init, &containers, &paths.app)?;
    // `resources: {}` is set-but-empty, which the kubelet treats as not set.
    let resources = pod_resources_from(
        spec.get("resources"),
        &paths.pod_resources,
        Rules::ApiServer,
    )?;
    let annotations = annotations_from(
        meta.get("annotations").map(|v| (v, meta.at("annotations"))),
        Rules::ApiServer,
    )?;
    let mut pod = Pod {
        uid,
        name,
        namespace,
        containers: containers.into(),
        init_containers: init_containers.into(),
        resources,
        tier: tier_of(&annotations, &meta.at("annotations"))?,
        annotations,
        qos: OnceLock::new(),
        index: OnceLock::new(),
    };
    if defaults {
        pod.apply_defaults();
    }
    pod.check_requirements(&paths, Rules::ApiServer)?;
    if defaults {
        check_pod_consistency(&pod, &paths)?;
    }
    Ok(pod)
}

/// Each pod uid at most once among `pods` (one manifest list, the documents and files of one
/// command, one batch): a second copy would be reported admitted while the first holds the
/// memory. Each pod comes with the label that says where it was read.
pub fn check_unique_uids<'a>(pods: impl IntoIterator<Item = (&'a Pod, &'a str)>) -> Result<()> {
    let mut seen: HashMap<&str, &str> = HashMap::new();
    for (pod, label) in pods {
        if let Some(first) = seen.insert(&pod.uid, label) {
            return Err(EngineError::Pod {
                message: format!(
                    "{label}: pod uid {} is given twice (also {first}); a pod is admitted once",
                    shown(&pod.uid)
                ),
                field: Some(label.to_string()),
            });
        }
    }
    Ok(())
}

/// `resourceQOS`: Guaranteed when cpu and memory are both requested and limited alike,
/// BestEffort when neither is, Burstable otherwise.
fn resource_qos(
    requests: &BTreeMap<String, Quantity>,
    limits: &BTreeMap<String, Quantity>,
) -> QosClass {
    if requests.is_empty() && limits.is_empty() {
        return QosClass::BestEffort;
    }
    let mut qos = None;
    for name in ["cpu", "memory"] {
        let req = requests.get(name).copied().unwrap_or(Quantity::ZERO);
        let lim = limits.get(name).copied().unwrap_or(Quantity::ZERO);
        if req != lim {
            return QosClass::Burstable;
        }
        let best_effort = !req.is_positive() && !lim.is_positive();
        match qos {
            None if best_effort => qos = Some(QosClass::BestEffort),
            None => qos = Some(QosClass::Guaranteed),
            Some(q) if best_effort != (q == QosClass::BestEffort) => return QosClass::Burstable,
            Some(_) => {}
        }
    }
    qos.unwrap_or(QosClass::BestEffort)
}

/// `IsContainerEquivalentQOSGuaranteed`: the container requests cpu and memory, each equal
/// to its limit. Under the pod-level resource managers only such a container gets exclusive
/// memory; the others share the pod's pool.
pub fn is_equivalent_guaranteed(c: &Container) -> bool {
    ["cpu", "memory"].iter().all(|name| {
        let req = c.requests.get(*name).copied().unwrap_or(Quantity::ZERO);
        let lim = c.limits.get(*name).copied().unwrap_or(Quantity::ZERO);
        req.is_positive() && req == lim
    })
}

/// `getPodRequestedResources` under the pod-level resource managers: the pod's own memory and
/// hugepage requests above zero (its budget).
pub fn pod_budget(pod: &Pod) -> Result<Requested> {
    let mut out = Requested::new();
    for (name, q) in &pod.resources.requests {
        if !is_memory_resource(name) {
            continue;
        }
        let v = q.as_i64().ok_or_else(|| {
            EngineError::Allocation("[memorymanager] failed to represent quantity as int64".into())
        })?;
        if v > 0 {
            out.insert(name.clone(), v as u64);
        }
    }
    Ok(out)
}

/// What the API server lets a resize (the pod's `resize` subresource) change: the cpu and
/// memory requests and limits of app containers and sidecars, and of the pod itself; the
/// containers stay the same ones. `old` is the pod as allocated, `new` as desired.
pub fn check_resize(old: &Pod, new: &Pod) -> Result<()> {
    let forbid = |at: &str, why: &str| P.error(at, format!("Forbidden: {why}"));
    let names = |cs: &[Container]| -> Vec<(String, bool)> {
        cs.iter().map(|c| (c.name.clone(), c.restartable)).collect()
    };
    if names(&old.init_containers) != names(&new.init_containers)
        || names(&old.containers) != names(&new.containers)
    {
        return Err(forbid(
            "spec",
            "a resize may not add, remove, rename or reorder containers",
        ));
    }
    let mutable = |name: &str| name == "cpu" || name == "memory";
    let others = |m: &BTreeMap<String, Quantity>| -> Vec<(String, Quantity)> {
        m.iter()
            .filter(|(n, _)| !mutable(n))
            .map(|(n, q)| (n.clone(), *q))
            .collect()
    };
    let lists = [
        ("initContainers", &old.init_containers, &new.init_containers),
        ("containers", &old.containers, &new.containers),
    ];
    for (list, before, after) in lists {
        for (i, (a, b)) in before.iter().zip(after.iter()).enumerate() {
            let at = format!("spec.{list}[{i}].resources");
            let resizable = list == "containers" || a.restartable;
            if !resizable && (a.requests != b.requests || a.limits != b.limits) {
                return Err(forbid(
                    &at,
                    "the resources of an init container that is not a sidecar are immutable",
                ));
            }
            if others(&a.requests) != others(&b.requests) || others(&a.limits) != others(&b.limits)
            {
                return Err(forbid(&at, "only cpu and memory resources are mutable"));
            }
        }
    }
    let (a, b) = (&old.resources, &new.resources);
    if others(&a.requests) != others(&b.requests) || others(&a.limits) != others(&b.limits) {
        return Err(forbid(
            "spec.resources",
            "only cpu and memory resources are mutable",
        ));
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod_err(v: Value) -> String {
        Pod::from_value(&v).unwrap_err().message().to_string()
    }

    fn one(c: Value) -> Value {
        json!({"uid": "u", "containers": [c]})
    }

    fn manifest(spec: Value) -> Value {
        json!({"kind": "Pod", "metadata": {"name": "p"}, "spec": spec})
    }

    #[test]
    fn names_follow_the_api_server() {
        let e = pod_err(one(json!({"name": "fakeContainer1"})));
        assert!(
            e.starts_with(
                "containers[0].name: invalid value \"fakeContainer1\": a lowercase RFC 1123 label"
            ),
            "{e}"
        );
        assert!(pod_err(one(json!({"name": "a".repeat(64)}))).contains("no more than 63"));
        let e = pod_err(json!({"uid": "u", "name": "x".repeat(254)}));
        assert!(
            e.starts_with("name: ") && e.contains("no more than 253"),
            "{e}"
        );
        assert!(pod_err(json!({"uid": "u", "namespace": "a.b"})).contains("must not contain dots"));
        let e = pod_err(json!({"uid": "a\nadmitted root"}));
        assert!(e.contains("U+000A") && !e.contains('\n'), "{e}");
        assert!(pod_err(json!({"uid": "x\u{202e}y"})).contains("U+202E"));
        assert_eq!(pod_err(json!({"uid": ""})), "uid: must not be empty");
        // The kubelet's own data keeps its names and empty uids.
        let kubelet = json!({"uid": "", "containers": [{"name": "fakeContainer1",
            "requests": {"hugepages-1Gi": "1Gi"}, "limits": {"hugepages-1Gi": "2Gi"}}]});
        assert!(Pod::from_value_by(&kubelet, Rules::Kubelet).is_ok());
        assert!(Pod::from_value(&kubelet).is_err());
    }

    #[test]
    fn resource_names_and_values_follow_the_api_server() {
        let lim = |name: &str, q: &str| one(json!({"name": "c", "limits": {"cpu": "1", name: q}}));
        let e = pod_err(lim("m\u{0435}mory", "1Gi"));
        assert!(e.contains("character 2 is U+0435"), "{e}");
        assert!(pod_err(lim("gpu", "1")).contains("must be a standard resource"));
        assert!(pod_err(lim("pods", "1")).contains("standard resource for containers"));
        assert!(Pod::from_value(&lim("example.com/gpu", "2")).is_ok());
        assert!(pod_err(lim("example.com/gpu", "500m")).contains("must be an integer"));
        let e = pod_err(lim("hugepages-2Mi", "3Mi"));
        assert!(
            e.contains("not positive integer multiple of hugepages-2Mi"),
            "{e}"
        );
        assert!(Pod::from_value(&lim("hugepages-2Mi", "4Mi")).is_ok());
        let e = pod_err(lim("memory", "10Ei"));
        assert!(
            e.contains("out of range") && e.contains("9223372036854775807"),
            "{e}"
        );
    }

    #[test]
    fn requests_against_limits_follow_the_api_server() {
        let c = |req: Value, lim: Value| one(json!({"name": "c", "requests": req, "limits": lim}));
        let e = pod_err(c(
            json!({"hugepages-2Mi": "2Mi", "memory": "1Gi"}),
            json!({"hugepages-2Mi": "4Mi", "memory": "1Gi"}),
        ));
        assert!(
            e.contains("must be equal to hugepages-2Mi limit of 4Mi"),
            "{e}"
        );
        let e = pod_err(c(
            json!({"hugepages-2Mi": "2Mi", "memory": "1Gi"}),
            json!({}),
        ));
        assert!(
            e.starts_with("containers[0].limits: Limit must be set"),
            "{e}"
        );
        let e = pod_err(c(
            json!({"hugepages-2Mi": "2Mi"}),
            json!({"hugepages-2Mi": "2Mi"}),
        ));
        assert_eq!(e, "containers[0]: HugePages require cpu or memory");
        assert!(
            pod_err(c(json!({"memory": "2Gi"}), json!({"memory": "1Gi"})))
                .contains("less than or equal")
        );
    }

    #[test]
    fn pod_level_resources_are_decoded_defaulted_and_checked() {
        let p = Pod::from_value(&json!({"uid": "u",
            "resources": {"requests": {"cpu": "2", "memory": "6Gi"}, "limits": {"cpu": "2", "memory": "6Gi"}}}))
        .unwrap();
        assert!(p.has_pod_level_resources());
        assert_eq!(
            p.resources.limits["memory"],
            Quantity::parse("6Gi").unwrap()
        );
        let e = pod_err(json!({"uid": "u", "resources": {"limits": {"ephemeral-storage": "1Gi"}}}));
        assert!(e.contains("supported values"), "{e}");
        let e = pod_err(
            json!({"uid": "u", "resources": {"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}}}),
        );
        assert!(
            e.starts_with("resources.requests.memory: must be less than or equal"),
            "{e}"
        );
        // defaults.go: pod requests from the containers' requests, then from the pod's limits.
        let spec = json!({"containers": [
            {"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}},
            {"name": "b", "resources": {"requests": {"memory": "2Gi"}}}],
            "resources": {"limits": {"cpu": "4", "memory": "8Gi", "hugepages-2Mi": "4Mi"}}});
        let p = Pod::from_manifest(&manifest(spec), true).unwrap().remove(0);
        let req = |n: &str| p.resources.requests[n].to_string();
        assert_eq!(
            (req("cpu"), req("memory"), req("hugepages-2Mi")),
            ("1".into(), "3Gi".into(), "4Mi".into())
        );
        // validatePodResourceConsistency, on the defaulted pod.
        let spec = json!({"containers": [
            {"name": "a", "resources": {"limits": {"cpu": "1", "memory": "5Gi"}}}],
            "resources": {"requests": {"memory": "3Gi"}, "limits": {"memory": "4Gi"}}});
        let e = Pod::from_manifest(&manifest(spec.clone()), true).unwrap_err();
        assert!(
            e.message()
                .contains("greater than or equal to aggregate container requests of 5Gi"),
            "{}",
            e.message()
        );
        assert!(Pod::from_manifest(&manifest(spec), false).is_ok());
    }

    #[test]
    fn a_uid_once_per_list() {
        let item =
            json!({"metadata": {"name": "p", "uid": "x"}, "spec": {"containers": [{"name": "c"}]}});
        let list = json!({"kind": "List", "items": [item, item]});
        let e = Pod::from_manifest(&list, false).unwrap_err();
        assert_eq!(
            e.message(),
            "items[1]: pod uid \"x\" is given twice (also items[0]); a pod is admitted once"
        );
    }

    #[test]
    fn an_unknown_container_is_not_found() {
        let p = Pod::from_value(&one(json!({"name": "c"}))).unwrap();
        assert!(p.require_container("c").is_ok());
        match p.require_container("d").unwrap_err() {
            EngineError::NotFound { container, .. } => assert_eq!(container.as_deref(), Some("d")),
            other => panic!("{other:?}"),
        }
    }
}
