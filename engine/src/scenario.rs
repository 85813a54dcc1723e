//! The scenario format of the kubelet reference sets (`tests/conformance/SCENARIOS.md`): its
//! one decoder, its replay on the engine, and the comparison of results under that file's
//! rules. `cargo test` replays every reference set through this module, so a Rust-only change
//! is checked against the real kubelet without Python; `pymm replay` runs the same code.
//!
//! A scenario's operations map onto the engine's lifecycle ([`crate::lifecycle`]) as the
//! kubelet's harness drives the kubelet: `admit` is [`Op::Admit`] (then, with `start`, every
//! container starts), `remove` is [`Op::Stop`] (the kubelet's `RemoveContainer`), `removePod`
//! is [`Op::StopPod`], `restart` is [`Op::Restart`] from the state file as written, and
//! pymm's `resize` is [`Op::Resize`].

use crate::config::Config;
use crate::decode::{index, kind, Obj, Subject};
use crate::error::{EngineError, Result};
use crate::lifecycle::{Op, Outcome, Restart};
use crate::machine::Machine;
use crate::manager::{AdmitResult, Manager};
use crate::nodemask::IdMap;
use crate::provider::{answer_value, hint_value};
use crate::quantity::Quantity;
use crate::request::Pod;
use crate::version::KubeletVersion;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

const S: Subject = Subject::Scenario;

/// Hugepage sizes every node reports when a scenario names none, as on x86_64.
const DEFAULT_HUGEPAGE_SIZES: [&str; 2] = ["2Mi", "1Gi"];

const SCENARIO_KEYS: [&str; 16] = [
    "name",
    "description",
    "kubeletVersion",
    "machine",
    "reservedMemory",
    "nodeAllocatableReservation",
    "memoryManagerPolicy",
    "memoryManagerPolicyOptions",
    "topologyManagerPolicy",
    "topologyManagerScope",
    "topologyManagerPolicyOptions",
    "featureGates",
    "useFakeProvider",
    "applyDefaults",
    "ops",
    // The kubelet harness's own switch (which state files to keep); nothing to replay.
    "dumpStateFiles",
];

/// A decoded scenario. The machine and the configuration are kept as the engine's plain data
/// and built when the scenario runs: one the engine refuses is the scenario's setup error, as
/// a kubelet that does not start.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    /// The engine's machine description (`Machine::from_value`).
    pub machine: Value,
    /// The engine's configuration keys (`Config::from_value`), the replay's kubelet version
    /// not yet applied.
    pub config: Map<String, Value>,
    /// The scenario's own `kubeletVersion`, which wins over the replay's.
    pub kubelet_version: Option<String>,
    pub steps: Vec<Step>,
}

/// One operation of a scenario, decoded.
#[derive(Debug, Clone)]
pub enum Step {
    Admit {
        pod: Arc<Pod>,
        /// The fake provider's hints (`useFakeProvider`), in the engine's provider shape.
        hints: Option<Value>,
        start: bool,
    },
    Remove {
        pod_uid: String,
        container: String,
    },
    RemovePod {
        pod_uid: String,
    },
    Restart {
        machine: Option<Value>,
        reserved_memory: Option<Value>,
        node_allocatable: Option<Value>,
    },
    /// An in-place resize to the pod given (pymm's scenario operation: no kubelet reference
    /// set has one yet).
    Resize {
        pod: Arc<Pod>,
    },
}

impl Step {
    /// The lifecycle operation this step is, on manager `m` (a restart reads `checkpoint`,
    /// the state file as the host kept it, named `state_path` in errors). The one place the
    /// scenario format's operations get their meaning.
    pub fn op(
        &self,
        m: &Manager,
        trace: bool,
        checkpoint: String,
        state_path: String,
    ) -> Result<Op> {
        Ok(match self {
            Step::Admit { pod, hints, start } => Op::Admit {
                pod: Arc::clone(pod),
                hints: hints.clone(),
                start: *start,
                trace,
            },
            Step::Remove { pod_uid, container } => Op::Stop {
                pod_uid: pod_uid.clone(),
                container: container.clone(),
            },
            Step::RemovePod { pod_uid } => Op::StopPod {
                pod_uid: pod_uid.clone(),
            },
            Step::Restart {
                machine,
                reserved_memory,
                node_allocatable,
            } => restart_op(
                m,
                checkpoint,
                state_path,
                machine,
                reserved_memory,
                node_allocatable,
            )?,
            Step::Resize { pod } => Op::Resize {
                pod: Arc::clone(pod),
            },
        })
    }

    /// Whether [`Step::op`] needs the state file's text (only a restart reads it).
    pub fn reads_state(&self) -> bool {
        matches!(self, Step::Restart { .. })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Step::Admit { .. } => "admit",
            Step::Remove { .. } => "remove",
            Step::RemovePod { .. } => "removePod",
            Step::Restart { .. } => "restart",
            Step::Resize { .. } => "resize",
        }
    }
}

fn in_scenario(label: &str, e: EngineError) -> EngineError {
    match e {
        EngineError::Scenario { message, path } => EngineError::Scenario {
            message: format!("{label}: {message}"),
            path,
        },
        other => {
            let text = format!("{label}: {}", other.message());
            EngineError::Scenario {
                message: text,
                path: None,
            }
        }
    }
}

