//! `--reserved-memory` and the node-allocatable rule, with the kubelet's error texts.
//!
//! Three layers, as in the kubelet: the flag parser (`ReservedMemoryVar.Set`), the
//! KubeletConfiguration validator, and the memory manager's check that the per-NUMA
//! reservations add up to what Node Allocatable reserves (kube-reserved + system-reserved +
//! eviction-hard).

use crate::error::{EngineError, Result};
use crate::machine::Machine;
use crate::quantity::{Format, Quantity};
use std::collections::BTreeMap;

/// One `numaNode` entry of `reservedMemory`. Limit values keep the text they were given.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryReservation {
    pub numa_node: i32,
    pub limits: BTreeMap<String, (Quantity, String)>,
}

/// Bytes reserved per NUMA node id and resource name.
pub type SystemReserved = BTreeMap<i64, BTreeMap<String, u64>>;

fn is_memory_type(name: &str) -> bool {
    name == "memory" || name.starts_with("hugepages-")
}

fn flag_err(msg: String) -> EngineError {
    EngineError::reserved(msg)
}

/// Parses the values of every `--reserved-memory` occurrence, in order. Repeated flags append;
/// `;` separates NUMA nodes and `,` separates resource types within one node.
pub fn parse_reserved_memory_flag(values: &[String]) -> Result<Vec<MemoryReservation>> {
    let mut out = Vec::new();
    for value in values {
        if value.is_empty() {
            // The kubelet treats an empty value as "unset": nothing to add.
            continue;
        }
        for piece in value.split(';') {
            let parts: Vec<&str> = piece.split(':').collect();
            if parts.len() != 2 {
                return Err(flag_err(format!(
                    "the reserved memory has incorrect format, expected numaNodeID:type=quantity[,type=quantity...], got {piece}"
                )));
            }
            let numa_node: i32 = parts[0].parse().map_err(|_| {
                flag_err(format!(
                    "failed to convert the NUMA node ID, exptected integer, got {}",
                    parts[0]
                ))
            })?;
            let mut limits = BTreeMap::new();
            for item in parts[1].split(',') {
                let kv: Vec<&str> = item.split('=').collect();
                if kv.len() != 2 {
                    return Err(flag_err(format!(
                        "the reserved limit has incorrect value, expected type=quantatity, got {item}"
                    )));
                }
                if !is_memory_type(kv[0]) {
                    return Err(flag_err(format!(
                        "memory type conversion error, unknown type: {:?}",
                        kv[0]
                    )));
                }
                let q = Quantity::parse(kv[1]).map_err(|_| {
                    flag_err(format!(
                        "failed to parse the quantatity, expected quantatity, got {}",
                        kv[1]
                    ))
                })?;
                limits.insert(kv[0].to_string(), (q, kv[1].to_string()));
            }
            out.push(MemoryReservation { numa_node, limits });
        }
    }
    Ok(out)
}

/// The KubeletConfiguration validator: every error, in the order the kubelet finds them.
pub fn validate_reserved_memory_config(reservations: &[MemoryReservation]) -> Vec<String> {
    let mut seen: BTreeMap<i32, Vec<&str>> = BTreeMap::new();
    let mut errors = Vec::new();
    for r in reservations {
        let seen_here = seen.entry(r.numa_node).or_default();
        for (name, (q, _)) in &r.limits {
            let node = r.numa_node;
            if !is_memory_type(name) {
                errors.push(format!(
                    "invalid configuration: the limit type {name:?} for NUMA node {node} is not supported, only [memory hugepages-<HugePageSize>] is accepted"
                ));
            }
            if q.is_zero() {
                errors.push(format!(
                    "invalid configuration: reserved memory may not be zero for NUMA node {node} and resource {name:?}"
                ));
            }
            if seen_here.contains(&name.as_str()) {
                errors.push(format!(
                    "invalid configuration: the reserved memory has a duplicate value for NUMA node {node} and resource {name:?}"
                ));
            }
            seen_here.push(name);
        }
    }
    errors
}

