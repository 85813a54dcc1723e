//! The manager's configuration: its one decoder and its one set of defaults.
//!
//! Python passes only what the user set (`MemoryManager(topology_policy=...)`, CLI flags,
//! a scenario's fields); every default is here, and [`Config::to_value`] gives back the
//! effective configuration. Unknown keys are an error that names the closest known one, so
//! `topology_polcy` is not silently the default.

use crate::decode::{index, kind, Obj, Subject};
use crate::error::{EngineError, Result};
use crate::policy::MemoryOptions;
use crate::quantity::{bytes_text, Quantity};
use crate::reserved::{
    parse_reserved_memory_flag, validate_reserved_memory_config, MemoryReservation,
};
use crate::topology::parse_go_bool;
use crate::topology::{Policy, PolicyOptions};
use crate::version::{
    FeatureGates, KubeletVersion, Maturity, TOPOLOGY_ALPHA_OPTIONS, TOPOLOGY_BETA_OPTIONS,
};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Container,
    Pod,
}

impl Scope {
    pub fn parse(s: &str) -> Result<Scope> {
        match s {
            "container" => Ok(Scope::Container),
            "pod" => Ok(Scope::Pod),
            other => Err(EngineError::config(format!(
                "unknown topology manager scope {other:?} (expected container or pod)"
            ))),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Container => "container",
            Scope::Pod => "pod",
        }
    }
}

/// How hints are searched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Search {
    /// The kubelet's enumeration (answers identical to the kubelet; machines above
    /// `max-allowable-numa-nodes` are refused, as the kubelet refuses them).
    Exact,
    /// Bounded-time search (see [`crate::hints::calculate_hints_bounded`]).
    Bounded,
    /// Exact up to `max-allowable-numa-nodes`, bounded above.
    #[default]
    Auto,
}

impl Search {
    pub fn parse(s: &str) -> Result<Search> {
        match s {
            "exact" => Ok(Search::Exact),
            "bounded" => Ok(Search::Bounded),
            "auto" => Ok(Search::Auto),
            other => Err(EngineError::config(format!(
                "unknown search {other:?} (expected exact, bounded or auto)"
            ))),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Search::Exact => "exact",
            Search::Bounded => "bounded",
            Search::Auto => "auto",
        }
    }
}

/// The memory manager's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MemoryPolicyName {
    #[default]
    Static,
    None,
}

impl MemoryPolicyName {
    pub fn parse(s: &str) -> Result<MemoryPolicyName> {
        match s {
            "Static" => Ok(MemoryPolicyName::Static),
            "None" => Ok(MemoryPolicyName::None),
            "BestEffort" => Err(EngineError::config(
                "policy \"BestEffort\" is not available for platform \"linux\"",
            )),
            other => Err(EngineError::config(format!("unknown policy: {other:?}"))),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            MemoryPolicyName::Static => "Static",
            MemoryPolicyName::None => "None",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub memory_policy: MemoryPolicyName,
    pub topology_policy: Policy,
    pub scope: Scope,
    /// Topology Manager policy options as given (the kubelet's map), and parsed.
    pub policy_options: BTreeMap<String, String>,
    pub topology_options: PolicyOptions,
    /// Memory-manager policy options (pymm's own) as given, and parsed.
    pub memory_policy_options: BTreeMap<String, String>,
    pub memory_options: MemoryOptions,
    pub version: KubeletVersion,
    /// The feature gates as given (the kubelet's `--feature-gates`), and every gate of
    /// `version` with those applied.
    pub feature_gates: BTreeMap<String, bool>,
    pub gates: FeatureGates,
    /// `None`: not configured, so 1Gi of memory on every node (see
    /// [`crate::manager::DEFAULT_RESERVED_PER_NODE`]); `Some(empty)` is what the kubelet refuses.
    pub reserved: Option<Vec<MemoryReservation>>,
    /// kube-reserved + system-reserved + eviction-hard; `None` means "consistent with the
    /// reservations" (their per-resource sum).
    pub node_allocatable: Option<BTreeMap<String, Quantity>>,
    pub search: Search,
    /// Beyond the kubelet: accept a restored state whose node totals drifted by at most this
    /// many bytes (after a reboot) when every assignment still fits; the totals are rebased.
    /// The key `tolerate_drift`, as `MemoryManager(tolerate_drift=...)` names it.
    pub drift_tolerance: Option<u64>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            memory_policy: MemoryPolicyName::Static,
            topology_policy: Policy::BestEffort,
            scope: Scope::Container,
            policy_options: BTreeMap::new(),
            topology_options: PolicyOptions::default(),
            memory_policy_options: BTreeMap::new(),
            memory_options: MemoryOptions::default(),
            version: KubeletVersion::default(),
            feature_gates: BTreeMap::new(),
            gates: FeatureGates::default(),
            reserved: None,
            node_allocatable: None,
            search: Search::Auto,
            drift_tolerance: None,
        }
    }
}

