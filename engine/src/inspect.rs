//! Inspecting a state file: what it records, and everything in it that does not add up.
//!
//! The kubelet refuses a file whose checksum is wrong and says nothing more; an operator
//! looking at a hand-edited or half-repaired file needs the rest. So this decode is lenient
//! about the checksum (a mismatch is one finding, with both checksums) and strict only about
//! the shape (a file that is not a checkpoint at all is an error). Everything is computed
//! here, once; `pymm state verify/inspect` only print it.

use crate::checkpoint::{checksum, decode_unverified};
use crate::config::Config;
use crate::error::{EngineError, Result};
use crate::fragmentation::Fragmentation;
use crate::machine::{HugePagePool, Machine, MemoryKind, NumaNode};
use crate::manager::Manager;
use crate::quantity::{Format, Quantity};
use crate::request::Pod;
use crate::reserved::MemoryReservation;
use crate::state::{MachineState, State};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: &'static str,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct Inspection {
    pub policy_name: String,
    pub stored_checksum: u64,
    pub computed_checksum: u64,
    pub state: State,
    pub findings: Vec<Finding>,
}

impl Inspection {
    pub fn checksum_valid(&self) -> bool {
        self.stored_checksum == self.computed_checksum
    }

    pub fn containers(&self) -> usize {
        self.state.entries.values().map(BTreeMap::len).sum()
    }

    /// One row per node and resource.
    pub fn node_rows(&self) -> Vec<Value> {
        let mut rows = Vec::new();
        for (node, st) in &self.state.machine_state {
            for (resource, t) in &st.memory_map {
                rows.push(json!({
                    "node": node, "resource": resource, "total": t.total,
                    "systemReserved": t.system_reserved, "allocatable": t.allocatable,
                    "reserved": t.reserved, "free": t.free,
                    "numberOfAssignments": st.number_of_assignments, "cells": st.cells,
                }));
            }
        }
        rows
    }

    /// The distinct groups (`cells`), in order of their smallest node, with their sums.
    pub fn group_rows(&self) -> Vec<Value> {
        let ms = &self.state.machine_state;
        let mut groups: BTreeSet<(i64, Vec<i64>)> = BTreeSet::new();
        for (node, st) in ms {
            let mut g: Vec<i64> = if st.cells().is_empty() {
                vec![*node]
            } else {
                st.cells().to_vec()
            };
            g.sort_unstable();
            g.dedup();
            groups.insert((g[0], g));
        }
        groups
            .into_iter()
            .map(|(_, g)| {
                let mut sums: BTreeMap<&str, [u128; 3]> = BTreeMap::new();
                for n in &g {
                    for (r, t) in ms.get(n).map(|s| &s.memory_map).into_iter().flatten() {
                        let acc = sums.entry(r).or_default();
                        acc[0] += u128::from(t.allocatable);
                        acc[1] += u128::from(t.reserved);
                        acc[2] += u128::from(t.free);
                    }
                }
                let used = g
                    .iter()
                    .any(|n| ms.get(n).is_some_and(|s| s.number_of_assignments > 0));
                let resources: serde_json::Map<String, Value> = sums
                    .into_iter()
                    .map(|(r, [a, re, f])| {
                        (
                            r.to_string(),
                            json!({"allocatable": big(a), "reserved": big(re), "free": big(f)}),
                        )
                    })
                    .collect();
                json!({"nodes": g, "used": used, "resources": resources})
            })
            .collect()
    }

    /// Pods with their containers' NUMA nodes and blocks, the first `limit` of them.
    pub fn pod_rows(&self, limit: usize) -> Vec<Value> {
        self.state
            .entries
            .iter()
            .take(limit)
            .map(|(uid, ctrs)| pod_row(uid, ctrs))
            .collect()
    }