/// The memory manager's `validateReservedMemory`.
pub fn validate_reserved_memory(
    machine: &Machine,
    node_allocatable: &BTreeMap<String, Quantity>,
    reservations: &[MemoryReservation],
) -> Result<()> {
    let mut totals: BTreeMap<&str, Quantity> = BTreeMap::new();
    for r in reservations {
        if !machine.has_node(i64::from(r.numa_node)) {
            return Err(EngineError::reserved(format!(
                "the reserved memory configuration references a NUMA node {} that does not exist on this machine",
                r.numa_node
            )));
        }
        for (name, (q, _)) in &r.limits {
            // Go adds the running total into the new value, so the newest addend's format
            // wins unless it is zero.
            let sum = match totals.get(name.as_str()) {
                Some(prev) => q.add(prev),
                None => *q,
            };
            totals.insert(name, sum);
        }
    }
    let mut types: Vec<&str> = totals.keys().copied().collect();
    for name in node_allocatable.keys() {
        if is_memory_type(name) && !types.contains(&name.as_str()) {
            types.push(name);
        }
    }
    types.sort_unstable();
    for t in types {
        let alloc = node_allocatable
            .get(t)
            .map_or(Quantity::ZERO, |q| Quantity::ZERO.add(q));
        let reserved = totals
            .get(t)
            .map_or(Quantity::ZERO, |q| Quantity::ZERO.add(q));
        if alloc != reserved {
            return Err(EngineError::reserved(format!(
                "the total amount \"{reserved}\" of type \"{t}\" is not equal to the value \"{alloc}\" determined by Node Allocatable feature"
            )));
        }
    }
    Ok(())
}

/// `convertReserved`: an entry for every node of the machine, then the reservations.
pub fn convert_reserved(
    machine: &Machine,
    reservations: &[MemoryReservation],
) -> Result<SystemReserved> {
    let mut out: SystemReserved = machine
        .node_ids()
        .map(|id| (i64::from(id), BTreeMap::new()))
        .collect();
    for r in reservations {
        for (name, (q, _)) in &r.limits {
            let v = q.as_i64().ok_or_else(|| {
                EngineError::reserved("could not covert a variable of type Quantity to int64")
            })?;
            // Go converts with uint64(int64), which wraps a negative value.
            out.entry(i64::from(r.numa_node))
                .or_default()
                .insert(name.clone(), v as u64);
        }
    }
    Ok(out)
}

/// `getSystemReservedMemory`: validate, then convert.
pub fn get_system_reserved(
    machine: &Machine,
    node_allocatable: &BTreeMap<String, Quantity>,
    reservations: &[MemoryReservation],
) -> Result<SystemReserved> {
    validate_reserved_memory(machine, node_allocatable, reservations)?;
    convert_reserved(machine, reservations)
}

/// The default node-allocatable reservation when none is given: the per-resource sum of the
/// reservations, which is what a consistent kubelet configuration has.
pub fn sum_of_reservations(reservations: &[MemoryReservation]) -> BTreeMap<String, Quantity> {
    let mut out: BTreeMap<String, Quantity> = BTreeMap::new();
    for r in reservations {
        for (name, (q, _)) in &r.limits {
            let e = out.entry(name.clone()).or_insert(Quantity::ZERO);
            *e = e.add(q);
        }
    }
    out
}

/// Node Allocatable's reservation per resource: kube-reserved + system-reserved +
/// eviction-hard. Only `memory.available` takes part from the eviction thresholds; a
/// percentage is taken of the machine's total memory.
pub fn node_allocatable_reservation(
    machine: &Machine,
    kube_reserved: &BTreeMap<String, String>,
    system_reserved: &BTreeMap<String, String>,
    eviction_hard: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, Quantity>> {
    let mut out: BTreeMap<String, Quantity> = BTreeMap::new();
    for (flag, m) in [
        ("kube-reserved", kube_reserved),
        ("system-reserved", system_reserved),
    ] {
        for (name, text) in m {
            if !["cpu", "memory", "ephemeral-storage", "pid"].contains(&name.as_str()) {
                return Err(EngineError::reserved(format!(
                    "--{flag}: resource {name:?} is not supported, only cpu, memory, ephemeral-storage and pid are"
                )));
            }
            let q = Quantity::parse(text)
                .map_err(|e| EngineError::reserved(format!("--{flag} {name}={text}: {e}")))?;
            if name == "memory" {
                let e = out.entry(name.clone()).or_insert(Quantity::ZERO);
                *e = e.add(&q);
            }
        }
    }
    if let Some(text) = eviction_hard.get("memory.available") {
        let q = if let Some(pct) = text.strip_suffix('%') {
            let p: f64 = pct.parse().map_err(|_| {
                EngineError::reserved(format!(
                    "--eviction-hard memory.available<{text}: invalid percentage"
                ))
            })?;
            if !(0.0..=100.0).contains(&p) {
                return Err(EngineError::reserved(format!(
                    "--eviction-hard memory.available<{text}: a percentage must be 0-100"
                )));
            }
            let total: u64 = machine.nodes.iter().map(|n| n.memory_bytes).sum();
            Quantity::from_bytes((total as f64 * p / 100.0) as u64, Format::BinarySI)
        } else {
            Quantity::parse(text).map_err(|e| {
                EngineError::reserved(format!("--eviction-hard memory.available<{text}: {e}"))
            })?
        };
        let e = out.entry("memory".into()).or_insert(Quantity::ZERO);
        *e = e.add(&q);
    }
    Ok(out)
}