/// The configuration keys, as Python's keyword arguments name them.
pub const KEYS: [&str; 11] = [
    "memory_policy",
    "topology_policy",
    "scope",
    "policy_options",
    "memory_policy_options",
    "kubelet_version",
    "feature_gates",
    "reserved_memory",
    "node_allocatable",
    "search",
    "tolerate_drift",
];

/// The values of each configuration key that takes one of a fixed set, as a front end offers
/// them (the CLI's choices): from the types themselves, so that no list is written twice.
pub fn choices() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        (
            "memory_policy",
            [MemoryPolicyName::Static, MemoryPolicyName::None]
                .map(MemoryPolicyName::as_str)
                .to_vec(),
        ),
        (
            "topology_policy",
            [
                Policy::None,
                Policy::BestEffort,
                Policy::Restricted,
                Policy::SingleNumaNode,
            ]
            .map(Policy::as_str)
            .to_vec(),
        ),
        (
            "scope",
            [Scope::Container, Scope::Pod].map(Scope::as_str).to_vec(),
        ),
        ("kubelet_version", KubeletVersion::CHOICES.to_vec()),
        (
            "search",
            [Search::Auto, Search::Exact, Search::Bounded]
                .map(Search::as_str)
                .to_vec(),
        ),
    ]
}

/// Every configuration key with its default (`Config::default()` in the shape `to_value`
/// gives) and, where the values are a fixed set, its choices.
pub fn schema() -> Value {
    let defaults = Config::default().to_value();
    let choices = choices();
    let schema: Map<String, Value> = KEYS
        .iter()
        .map(|k| {
            let mut entry = json!({"default": defaults.get(*k).cloned().unwrap_or(Value::Null)});
            if let Some((_, c)) = choices.iter().find(|(key, _)| key == k) {
                entry["choices"] = json!(c);
            }
            (k.to_string(), entry)
        })
        .collect();
    Value::Object(schema)
}

/// A size in bytes (a drift tolerance): a quantity, zero or more, within 64 bits.
pub fn size(text: &str) -> Result<u64> {
    Quantity::parse(text).and_then(|q| q.bytes())
}

const C: Subject = Subject::Config;

fn text(v: &Value, at: &str) -> Result<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(C.error(at, format!("expected a quantity, got {}", kind(other)))),
    }
}

/// An option map (`{name: value}`); values may be given as strings, bools or numbers.
pub fn option_map(v: &Value, at: &str) -> Result<BTreeMap<String, String>> {
    let m = Obj::new(v, at, C)?;
    m.map
        .iter()
        .map(|(k, x)| {
            let s = match x {
                Value::String(s) => s.clone(),
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                other => {
                    return Err(m.err(k, format!("expected a string, got {}", kind(other))));
                }
            };
            Ok((k.clone(), s))
        })
        .collect()
}

/// `feature_gates`: a map of gate name to on/off (a bool, or a text Go's `strconv.ParseBool`
/// reads), or the kubelet's `--feature-gates` text (`A=true,B=false`, one string or a list).
pub fn feature_gates_from(v: &Value) -> Result<BTreeMap<String, bool>> {
    match v {
        Value::String(s) => crate::version::parse_feature_gates_flag(std::slice::from_ref(s)),
        Value::Array(a) if a.iter().all(Value::is_string) => {
            crate::version::parse_feature_gates_flag(
                &a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect::<Vec<_>>(),
            )
        }
        _ => {
            let m = Obj::new(v, "feature_gates", C)?;
            m.map
                .iter()
                .map(|(k, x)| {
                    let on = match x {
                        Value::Bool(b) => Some(*b),
                        Value::String(t) => parse_go_bool(t),
                        _ => None,
                    };
                    match on {
                        Some(b) => Ok((k.clone(), b)),
                        None => Err(m.err(k, format!("expected true or false, got {}", kind(x)))),
                    }
                })
                .collect()
        }
    }
}

/// `CheckPolicyOptionAvailable`: an alpha or beta option of the selected kubelet needs its
/// feature gate (options only pymm has need none).
fn check_option_gates(
    options: &BTreeMap<String, String>,
    version: KubeletVersion,
    gates: &FeatureGates,
) -> Result<()> {
    for name in options.keys() {
        let gate = match version.option_maturity(name) {
            Some(Maturity::Alpha) => TOPOLOGY_ALPHA_OPTIONS,
            Some(Maturity::Beta) => TOPOLOGY_BETA_OPTIONS,
            _ => continue,
        };
        if !gates.enabled(gate) {
            let maturity = version.option_maturity(name).unwrap_or(Maturity::Stable);
            if let Some(text) = version.option_gate_error(maturity, name) {
                return Err(EngineError::Config {
                    message: text,
                    key: Some(name.clone()),
                    suggestion: None,
                });
            }
        }
    }
    Ok(())
}