/// The scenarios of a file: `{"scenarios": [...]}`, or a results file whose results embed
/// their scenario (`{"results": [{"scenario": {...}}]}`, as the newest reference sets do).
pub fn scenarios_from(v: &Value) -> Result<Vec<Scenario>> {
    let top = Obj::new(v, "", S)?;
    let list: Vec<(&Value, String)> = if let Some(items) = top.list("scenarios")? {
        items
            .iter()
            .enumerate()
            .map(|(i, s)| (s, index("scenarios", i)))
            .collect()
    } else if let Some(items) = top.list("results")? {
        let mut out = Vec::new();
        for (i, r) in items.iter().enumerate() {
            let at = index("results", i);
            match r.get("scenario") {
                Some(s) => out.push((s, format!("{at}.scenario"))),
                None => return Err(S.error(
                    &at,
                    "a results file can be replayed only when each result embeds its 'scenario'",
                )),
            }
        }
        out
    } else {
        return Err(S.error(
            "",
            "expected an object with a list 'scenarios' (or 'results' that embed their 'scenario')",
        ));
    };
    list.into_iter()
        .map(|(s, at)| Scenario::from_value(s, &at))
        .collect()
}

/// Bytes, from a byte count or a Kubernetes quantity.
fn bytes(v: &Value, at: &str) -> Result<u64> {
    let out_of_range = || {
        S.error(
            at,
            format!("out of range: a size is 0 to {} bytes", u64::MAX),
        )
    };
    match v {
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(b), _, _) => Ok(b),
            (None, Some(_), _) => Err(out_of_range()),
            // A whole number beyond 64 bits arrives as a float.
            (_, _, Some(f)) if f.fract() == 0.0 => Err(out_of_range()),
            _ => Err(S.error(at, format!("expected a whole number of bytes, got {n}"))),
        },
        Value::String(s) => {
            let q = Quantity::parse(s).map_err(|e| S.error(at, e.message()))?;
            u64::try_from(q.value()).map_err(|_| out_of_range())
        }
        other => Err(S.error(
            at,
            format!("expected bytes or a quantity, got {}", kind(other)),
        )),
    }
}

/// A hugepage size (`"2Mi"`, or KiB as a number) in KiB.
fn page_kib(v: &Value, at: &str) -> Result<u64> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .filter(|k| *k > 0)
            .ok_or_else(|| S.error(at, format!("expected a page size in KiB, got {n}"))),
        Value::String(s) => {
            let b = Quantity::parse(s.trim_start_matches("hugepages-"))
                .ok()
                .and_then(|q| u64::try_from(q.value()).ok())
                .filter(|b| *b > 0 && b % 1024 == 0)
                .ok_or_else(|| {
                    S.error(
                        at,
                        format!("hugepage size {s:?} is not a positive multiple of 1Ki"),
                    )
                })?;
            Ok(b / 1024)
        }
        other => Err(S.error(
            at,
            format!("expected a page size such as \"2Mi\", got {}", kind(other)),
        )),
    }
}

/// A scenario's `machine` as the engine's machine description: every node reports every
/// page size of `hugepageSizes` (0 pages where it has none), as cadvisor does on x86_64.
pub fn machine_value(v: &Value, at: &str) -> Result<Value> {
    let m = Obj::new(v, at, S)?;
    m.deny_unknown("machine key", &["numaNodes", "hugepageSizes", "name"])?;
    let nodes = m
        .list("numaNodes")?
        .ok_or_else(|| m.err("numaNodes", "required"))?;
    let sizes: Vec<(String, u64)> = match m.list("hugepageSizes")? {
        None => DEFAULT_HUGEPAGE_SIZES
            .iter()
            .map(|s| {
                Ok((
                    (*s).to_string(),
                    page_kib(&json!(s), &m.at("hugepageSizes"))?,
                ))
            })
            .collect::<Result<_>>()?,
        Some(list) => list
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let name = match s {
                    Value::String(t) => t.clone(),
                    other => other.to_string(),
                };
                Ok((name, page_kib(s, &index(&m.at("hugepageSizes"), i))?))
            })
            .collect::<Result<_>>()?,
    };
    let mut out_nodes = Vec::new();
    let mut rows = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let at = index(&m.at("numaNodes"), i);
        let node = Obj::new(n, &at, S)?;
        node.deny_unknown(
            "NUMA node key",
            &["id", "memory", "hugepages", "distances", "cpus", "kind"],
        )?;
        let id = match node.get("id") {
            Some(Value::Number(x)) if x.is_u64() => x.clone(),
            Some(other) => {
                return Err(node.err(
                    "id",
                    format!("expected a NUMA node id, got {}", kind(other)),
                ))
            }
            None => return Err(node.err("id", "required")),
        };
        let memory = match node.get("memory") {
            Some(x) => bytes(x, &node.at("memory"))?,
            None => 0,
        };
        let have = match node.get("hugepages") {
            None | Some(Value::Null) => None,
            Some(_) => node.obj("hugepages")?,
        };
        if let Some(h) = &have {
            for size in h.map.keys() {
                if !sizes.iter().any(|(s, _)| s == size) {
                    return Err(h.err(size, "this page size is not in the machine's hugepageSizes"));
                }
            }
        }
        let mut pools = Vec::new();
        for (size, kib) in &sizes {
            let total = match have.as_ref().and_then(|h| h.get(size)) {
                Some(x) => bytes(x, &have.as_ref().map_or(String::new(), |h| h.at(size)))?,
                None => 0,
            };
            let page = kib * 1024;
            if total % page != 0 {
                let where_ = have.as_ref().map_or(String::new(), |h| h.at(size));
                return Err(S.error(
                    &where_,
                    format!("{total} bytes is not a whole number of {size} pages"),
                ));
            }
            pools.push(json!({"page_size_kib": kib, "num_pages": total / page}));
        }
        let mut out = json!({"id": id, "memory_bytes": memory, "hugepages": pools});
        for key in ["cpus", "kind"] {
            if let Some(x) = node.get(key) {
                out[key] = x.clone();
            }
        }
        out_nodes.push(out);
        rows.push(node.get("distances").cloned());
    }
    let distances = if rows.iter().all(|r| matches!(r, Some(Value::Array(_)))) {
        Value::Array(rows.into_iter().flatten().collect())
    } else {
        Value::Null
    };
    Ok(json!({
        "name": m.str("name")?.unwrap_or("scenario"),
        "nodes": out_nodes,
        "distances": distances,
    }))
}