    /// The inspection as JSON text, written pod by pod: a file with a million entries never
    /// becomes one tree of JSON values.
    pub fn to_json(&self, pods_limit: usize, extra: &serde_json::Map<String, Value>) -> String {
        let mut o = String::with_capacity(256 + 100 * self.containers().min(pods_limit));
        let mut head = json!({
            "policyName": self.policy_name,
            "checksum": {"stored": self.stored_checksum, "computed": self.computed_checksum,
                         "valid": self.checksum_valid()},
            "nodes": self.node_rows(),
            "groups": self.group_rows(),
            "podCount": self.state.entries.len(),
            "containerCount": self.containers(),
        });
        if let Value::Object(m) = &mut head {
            m.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        let head = head.to_string();
        // The head's closing brace gives way to the two long lists.
        o.push_str(&head[..head.len() - 1]);
        o.push_str(",\"pods\":[");
        for (i, (uid, ctrs)) in self.state.entries.iter().take(pods_limit).enumerate() {
            if i > 0 {
                o.push(',');
            }
            o.push_str(&pod_row(uid, ctrs).to_string());
        }
        o.push_str("],\"inconsistencies\":[");
        for (i, f) in self.findings.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            o.push_str(&json!({"kind": f.kind, "message": f.message}).to_string());
        }
        o.push_str("]}");
        o
    }
}

impl Inspection {
    /// The machine and reservation the file describes: each node's totals and system
    /// reservations are in it, so a state file alone is enough to ask what-if questions.
    pub fn machine(&self) -> Result<(Machine, Vec<MemoryReservation>)> {
        let mut nodes = Vec::new();
        let mut reserved = Vec::new();
        for (id, st) in &self.state.machine_state {
            let id32 = u32::try_from(*id).map_err(|_| {
                EngineError::machine(Some(*id), format!("NUMA node {id} is out of range"))
            })?;
            let mut hugepages = Vec::new();
            let mut limits = std::collections::BTreeMap::new();
            for (r, t) in &st.memory_map {
                if t.system_reserved > 0 {
                    let q = Quantity::from_bytes(t.system_reserved, Format::BinarySI);
                    limits.insert(r.clone(), (q, q.to_string()));
                }
                let Some(size) = r.strip_prefix("hugepages-") else {
                    continue;
                };
                let page = Quantity::parse(size).and_then(|q| q.bytes())?;
                if page >= 1024 {
                    hugepages.push(HugePagePool {
                        page_size_kib: page / 1024,
                        num_pages: t.total / page,
                    });
                }
            }
            let memory = st.memory_map.get("memory").map_or(0, |t| t.total);
            nodes.push(NumaNode {
                id: id32,
                memory_bytes: memory,
                hugepages,
                cpus: 0,
                kind: MemoryKind::Unknown,
            });
            if !limits.is_empty() {
                reserved.push(MemoryReservation {
                    numa_node: id32 as i32,
                    limits,
                });
            }
        }
        let machine = Machine {
            name: "from the state file".into(),
            nodes,
            distances: None,
        }
        .validated()?;
        Ok((machine, reserved))
    }

    /// Stranded memory for a probe shape on the state the file records (see
    /// [`Fragmentation`]), under `config` with the file's own machine and reservation.
    pub fn fragmentation(
        &self,
        mut config: Config,
        probe: &Pod,
        cap: usize,
    ) -> Result<Fragmentation> {
        if !self.checksum_valid() {
            // The kubelet would not restore it, so there is no state to ask about.
            return Err(EngineError::CorruptCheckpoint {
                message: "checkpoint is corrupted".into(),
                stored: Some(self.stored_checksum),
                computed: Some(self.computed_checksum),
            });
        }
        if self.policy_name != "Static" {
            return Err(EngineError::PolicyMismatch {
                message: format!(
                    "[memorymanager] configured policy \"Static\" differs from state checkpoint policy {:?}",
                    self.policy_name
                ),
                configured: "Static".into(),
                stored: self.policy_name.clone(),
            });
        }
        let (machine, reserved) = self.machine()?;
        config.reserved = Some(reserved);
        config.memory_policy = crate::config::MemoryPolicyName::Static;
        // Validated as a restart would, then filled in place: no second copy of the state
        // beyond this one, and no pods to adopt, since the fill stops at its first rejection
        // and nothing else could make state stale.
        let mut m = Manager::with_state(machine, config, self.state.clone())?;
        m.assume_no_stale_state();
        m.fill_with(probe, cap)
    }
}

fn pod_row(uid: &str, ctrs: &BTreeMap<String, Option<Vec<crate::state::Block>>>) -> Value {
    let containers: Vec<Value> = ctrs
        .iter()
        .map(|(name, blocks)| {
            let blocks = blocks.as_deref().unwrap_or_default();
            let nodes: BTreeSet<i64> = blocks
                .iter()
                .flat_map(|b| b.affinity().iter().copied())
                .collect();
            let blocks: Vec<Value> = blocks
                .iter()
                .map(|b| json!({"numaAffinity": b.numa_affinity, "type": b.resource, "size": b.size}))
                .collect();
            json!({"name": name, "numaNodes": nodes, "blocks": blocks})
        })
        .collect();
    json!({"podUID": uid, "containers": containers})
}