/// `reserved_memory`: `--reserved-memory` text (one string, or one per flag occurrence),
/// parsed and validated as the kubelet's flag is, or the KubeletConfiguration
/// `reservedMemory` list.
pub fn reservations_from(v: &Value) -> Result<Vec<MemoryReservation>> {
    const R: Subject = Subject::Reserved;
    let flags = |values: Vec<String>| -> Result<Vec<MemoryReservation>> {
        let r = parse_reserved_memory_flag(&values)?;
        if let Some(first) = validate_reserved_memory_config(&r).into_iter().next() {
            return Err(EngineError::reserved(first));
        }
        for x in &r {
            for (name, (q, text)) in &x.limits {
                check_reservation(x.numa_node, name, q, text, None)?;
            }
        }
        Ok(r)
    };
    let items = match v {
        Value::String(s) => return flags(vec![s.clone()]),
        Value::Array(a) if a.iter().all(Value::is_string) && !a.is_empty() => {
            return flags(
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect(),
            )
        }
        Value::Array(a) => a,
        other => {
            return Err(R.error(
                "reserved_memory",
                format!(
                    "expected --reserved-memory text or a list of {{numaNode, limits}}, got {}",
                    kind(other)
                ),
            ))
        }
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = index("reservedMemory", i);
        let r = Obj::new(item, &at, R)?;
        r.deny_unknown("reservedMemory key", &["numaNode", "limits"])?;
        let node = match r.get("numaNode") {
            Some(Value::Number(n)) => n.as_i64().and_then(|n| i32::try_from(n).ok()),
            Some(other) => {
                return Err(r.err(
                    "numaNode",
                    format!("expected a NUMA node id, got {}", kind(other)),
                ))
            }
            None => return Err(r.err("numaNode", "required")),
        }
        .ok_or_else(|| {
            r.err(
                "numaNode",
                "expected a NUMA node id, an integer from -2147483648 to 2147483647 (int32)",
            )
        })?;
        let mut limits = BTreeMap::new();
        let Some(lim) = r.obj("limits")? else {
            return Err(r.err("limits", "required"));
        };
        for (k, q) in lim.map {
            let t = text(q, &lim.at(k))?;
            let parsed = Quantity::parse(&t).map_err(|e| {
                R.error(
                    &lim.at(k),
                    format!(
                        "reserved memory for NUMA node {node} {k}={t}: {}",
                        e.message()
                    ),
                )
            })?;
            check_reservation(node, k, &parsed, &t, Some(&lim.at(k)))?;
            limits.insert(k.clone(), (parsed, t));
        }
        out.push(MemoryReservation {
            numa_node: node,
            limits,
        });
    }
    // A `reservedMemory` list goes to the memory manager as it is: the kubelet checks it at
    // start-up (node-allocatable sums, existing nodes), not with the flag's validator.
    Ok(out)
}

/// A reservation pymm refuses where the kubelet would go wrong: a negative one wraps round to
/// almost 16Ei in its uint64 (`--reserved-memory 0:memory=-1Gi` then reports a node short of
/// 17179869183Gi), and one beyond int64 fails its conversion without saying which.
fn check_reservation(
    node: i32,
    name: &str,
    q: &Quantity,
    text: &str,
    at: Option<&str>,
) -> Result<()> {
    const MAX: i128 = i64::MAX as i128;
    let why = if q.is_negative() {
        "must not be negative"
    } else if q.value() > MAX {
        "is out of range: a reservation must be 0 to 9223372036854775807 bytes (8Ei - 1)"
    } else {
        return Ok(());
    };
    let message = format!("reserved memory for NUMA node {node} {name}={text} {why}");
    Err(EngineError::ReservedMemory {
        message: match at {
            Some(at) => format!("{at}: {message}"),
            None => message,
        },
        node: None,
    })
}