/// `reservedMemory` in the scenario: a list of `{numaNode, limits}`.
fn reserved_value(v: &Value, at: &str) -> Result<Value> {
    let Value::Array(items) = v else {
        return Err(S.error(at, format!("expected a list, got {}", kind(v))));
    };
    for (i, e) in items.iter().enumerate() {
        let o = Obj::new(e, &index(at, i), S)?;
        o.deny_unknown("reservedMemory key", &["numaNode", "limits"])?;
        for k in ["numaNode", "limits"] {
            if o.get(k).is_none() {
                return Err(o.err(k, "required"));
            }
        }
    }
    // The values (quantities, node ids) are the configuration's: checked, with the kubelet's
    // texts, when the manager is built.
    Ok(v.clone())
}

fn string_field(o: &Obj<'_>, key: &str) -> Result<String> {
    match o.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(o.err(key, format!("expected a string, got {}", kind(other)))),
        None => Err(o.err(key, "required")),
    }
}

fn options_value(o: &Obj<'_>, key: &str) -> Result<Option<Value>> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Object(_)) => Ok(Some(v.clone())),
        Some(other) => Err(o.err(
            key,
            format!(
                "expected a map of option names to values, got {}",
                kind(other)
            ),
        )),
    }
}

/// The pod of an `admit`, and its fake provider's hints.
fn admit_pod(v: &Value, at: &str, defaults: bool, fake: bool) -> Result<(Arc<Pod>, Option<Value>)> {
    let raw = Obj::new(v, at, S)?;
    let mut spec = raw.map.clone();
    let pod_hints = spec.remove("fakePodHints");
    let mut container_hints = Map::new();
    for key in ["initContainers", "containers"] {
        if let Some(Value::Array(cs)) = spec.get_mut(key) {
            for c in cs.iter_mut() {
                if let Value::Object(c) = c {
                    let h = c.remove("fakeHints");
                    if let Some(Value::String(name)) = c.get("name") {
                        container_hints.insert(name.clone(), h.unwrap_or(Value::Null));
                    }
                }
            }
        }
    }
    let pod = Pod::from_spec(&Value::Object(spec), defaults).map_err(|e| {
        let text = e.message();
        let (path, rest) = match &e {
            EngineError::Pod { field: Some(f), .. } if !f.is_empty() => (
                format!("{at}.{f}"),
                text.strip_prefix(&format!("{f}: ")).unwrap_or(text),
            ),
            _ => (at.to_string(), text),
        };
        EngineError::Scenario {
            message: format!("{path}: {rest}"),
            path: Some(path),
        }
    })?;
    let hints = fake.then(|| {
        json!([{
            "name": "fake",
            "containers": container_hints,
            "pod": pod_hints.unwrap_or(Value::Null),
        }])
    });
    Ok((Arc::new(pod), hints))
}

impl Scenario {
    /// Decodes one scenario; `at` is its place in the file, for messages.
    pub fn from_value(v: &Value, at: &str) -> Result<Scenario> {
        let o = Obj::new(v, at, S)?;
        let label = match o.get("name") {
            Some(Value::String(s)) => format!("scenario {s:?}"),
            _ => at.to_string(),
        };
        let inner = Obj::new(v, "", S)?;
        Scenario::decode(&inner).map_err(|e| in_scenario(&label, e))
    }