/// Sums can exceed 2^64 in a damaged file; JSON numbers beyond that are written as text.
fn big(v: u128) -> Value {
    u64::try_from(v).map_or_else(|_| json!(v.to_string()), |x| json!(x))
}

/// Decodes a state file for inspection. Errors only when the text is not a checkpoint.
pub fn inspect(text: &str) -> Result<Inspection> {
    let cp = decode_unverified(text)?;
    let computed = u64::from(checksum(&cp.policy_name, &cp.state));
    let mut out = Inspection {
        policy_name: cp.policy_name,
        stored_checksum: cp.checksum,
        computed_checksum: computed,
        state: cp.state,
        findings: Vec::new(),
    };
    if !out.checksum_valid() {
        out.findings.push(Finding {
            kind: "checksum",
            message: format!(
                "checksum mismatch: the stored checksum {} does not match the content ({computed}) (kubelet: checkpoint is corrupted); the kubelet will refuse this file",
                out.stored_checksum
            ),
        });
    }
    out.findings.extend(findings(&out.state));
    Ok(out)
}

/// What does not add up in a state, whatever its checksum says.
pub fn findings(state: &State) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut add = |kind: &'static str, message: String| out.push(Finding { kind, message });
    let ms: &MachineState = &state.machine_state;
    if ms.is_empty() && !state.entries.is_empty() {
        add(
            "empty-machine-state",
            "entries exist but machineState is empty (kubelet: machine state can not be empty when it has memory assignments)".into(),
        );
    }
    for (node, st) in ms {
        if let Some(cells) = &st.cells {
            if !cells.contains(node) {
                add(
                    "node-not-in-group",
                    format!("node {node} is not in its own group (cells {cells:?})"),
                );
            }
        }
        for (r, t) in &st.memory_map {
            if u128::from(t.reserved) + u128::from(t.free) != u128::from(t.allocatable) {
                add(
                    "reserved-free-allocatable",
                    format!(
                        "node {node} {r}: reserved {} + free {} != allocatable {}",
                        t.reserved, t.free, t.allocatable
                    ),
                );
            }
        }
    }
    let used: Vec<(i64, BTreeSet<i64>)> = ms
        .iter()
        .filter(|(_, s)| s.number_of_assignments > 0)
        .map(|(n, s)| {
            let cells: BTreeSet<i64> = if s.cells().is_empty() {
                [*n].into()
            } else {
                s.cells().iter().copied().collect()
            };
            (*n, cells)
        })
        .collect();
    for (i, (a, ca)) in used.iter().enumerate() {
        for (b, cb) in &used[i + 1..] {
            if ca != cb && !ca.is_disjoint(cb) {
                add(
                    "overlapping-groups",
                    format!("used nodes {a} and {b} are in overlapping groups {ca:?} and {cb:?}"),
                );
            }
        }
    }
    let mut counted: BTreeMap<i64, i64> = ms.keys().map(|n| (*n, 0)).collect();
    for (uid, ctrs) in &state.entries {
        for (name, blocks) in ctrs {
            for b in blocks.iter().flatten() {
                let at = || format!("pod {uid} container {name}");
                if b.affinity().is_empty() {
                    add(
                        "block-without-nodes",
                        format!("{}: a block has no NUMA nodes", at()),
                    );
                }
                for node in b.affinity() {
                    let Some(st) = ms.get(node) else {
                        add(
                            "unknown-node",
                            format!("{}: a block uses NUMA node {node}, not in the file", at()),
                        );
                        continue;
                    };
                    *counted.entry(*node).or_default() += 1;
                    if !st.memory_map.contains_key(&b.resource) {
                        add(
                            "unknown-resource",
                            format!(
                                "{}: a block uses resource {:?}, unknown on node {node}",
                                at(),
                                b.resource
                            ),
                        );
                    }
                }
            }
        }
    }
    for (node, st) in ms {
        let n = counted.get(node).copied().unwrap_or(0);
        if st.number_of_assignments != n {
            add(
                "number-of-assignments",
                format!(
                    "node {node}: numberOfAssignments is {} but {n} blocks use it",
                    st.number_of_assignments
                ),
            );
        }
    }
    out
}