impl Config {
    /// Decodes the keys the caller set; the rest keep their defaults.
    pub fn from_value(v: &Value) -> Result<Config> {
        let m = Obj::new(v, "", C)?;
        m.deny_unknown("configuration key", &KEYS)?;
        let mut c = Config::default();
        let s = |k: &str| -> Result<Option<&str>> { m.str(k) };
        if let Some(x) = s("memory_policy")? {
            c.memory_policy = MemoryPolicyName::parse(x)?;
        }
        if let Some(x) = s("topology_policy")? {
            c.topology_policy = Policy::parse(x)?;
        }
        if let Some(x) = s("scope")? {
            c.scope = Scope::parse(x)?;
        }
        if let Some(x) = s("kubelet_version")? {
            c.version = KubeletVersion::parse(x)?;
        }
        if let Some(x) = s("search")? {
            c.search = Search::parse(x)?;
        }
        if let Some(x) = m.get("feature_gates") {
            c.feature_gates = feature_gates_from(x)?;
        }
        c.gates = FeatureGates::parse(&c.feature_gates, c.version)?;
        if let Some(x) = m.get("policy_options") {
            c.policy_options = option_map(x, "policy_options")?;
        }
        check_option_gates(&c.policy_options, c.version, &c.gates)?;
        c.topology_options =
            PolicyOptions::parse(&c.policy_options, c.version.has_max_allowable_option())?;
        if let Some(x) = m.get("memory_policy_options") {
            c.memory_policy_options = option_map(x, "memory_policy_options")?;
        }
        c.memory_options = MemoryOptions::parse(&c.memory_policy_options)?;
        if c.memory_options.resize_in_place && !c.version.group_sum_validation() {
            return Err(EngineError::Config {
                message: "resize-in-place needs kubelet_version \"1.32\" or \"1.38\": kubelet 1.26 compares each node at restart, and a resized group's memory is not where its restart would place it".into(),
                key: Some("resize-in-place".into()),
                suggestion: None,
            });
        }
        if let Some(x) = m.get("reserved_memory") {
            c.reserved = Some(reservations_from(x)?);
        }
        if let Some(na) = m.obj("node_allocatable")? {
            let mut out = BTreeMap::new();
            for (k, q) in na.map {
                let t = text(q, &na.at(k))?;
                let parsed = Quantity::parse(&t).map_err(|e| C.error(&na.at(k), e.message()))?;
                out.insert(k.clone(), parsed);
            }
            c.node_allocatable = Some(out);
        }
        c.drift_tolerance = match m.get("tolerate_drift") {
            None => None,
            Some(Value::String(t)) => {
                Some(size(t).map_err(|e| C.error("tolerate_drift", e.message()))?)
            }
            Some(Value::Number(n)) => Some(n.as_u64().ok_or_else(|| {
                C.error(
                    "tolerate_drift",
                    format!("expected a byte count from 0 to 2^64-1, got {n}"),
                )
            })?),
            Some(other) => {
                return Err(C.error(
                    "tolerate_drift",
                    format!("expected a quantity, got {}", kind(other)),
                ))
            }
        };
        Ok(c)
    }

    /// `PodLevelResourceManagers` (kubelet 1.38): pod entries are restored and written, and
    /// in pod scope (a topology policy other than `none`) a pod with pod-level resources is
    /// admitted as a whole and allocated once.
    pub fn pod_level_resource_managers(&self) -> bool {
        self.version.is_1_38() && self.gates.pod_level_resource_managers()
    }

    /// The effective configuration, every default filled in, in the shape `from_value` reads.
    pub fn to_value(&self) -> Value {
        let reserved = self.reserved.as_ref().map(|r| {
            r.iter()
                .map(|x| {
                    let limits: Map<String, Value> = x
                        .limits
                        .iter()
                        .map(|(k, (_, t))| (k.clone(), json!(t)))
                        .collect();
                    json!({"numaNode": x.numa_node, "limits": limits})
                })
                .collect::<Vec<_>>()
        });
        json!({
            "memory_policy": self.memory_policy.as_str(),
            "topology_policy": self.topology_policy.as_str(),
            "scope": self.scope.as_str(),
            "policy_options": self.policy_options,
            "memory_policy_options": self.memory_policy_options,
            "kubelet_version": self.version.as_str(),
            "feature_gates": self.feature_gates,
            "reserved_memory": reserved,
            "node_allocatable": self.node_allocatable.as_ref().map(|m| {
                m.iter().map(|(k, q)| (k.clone(), json!(q.to_string()))).collect::<Map<_, _>>()
            }),
            "search": self.search.as_str(),
            "tolerate_drift": self.drift_tolerance.map(bytes_text),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_unknown_keys() {
        let c = Config::from_value(&json!({})).unwrap();
        assert_eq!(c.topology_policy, Policy::BestEffort);
        assert!(c.reserved.is_none());
        let e = Config::from_value(&json!({"topology_polcy": "restricted"})).unwrap_err();
        match e {
            EngineError::Config {
                key, suggestion, ..
            } => {
                assert_eq!(key.as_deref(), Some("topology_polcy"));
                assert_eq!(suggestion.as_deref(), Some("topology_policy"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn round_trip() {
        let v = json!({"topology_policy": "restricted", "reserved_memory": "0:memory=1Gi",
                       "policy_options": {"prefer-closest-numa-nodes": true},
                       "tolerate_drift": "256Mi"});
        let c = Config::from_value(&v).unwrap();
        let again = Config::from_value(&c.to_value()).unwrap();
        assert_eq!(again.to_value(), c.to_value());
        assert_eq!(c.drift_tolerance, Some(256 << 20));
        assert!(c.topology_options.prefer_closest_numa_nodes);
    }
}