    fn decode(o: &Obj<'_>) -> Result<Scenario> {
        o.deny_unknown("scenario key", &SCENARIO_KEYS)?;
        let name = o.str("name")?.unwrap_or("?").to_string();
        let machine = machine_value(o.get("machine").unwrap_or(&Value::Null), &o.at("machine"))?;
        let mut config = Map::new();
        config.insert("search".into(), json!("exact"));
        // The format's own defaults: the kubelet's Static policy with the Topology Manager off.
        config.insert(
            "memory_policy".into(),
            json!(o.str("memoryManagerPolicy")?.unwrap_or("Static")),
        );
        config.insert(
            "topology_policy".into(),
            json!(o.str("topologyManagerPolicy")?.unwrap_or("none")),
        );
        config.insert(
            "scope".into(),
            json!(o.str("topologyManagerScope")?.unwrap_or("container")),
        );
        let reserved = match o.get("reservedMemory") {
            None | Some(Value::Null) => json!([]),
            Some(v) => reserved_value(v, &o.at("reservedMemory"))?,
        };
        config.insert("reserved_memory".into(), reserved);
        if let Some(na) = o.obj("nodeAllocatableReservation")? {
            config.insert("node_allocatable".into(), Value::Object(na.map.clone()));
        }
        if let Some(v) = options_value(o, "topologyManagerPolicyOptions")? {
            config.insert("policy_options".into(), v);
        }
        if let Some(v) = options_value(o, "memoryManagerPolicyOptions")? {
            config.insert("memory_policy_options".into(), v);
        }
        if let Some(v) = options_value(o, "featureGates")? {
            // Gate names and values are the configuration's to check, against the kubelet
            // version the scenario runs with.
            config.insert("feature_gates".into(), v);
        }
        let defaults = o.bool("applyDefaults")?.unwrap_or(true);
        let fake = o.bool("useFakeProvider")?.unwrap_or(false);
        let ops = o.list("ops")?.map(Vec::as_slice).unwrap_or_default();
        let mut steps = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            let at = index(&o.at("ops"), i);
            let x = Obj::new(op, &at, S)?;
            let step = match x.get("op") {
                Some(Value::String(s)) if s == "admit" => {
                    x.deny_unknown("admit key", &["op", "pod", "start"])?;
                    let raw = x.get("pod").ok_or_else(|| x.err("pod", "required"))?;
                    let (pod, hints) = admit_pod(raw, &x.at("pod"), defaults, fake)?;
                    Step::Admit {
                        pod,
                        hints,
                        start: x.bool("start")?.unwrap_or(true),
                    }
                }
                Some(Value::String(s)) if s == "remove" => {
                    x.deny_unknown("remove key", &["op", "podUID", "container"])?;
                    Step::Remove {
                        pod_uid: string_field(&x, "podUID")?,
                        container: string_field(&x, "container")?,
                    }
                }
                Some(Value::String(s)) if s == "removePod" => {
                    x.deny_unknown("removePod key", &["op", "podUID"])?;
                    Step::RemovePod {
                        pod_uid: string_field(&x, "podUID")?,
                    }
                }
                Some(Value::String(s)) if s == "restart" => {
                    x.deny_unknown(
                        "restart key",
                        &[
                            "op",
                            "machine",
                            "reservedMemory",
                            "nodeAllocatableReservation",
                        ],
                    )?;
                    Step::Restart {
                        machine: match x.get("machine") {
                            None | Some(Value::Null) => None,
                            Some(m) => Some(machine_value(m, &x.at("machine"))?),
                        },
                        reserved_memory: match x.get("reservedMemory") {
                            None | Some(Value::Null) => None,
                            Some(r) => Some(reserved_value(r, &x.at("reservedMemory"))?),
                        },
                        node_allocatable: x
                            .obj("nodeAllocatableReservation")?
                            .map(|n| Value::Object(n.map.clone())),
                    }
                }
                Some(Value::String(s)) if s == "resize" => {
                    x.deny_unknown("resize key", &["op", "pod"])?;
                    let raw = x.get("pod").ok_or_else(|| x.err("pod", "required"))?;
                    let (pod, _) = admit_pod(raw, &x.at("pod"), defaults, false)?;
                    Step::Resize { pod }
                }
                Some(Value::String(s)) => {
                    return Err(EngineError::unknown_key(
                        "op",
                        s,
                        &["admit", "remove", "removePod", "restart", "resize"],
                    )
                    .with_path(&x.at("op")))
                }
                Some(other) => {
                    return Err(x.err("op", format!("expected a string, got {}", kind(other))))
                }
                None => return Err(x.err("op", "required")),
            };
            steps.push(step);
        }
        Ok(Scenario {
            name,
            description: o.str("description")?.unwrap_or_default().to_string(),
            machine,
            config,
            kubelet_version: o.str("kubeletVersion")?.map(str::to_string),
            steps,
        })
    }

    /// The configuration this scenario runs with, `kubelet_version` applying when the
    /// scenario names none.
    pub fn config_value(&self, kubelet_version: Option<&str>) -> Value {
        let mut c = self.config.clone();
        if let Some(v) = self.kubelet_version.as_deref().or(kubelet_version) {
            c.insert("kubelet_version".into(), json!(v));
        }
        Value::Object(c)
    }
}

impl EngineError {
    /// The same error as a scenario error at `path`.
    fn with_path(self, path: &str) -> EngineError {
        EngineError::Scenario {
            message: format!("{path}: {}", self.message()),
            path: Some(path.to_string()),
        }
    }
}

/// Where a replay keeps the state file: in memory, or (a host that persists) on disk. The
/// kubelet restarts from the file it wrote; a host that writes and reads it back makes a
/// restart take the real path.
pub trait Host {
    /// The text a restart reads, and the path it names in errors, for the state `text`.
    fn restart_from(&mut self, text: &str) -> Result<(String, String)> {
        Ok((text.to_string(), "memory_manager_state".to_string()))
    }
    /// Called with the state file after every operation (a durable replay writes it).
    fn after(&mut self, _text: &str) -> Result<()> {
        Ok(())
    }
}

/// A replay in memory.
pub struct InMemory;
impl Host for InMemory {}

/// Which step of the kubelet's start-up an error comes from (the reference harness names it):
/// building the manager (`NewManager`: configuration, reservation) or starting it (`Start`:
/// restoring and validating the state file).
fn startup_step(e: &EngineError) -> &'static str {
    match e {
        EngineError::CorruptCheckpoint { .. }
        | EngineError::PolicyMismatch { .. }
        | EngineError::StateMismatch { .. } => "memorymanager.Start",
        _ => "memorymanager.NewManager",
    }
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// Every topology-manager consultation of an admission, in the results format.
pub fn hint_calls_value(a: &AdmitResult, map: &IdMap) -> Vec<Value> {
    a.hint_calls
        .iter()
        .map(|c| {
            let providers: Map<String, Value> = c
                .providers
                .iter()
                .map(|(n, p)| (n.clone(), answer_value(p, map)))
                .collect();
            json!({"container": c.container, "scope": c.scope.as_str(), "providers": providers,
                   "merged": hint_value(&c.merged, map), "mergeAdmit": c.admit})
        })
        .collect()
}

/// Every Allocate call of an admission, in the results format.
pub fn allocations_value(a: &AdmitResult, map: &IdMap) -> Vec<Value> {
    a.allocations
        .iter()
        .map(|x| {
            json!({"container": x.container,
                   "affinityFromStore": hint_value(&x.affinity_from_store, map),
                   "error": x.error,
                   "blocks": x.blocks.as_ref().map(|b| blocks_value(b))})
        })
        .collect()
}

fn admission_value(r: &mut Map<String, Value>, a: &AdmitResult, m: &Manager) {
    let calls = hint_calls_value(a, m.id_map());
    let allocations = allocations_value(a, m.id_map());
    if !calls.is_empty() {
        r.insert("hintCalls".into(), Value::Array(calls));
    }
    if !allocations.is_empty() {
        r.insert("allocations".into(), Value::Array(allocations));
    }
    r.insert("admit".into(), json!(a.admit));
    if !a.admit {
        r.insert("reason".into(), json!(a.reason));
        r.insert("message".into(), json!(a.message));
        // Hint generation itself failed (the kubelet crashes there), or nothing was asked.
        let failed_before_allocate = a.allocations.is_empty()
            && (a.hint_calls.is_empty()
                || a.reason.as_deref() == Some(crate::manager::UNEXPECTED_ADMISSION_ERROR));
        if failed_before_allocate {
            r.insert("error".into(), json!(a.message));
        }
    }
}

/// A resize in the results format: `admit`, and `reason`/`message` when refused; the
/// containers whose blocks changed (pymm's `resize-in-place`) in `resized`.
fn resize_value(r: &mut Map<String, Value>, z: &crate::manager::ResizeResult) {
    r.insert("admit".into(), json!(z.admit));
    if !z.admit {
        r.insert("reason".into(), json!(z.reason));
        r.insert("message".into(), json!(z.message));
    }
    if !z.changed.is_empty() {
        let changed: Vec<Value> = z
            .changed
            .iter()
            .map(|(p, c, b)| json!({"podUID": p, "container": c, "blocks": blocks_value(b)}))
            .collect();
        r.insert("resized".into(), Value::Array(changed));
    }
}

pub fn blocks_value(b: &[crate::state::Block]) -> Value {
    Value::Array(
        b.iter()
            .map(|b| json!({"numaAffinity": b.numa_affinity, "type": b.resource, "size": b.size}))
            .collect(),
    )
}

/// Runs one scenario and returns its results in the reference format.
pub fn replay(sc: &Scenario, kubelet_version: Option<&str>, host: &mut dyn Host) -> Result<Value> {
    let setup = |e: EngineError| json!({"name": sc.name, "setupError": e.message(), "results": []});
    let config_value = sc.config_value(kubelet_version);
    let built = Machine::from_value(&sc.machine).and_then(|machine| {
        let config = Config::from_value(&config_value)?;
        Manager::new(machine, config, None, "memory_manager_state")
    });
    let mut m = match built {
        Ok(m) => m,
        Err(e) => return Ok(setup(e)),
    };
    let mut allocatable: Vec<(i64, String, u64)> = m
        .allocatable_memory()
        .iter()
        .map(|b| {
            (
                b.affinity().first().copied().unwrap_or(-1),
                b.resource.clone(),
                b.size,
            )
        })
        .collect();
    allocatable.sort();
    let allocatable: Vec<Value> = allocatable
        .into_iter()
        .map(|(n, r, s)| json!({"numaAffinity": [n], "type": r, "size": s}))
        .collect();
    let first = m.checkpoint_json();
    host.after(&first)?;
    let mut results = Vec::with_capacity(sc.steps.len());
    for (i, step) in sc.steps.iter().enumerate() {
        let mut r = Map::new();
        r.insert("index".into(), json!(i));
        r.insert("op".into(), json!(step.name()));
        let mut stop = false;
        match step {
            Step::Admit { pod, .. } => {
                r.insert("podUID".into(), json!(pod.uid));
            }
            Step::Remove { pod_uid, container } => {
                r.insert("podUID".into(), json!(pod_uid));
                r.insert("container".into(), json!(container));
            }
            Step::RemovePod { pod_uid } => {
                r.insert("podUID".into(), json!(pod_uid));
            }
            Step::Resize { pod } => {
                r.insert("podUID".into(), json!(pod.uid));
            }
            Step::Restart { .. } => {}
        }
        let (text, path) = if step.reads_state() {
            host.restart_from(&m.checkpoint_json())?
        } else {
            (String::new(), String::new())
        };
        match step.op(&m, true, text, path).and_then(|op| m.apply(&op)) {
            Ok(Outcome::Admission(a)) => admission_value(&mut r, &a, &m),
            Ok(Outcome::Resized(z)) => resize_value(&mut r, &z),
            Ok(_) => {}
            Err(e) if step.reads_state() => {
                r.insert(
                    "error".into(),
                    json!(format!("{}: {}", startup_step(&e), e.message())),
                );
                stop = true;
            }
            Err(e) => {
                r.insert("admit".into(), json!(false));
                r.insert("error".into(), json!(e.message()));
            }
        }
        let mut active: Vec<String> = m.active_pods().map(|p| p.uid.clone()).collect();
        active.sort();
        r.insert("activePods".into(), json!(active));
        let text = m.checkpoint_json();
        host.after(&text)?;
        r.insert("checkpoint".into(), json_of(&text));
        results.push(Value::Object(r));
        if stop {
            break;
        }
    }
    Ok(json!({
        "name": sc.name,
        "allocatableMemory": allocatable,
        "initialCheckpoint": json_of(&first),
        "results": results,
    }))
}

fn restart_op(
    m: &Manager,
    checkpoint: String,
    state_path: String,
    machine: &Option<Value>,
    reserved_memory: &Option<Value>,
    node_allocatable: &Option<Value>,
) -> Result<Op> {
    let machine = machine.as_ref().map(Machine::from_value).transpose()?;
    let config = if reserved_memory.is_some() || node_allocatable.is_some() {
        let mut c = m.config().to_value();
        if let Some(r) = reserved_memory {
            c["reserved_memory"] = r.clone();
        }
        if let Some(n) = node_allocatable {
            c["node_allocatable"] = n.clone();
        }
        Some(Config::from_value(&c)?)
    } else {
        None
    };
    Ok(Op::Restart(Box::new(Restart {
        checkpoint,
        state_path,
        machine,
        config,
    })))
}

/// The `meta` of a replay's results: the kubelet version scenarios without their own ran
/// with, by its concrete name.
pub fn results_meta(kubelet_version: Option<&str>) -> Value {
    let version = KubeletVersion::parse(kubelet_version.unwrap_or_default()).map_or_else(
        |_| kubelet_version.unwrap_or_default().to_string(),
        |v| v.as_str().to_string(),
    );
    json!({"engine": format!("pymm {}", crate::VERSION), "kubeletVersion": version})
}

/// Replays every scenario in order, handing each one's results to `each` as soon as it is
/// done (a long replay need not hold all of them).
pub fn replay_each(
    scenarios: &[Scenario],
    kubelet_version: Option<&str>,
    host: &mut dyn Host,
    each: &mut dyn FnMut(usize, Value) -> Result<()>,
) -> Result<()> {
    for (i, sc) in scenarios.iter().enumerate() {
        each(i, replay(sc, kubelet_version, host)?)?;
    }
    Ok(())
}

/// Replays every scenario of a file (see [`scenarios_from`]), all results in one value.
pub fn replay_all(
    scenarios: &[Scenario],
    kubelet_version: Option<&str>,
    host: &mut dyn Host,
    progress: &mut dyn FnMut(usize),
) -> Result<Value> {
    let mut results = Vec::with_capacity(scenarios.len());
    replay_each(scenarios, kubelet_version, host, &mut |i, r| {
        results.push(r);
        progress(i + 1);
        Ok(())
    })?;
    Ok(json!({"meta": results_meta(kubelet_version), "results": results}))
}

// -- comparison ---------------------------------------------------------------------------

type BlockKey = (Vec<i64>, String, u64);

fn block_set(v: Option<&Value>) -> Option<Vec<BlockKey>> {
    let Value::Array(blocks) = v? else {
        return None;
    };
    let mut out: Vec<BlockKey> = blocks
        .iter()
        .map(|b| {
            let aff = b["numaAffinity"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_i64).collect())
                .unwrap_or_default();
            (
                aff,
                b["type"].as_str().unwrap_or_default().to_string(),
                b["size"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    out.sort();
    Some(out)
}

type EntriesNorm = BTreeMap<String, BTreeMap<String, Option<Vec<BlockKey>>>>;

fn entries_norm(v: Option<&Value>) -> EntriesNorm {
    let mut out = BTreeMap::new();
    if let Some(Value::Object(pods)) = v {
        for (pod, ctrs) in pods {
            let mut m = BTreeMap::new();
            if let Value::Object(cs) = ctrs {
                for (c, bl) in cs {
                    m.insert(c.clone(), block_set(Some(bl)));
                }
            }
            out.insert(pod.clone(), m);
        }
    }
    out
}

fn pod_entries_norm(v: Option<&Value>) -> BTreeMap<String, Option<Vec<BlockKey>>> {
    let mut out = BTreeMap::new();
    if let Some(Value::Object(pods)) = v {
        for (pod, e) in pods {
            let blocks = e.get("memoryBlocks").filter(|b| !b.is_null());
            out.insert(
                pod.clone(),
                block_set(Some(blocks.unwrap_or(&Value::Array(vec![])))),
            );
        }
    }
    out
}

/// Whether some container or pod holds several blocks: the kubelet's order among them, and so
/// the checksum over them, varies from run to run.
fn has_block_order(state: &Value) -> bool {
    let many = |bl: &Value| bl.as_array().is_some_and(|a| a.len() > 1);
    let containers = state
        .get("entries")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|pods| pods.values())
        .filter_map(Value::as_object)
        .flat_map(|cs| cs.values());
    let pods = state
        .get("podEntries")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|pods| pods.values())
        .filter_map(|e| e.get("memoryBlocks"));
    containers.chain(pods).any(many)
}

/// The file's checksums as an inspection computes them: `(checksum holds, dataChecksum holds
/// (None: no data part))`.
fn checksums_hold(cp: &Value) -> (bool, Option<bool>) {
    let Ok(text) = serde_json::to_string(cp) else {
        return (false, None);
    };
    match crate::inspect::inspect(&text) {
        Ok(i) => (i.checksum_valid(), i.data_checksum_valid()),
        Err(_) => (false, None),
    }
}

/// The first difference between two state files, as data. V1 (kubelets before 1.36):
/// policyName, machineState, entries (each container's blocks as a set), and the checksum:
/// equal when no container holds several blocks, else each file's must match its own content.
/// V3 (1.37+) adds `data`, the JSON of policyName, machineState, entries and podEntries: the
/// V1 fields as above, `data` decoded and compared the same way (podEntries' blocks as sets
/// too), and `dataChecksum` checked against its own `data` (and equal when no order varies).
fn checkpoint_diff(mine: &Value, reference: &Value) -> Option<String> {
    for key in ["policyName", "machineState"] {
        if mine.get(key) != reference.get(key) {
            return Some(format!("{key} differs"));
        }
    }
    if entries_norm(mine.get("entries")) != entries_norm(reference.get("entries")) {
        return Some("entries differ".into());
    }
    let v3 = reference.get("data").is_some();
    if mine.get("data").is_some() != v3 {
        let (got, want) = if v3 { ("V1", "V3") } else { ("V3", "V1") };
        return Some(format!("format: {got} != {want}"));
    }
    let ordered = has_block_order(reference);
    let held = [
        ("pymm", checksums_hold(mine)),
        ("reference", checksums_hold(reference)),
    ];
    if !ordered {
        if mine.get("checksum") != reference.get("checksum") {
            return Some(format!(
                "checksum {} != {}",
                mine.get("checksum").unwrap_or(&Value::Null),
                reference.get("checksum").unwrap_or(&Value::Null)
            ));
        }
    } else {
        // The kubelet's block order (and so its checksum) varies from run to run: each file's
        // checksum must match its own order.
        for (who, (ok, _)) in &held {
            if !ok {
                return Some(format!("{who} checksum does not match its own content"));
            }
        }
    }
    if !v3 {
        return None;
    }
    for (who, (_, data_ok)) in &held {
        if *data_ok != Some(true) {
            return Some(format!(
                "{who} data does not decode or match its dataChecksum"
            ));
        }
    }
    let data = |cp: &Value| -> Value {
        cp.get("data")
            .and_then(Value::as_str)
            .and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or(Value::Null)
    };
    let (got, want) = (data(mine), data(reference));
    for key in ["policyName", "machineState"] {
        if got.get(key) != want.get(key) {
            return Some(format!("data: {key} differs"));
        }
    }
    if entries_norm(got.get("entries")) != entries_norm(want.get("entries")) {
        return Some("data: entries differ".into());
    }
    if pod_entries_norm(got.get("podEntries")) != pod_entries_norm(want.get("podEntries")) {
        return Some("data: podEntries differ".into());
    }
    if !has_block_order(&want) && mine.get("dataChecksum") != reference.get("dataChecksum") {
        return Some(format!(
            "dataChecksum {} != {}",
            mine.get("dataChecksum").unwrap_or(&Value::Null),
            reference.get("dataChecksum").unwrap_or(&Value::Null)
        ));
    }
    None
}

/// An error text of the newer harness carries the start-up step it failed in
/// (`memorymanager.Start: ...`); an older reference names none, so the step is compared only
/// where the reference records it.
fn same_error(got: Option<&Value>, want: Option<&Value>) -> bool {
    match (got.and_then(Value::as_str), want.and_then(Value::as_str)) {
        (Some(g), Some(w)) if g != w && !w.starts_with("memorymanager.") => {
            g.split_once(": ").is_some_and(|(step, rest)| {
                step.starts_with("memorymanager.") && !step.contains(' ') && rest == w
            })
        }
        _ => got == want,
    }
}

/// A field, a null counting as absent (as the reference's writer leaves some out).
fn field<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key).filter(|x| !x.is_null())
}

fn show(v: Option<&Value>) -> String {
    v.map_or("None".into(), Value::to_string)
}

/// The differences between two result sets under SCENARIOS.md's comparison rules: hint
/// lists in order, the blocks of one container as a set, error texts exactly, checksums as
/// the rules say. Results of scenarios the reference does not have are not compared.
pub fn compare(mine: &Value, reference: &Value) -> Vec<String> {
    let empty = Vec::new();
    let refs: BTreeMap<&str, &Value> = reference["results"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .filter_map(|r| r["name"].as_str().map(|n| (n, r)))
        .collect();
    let mut diffs = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for got in mine["results"].as_array().unwrap_or(&empty) {
        let name = got["name"].as_str().unwrap_or("?");
        seen.insert(name);
        if let Some(want) = refs.get(name) {
            diffs.extend(compare_one(got, want));
        }
    }
    for name in refs.keys().filter(|n| !seen.contains(*n)) {
        diffs.push(format!("{name}: missing from results"));
    }
    diffs
}

/// The differences between one scenario's results and the reference's for it.
pub fn compare_one(got: &Value, want: &Value) -> Vec<String> {
    let mut diffs = Vec::new();
    let empty = Vec::new();
    let name = got["name"].as_str().unwrap_or("?");
    let (gs, ws) = (field(got, "setupError"), field(want, "setupError"));
    if gs.is_some() || ws.is_some() {
        if gs != ws {
            diffs.push(format!("{name}: setupError {} != {}", show(gs), show(ws)));
        }
        return diffs;
    }
    if got.get("allocatableMemory") != want.get("allocatableMemory") {
        diffs.push(format!("{name}: allocatableMemory differs"));
    }
    if let Some(d) = checkpoint_diff(&got["initialCheckpoint"], &want["initialCheckpoint"]) {
        diffs.push(format!("{name}: initialCheckpoint: {d}"));
    }
    let (go, wo) = (
        got["results"].as_array().unwrap_or(&empty),
        want["results"].as_array().unwrap_or(&empty),
    );
    if go.len() != wo.len() {
        diffs.push(format!("{name}: {} op results != {}", go.len(), wo.len()));
    }
    for (g, w) in go.iter().zip(wo) {
        let at = format!(
            "{name} op {} ({})",
            w["index"],
            w["op"].as_str().unwrap_or("?")
        );
        if w.get("panic").and_then(Value::as_bool) == Some(true) {
            // The kubelet crashed here; pymm must reject with a clear error instead.
            let clear = g.get("admit") == Some(&json!(false))
                && g.get("error")
                    .and_then(Value::as_str)
                    .is_some_and(|e| !e.is_empty());
            if !clear {
                diffs.push(format!(
                    "{at}: expected a clear error where the kubelet panicked"
                ));
            }
            continue;
        }
        for key in ["admit", "reason", "message", "hintCalls"] {
            if field(g, key) != field(w, key) {
                diffs.push(format!(
                    "{at}: {key}: {} != {}",
                    show(field(g, key)),
                    show(field(w, key))
                ));
            }
        }
        if !same_error(field(g, "error"), field(w, "error")) {
            diffs.push(format!(
                "{at}: error: {} != {}",
                show(field(g, "error")),
                show(field(w, "error"))
            ));
        }
        let (ga, wa) = (
            g.get("allocations")
                .and_then(Value::as_array)
                .unwrap_or(&empty),
            w.get("allocations")
                .and_then(Value::as_array)
                .unwrap_or(&empty),
        );
        if ga.len() != wa.len() {
            diffs.push(format!("{at}: {} allocations != {}", ga.len(), wa.len()));
        }
        for (x, y) in ga.iter().zip(wa) {
            for key in ["container", "affinityFromStore", "error"] {
                if field(x, key) != field(y, key) {
                    diffs.push(format!(
                        "{at}: allocation {key}: {} != {}",
                        show(field(x, key)),
                        show(field(y, key))
                    ));
                }
            }
            if block_set(x.get("blocks")) != block_set(y.get("blocks")) {
                diffs.push(format!(
                    "{at}: allocation blocks of {} differ",
                    y["container"].as_str().unwrap_or("?")
                ));
            }
        }
        if let Some(d) = checkpoint_diff(&g["checkpoint"], &w["checkpoint"]) {
            diffs.push(format!("{at}: checkpoint: {d}"));
        }
    }
    diffs
}

/// A reference file held as its text, each scenario's results parsed when it is compared:
/// a reference of 600 scenarios is 38 MB of JSON, and ten times that as parsed values.
pub struct Reference {
    pub meta: Value,
    results: Vec<Box<RawValue>>,
    index: BTreeMap<String, usize>,
}

#[derive(serde::Deserialize)]
struct RawResults {
    #[serde(default)]
    meta: Value,
    results: Vec<Box<RawValue>>,
}

#[derive(serde::Deserialize)]
struct NameOnly {
    #[serde(default)]
    name: Option<String>,
}

impl Reference {
    /// `what` names the file in errors.
    pub fn parse(text: &str, what: &str) -> Result<Reference> {
        let bad = |e: serde_json::Error| {
            EngineError::scenario(None, format!("{what}: not valid results JSON: {e}"))
        };
        let raw: RawResults = serde_json::from_str(text).map_err(bad)?;
        let mut index = BTreeMap::new();
        for (i, r) in raw.results.iter().enumerate() {
            let n: NameOnly = serde_json::from_str(r.get()).map_err(bad)?;
            if let Some(name) = n.name {
                index.insert(name, i);
            }
        }
        Ok(Reference {
            meta: raw.meta,
            results: raw.results,
            index,
        })
    }

    pub fn len(&self) -> usize {
        self.results.len()
    }

    /// The kubelet whose results these are, by pymm's name for its behaviour: from
    /// `meta.kubernetes` (the reference harness names the release it ran) or
    /// `meta.kubeletVersion` (a pymm replay's). `None` when the meta names neither.
    pub fn kubelet_version(&self) -> Option<&'static str> {
        if let Some(k) = self.meta.get("kubernetes").and_then(Value::as_str) {
            let release = k
                .split_whitespace()
                .find(|w| w.starts_with("v1.") || w.starts_with("~v1."))?;
            let release = release.trim_start_matches('~').trim_start_matches('v');
            let minor: String = release.split('.').take(2).collect::<Vec<_>>().join(".");
            return KubeletVersion::parse(&minor)
                .ok()
                .map(KubeletVersion::as_str);
        }
        let v = self.meta.get("kubeletVersion").and_then(Value::as_str)?;
        KubeletVersion::parse(v).ok().map(KubeletVersion::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.results.is_empty()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }

    /// The reference's results for scenario `name`, parsed now.
    pub fn get(&self, name: &str) -> Option<Value> {
        let i = *self.index.get(name)?;
        serde_json::from_str(self.results[i].get()).ok()
    }

    /// Every result, parsed (for small references and tests).
    pub fn to_value(&self) -> Value {
        let results: Vec<Value> = self
            .results
            .iter()
            .filter_map(|r| serde_json::from_str(r.get()).ok())
            .collect();
        json!({"meta": self.meta, "results": results})
    }

    /// The differences of one scenario's results from the reference's (none when the
    /// reference does not have that scenario).
    pub fn compare_one(&self, got: &Value) -> Vec<String> {
        let name = got["name"].as_str().unwrap_or("?");
        match self.get(name) {
            Some(want) => compare_one(got, &want),
            None => Vec::new(),
        }
    }

    /// The reference's scenarios that `seen` lacks, as differences.
    pub fn missing<'a>(&self, seen: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let seen: std::collections::BTreeSet<&str> = seen.into_iter().collect();
        self.names()
            .filter(|n| !seen.contains(n))
            .map(|n| format!("{n}: missing from results"))
            .collect()
    }
}
