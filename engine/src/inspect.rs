//! Inspecting a state file: what it records, and everything in it that does not add up.
//!
//! The kubelet refuses a file whose checksum is wrong and says nothing more; an operator
//! looking at a hand-edited or half-repaired file needs the rest. So this decode is lenient
//! about the checksums (a mismatch is one finding, with both checksums) and strict only about
//! the shape (a file that is not a checkpoint at all is an error). Everything is computed
//! here, once; `pymm state verify/inspect` only print it.
//!
//! A V3 file carries two states, its V1 fields (what a kubelet up to 1.35 restores) and
//! `data` (what 1.37+ restores); the inspection shows `data`'s when it decodes, and says
//! where the two differ.

use crate::checkpoint::{
    checksum, checksum_v2, data_checksum, decode_v3_data, encoded, looks_like_v3, v2_verifies,
    v3_or_older, verify_data_checksum, Encoded,
};
use crate::checkpoint_reader::{self, Read, V1_FIELDS};
use crate::config::Config;
use crate::error::{EngineError, Result};
use crate::fragmentation::Fragmentation;
use crate::machine::{HugePagePool, Machine, MemoryKind, NumaNode};
use crate::manager::Manager;
use crate::quantity::{Format, Quantity};
use crate::request::Pod;
use crate::reserved::MemoryReservation;
use crate::state::{MachineState, State};
use crate::version::{CheckpointFormat, KubeletVersion};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

/// A state file rewritten in another layout ([`Inspection::convert`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversion {
    pub file: Encoded,
    /// What the rewrite changed beyond the layout.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: &'static str,
    pub message: String,
}

/// A V3 file's `data` and `dataChecksum`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataPart {
    pub stored_checksum: u64,
    /// FNV-1a of `(string)` and `data`, as stored.
    pub computed_checksum: u64,
    /// Why `data` does not decode (the kubelet's text), when it does not.
    pub error: Option<String>,
}

impl DataPart {
    pub fn valid(&self) -> bool {
        self.error.is_none() && self.stored_checksum == self.computed_checksum
    }
}

#[derive(Debug, Clone)]
pub struct Inspection {
    /// The layout: V3 when the file has `data` or a `dataChecksum`; else V1, or V2 when its
    /// checksum is V2's (or, failing both, when it has `podEntries`).
    pub format: CheckpointFormat,
    pub policy_name: String,
    /// `checksum` as stored, and as computed over the fields it covers (V2's for V2).
    pub stored_checksum: u64,
    pub computed_checksum: u64,
    /// A V3 file's `data` part.
    pub data: Option<DataPart>,
    /// `data`'s state for a V3 file whose `data` decodes, else the outer fields'.
    pub state: State,
    pub findings: Vec<Finding>,
    /// What a kubelet up to 1.35 and a 1.37+ kubelet make of the file: the layout each
    /// restores, or its error.
    up_to_1_35: Result<CheckpointFormat>,
    from_1_37: Result<CheckpointFormat>,
}

impl Inspection {
    /// `checksum` matches the fields it covers.
    pub fn checksum_valid(&self) -> bool {
        self.stored_checksum == self.computed_checksum
    }

    /// A V3 file's `data` decodes and matches `dataChecksum` (None: not V3).
    pub fn data_checksum_valid(&self) -> Option<bool> {
        self.data.as_ref().map(DataPart::valid)
    }

    /// Every checksum the file carries matches what it covers.
    pub fn intact(&self) -> bool {
        self.checksum_valid() && self.data_checksum_valid() != Some(false)
    }

    /// The layout the kubelet of `version` restores from this file, or the error (in the
    /// kubelet's inner text) it refuses it with.
    pub fn accepted_as(&self, version: KubeletVersion) -> Result<CheckpointFormat> {
        match version.checkpoint_format() {
            CheckpointFormat::V3 => self.from_1_37.clone(),
            CheckpointFormat::V1 | CheckpointFormat::V2 => self.up_to_1_35.clone(),
        }
    }

    pub fn pod_entry_count(&self) -> usize {
        self.state.pod_entries.len()
    }

    /// Why the file fails for its own layout's reader, if it does: a V3 file's `data` that
    /// does not decode or match `dataChecksum`, else a `checksum` that does not match.
    pub fn integrity_error(&self) -> Option<EngineError> {
        if let Some(d) = &self.data {
            if let Some(err) = &d.error {
                return Some(EngineError::corrupt(format!(
                    "could not load v3 checkpoint: {err}"
                )));
            }
            if d.stored_checksum != d.computed_checksum {
                return Some(EngineError::CorruptCheckpoint {
                    message: "could not load v3 checkpoint: checkpoint is corrupted".into(),
                    stored: Some(d.stored_checksum),
                    computed: Some(d.computed_checksum),
                    checksum_field: Some("dataChecksum"),
                });
            }
        }
        (!self.checksum_valid()).then(|| EngineError::CorruptCheckpoint {
            message: "checkpoint is corrupted".into(),
            stored: Some(self.stored_checksum),
            computed: Some(self.computed_checksum),
            checksum_field: Some("checksum"),
        })
    }

    /// The file rewritten in `to`, with fresh checksums, and what the rewrite changed
    /// beyond the layout. Refused when a checksum fails (unless `ignore_checksum`: the
    /// state shown is then written as it is) and when pod entries would be lost to V1
    /// (unless `drop_pod_entries`).
    pub fn convert(
        &self,
        to: CheckpointFormat,
        ignore_checksum: bool,
        drop_pod_entries: bool,
    ) -> Result<Conversion> {
        let mut notes = Vec::new();
        if let Some(e) = self.integrity_error() {
            if !ignore_checksum {
                return Err(e);
            }
            notes.push(format!(
                "the file failed its checks ({}); its content was kept as it is and given fresh checksums",
                e.message()
            ));
        }
        if self.data.as_ref().is_some_and(|d| d.error.is_some()) {
            notes.push("data does not decode: converted from the V1 fields".into());
        }
        if self.findings.iter().any(|f| f.kind == "v1-fields-differ") {
            notes.push(
                "the V1 fields differed from data: data's state was kept (what a 1.37+ kubelet restores)"
                    .into(),
            );
        }
        let mut state = self.state.clone();
        let pods = state.pod_entries.len();
        if to == CheckpointFormat::V1 && pods > 0 {
            if !drop_pod_entries {
                return Err(EngineError::Config {
                    message: format!(
                        "the file has {pods} pod-level reservation(s) (podEntries), which a V1 file cannot hold: a kubelet up to 1.35 does not know them"
                    ),
                    key: Some("drop-pod-entries".into()),
                    suggestion: None,
                });
            }
            notes.push(format!(
                "dropped {pods} pod-level reservation(s) (podEntries)"
            ));
            state.pod_entries.clear();
        }
        Ok(Conversion {
            file: encoded(&self.policy_name, &state, to),
            notes,
        })
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

    /// Pod-level reservations (`podEntries`), the first `limit` of them.
    pub fn pod_entry_rows(&self, limit: usize) -> Vec<Value> {
        self.state
            .pod_entries
            .iter()
            .take(limit)
            .map(|(uid, e)| {
                let blocks = e.memory_blocks.as_deref().unwrap_or_default();
                let nodes = crate::state::block_nodes(blocks);
                json!({"podUID": uid, "numaNodes": nodes, "blocks": blocks_value(blocks)})
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
        let verdict = |r: &Result<CheckpointFormat>| match r {
            Ok(f) => json!({"restores": f.as_str()}),
            Err(e) => json!({"error": e.message()}),
        };
        let mut head = json!({
            "format": self.format.as_str(),
            "policyName": self.policy_name,
            "checksum": {"stored": self.stored_checksum, "computed": self.computed_checksum,
                         "valid": self.checksum_valid()},
            "kubelet": {"upTo1.35": verdict(&self.up_to_1_35), "from1.37": verdict(&self.from_1_37)},
            "nodes": self.node_rows(),
            "groups": self.group_rows(),
            "podCount": self.state.entries.len(),
            "containerCount": self.containers(),
            "podEntryCount": self.pod_entry_count(),
        });
        if let (Some(d), Value::Object(m)) = (&self.data, &mut head) {
            m.insert(
                "dataChecksum".into(),
                json!({"stored": d.stored_checksum, "computed": d.computed_checksum,
                       "valid": d.valid(), "error": d.error}),
            );
        }
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
        o.push_str("],\"podEntries\":[");
        for (i, row) in self.pod_entry_rows(pods_limit).iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            o.push_str(&row.to_string());
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
        // The kubelet that writes this layout would not restore it: no state to ask about.
        let own = match self.format {
            CheckpointFormat::V2 | CheckpointFormat::V3 => KubeletVersion::V1_38,
            CheckpointFormat::V1 => KubeletVersion::V1_32,
        };
        self.accepted_as(own)?;
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
            let nodes = crate::state::block_nodes(blocks);
            json!({"name": name, "numaNodes": nodes, "blocks": blocks_value(blocks)})
        })
        .collect();
    json!({"podUID": uid, "containers": containers})
}

fn blocks_value(blocks: &[crate::state::Block]) -> Vec<Value> {
    blocks
        .iter()
        .map(|b| json!({"numaAffinity": b.numa_affinity, "type": b.resource, "size": b.size}))
        .collect()
}

/// Sums can exceed 2^64 in a damaged file; JSON numbers beyond that are written as text.
fn big(v: u128) -> Value {
    u64::try_from(v).map_or_else(|_| json!(v.to_string()), |x| json!(x))
}

/// Decodes a state file for inspection. Errors only when the text is not a checkpoint.
pub fn inspect(text: &str) -> Result<Inspection> {
    let r = checkpoint_reader::read(text)?;
    if let Some(e) = r.first_error(V1_FIELDS) {
        return Err(e.clone());
    }
    let v1_computed = u64::from(checksum(&r.policy_name, &r.state));
    let v1_ok = v1_computed == r.checksum;
    let looks_v3 = looks_like_v3(&r);
    // `data`'s state is shown whenever it decodes, its checksum right or wrong.
    let v3 = decode_v3_data(&r);
    let v3_verified = match &v3 {
        Ok(_) => verify_data_checksum(&r),
        Err(e) => Err(e.clone()),
    };
    let v2_ok = !looks_v3 && !v1_ok && v2_verifies(&r);
    let from_1_37 = v3_or_older(
        looks_v3,
        v3_verified,
        || v2_ok,
        || {
            if r.checksum == 0 || v1_ok {
                Ok(())
            } else {
                Err(corrupt_v1(r.checksum, v1_computed))
            }
        },
    )
    .map(|(f, _)| f);
    let up_to_1_35 = if v1_ok {
        Ok(CheckpointFormat::V1)
    } else {
        Err(corrupt_v1(r.checksum, v1_computed))
    };
    let format = if looks_v3 {
        CheckpointFormat::V3
    } else if v1_ok || !(v2_ok || r.has_pod_entries) {
        CheckpointFormat::V1
    } else {
        CheckpointFormat::V2
    };
    let computed_checksum = match format {
        CheckpointFormat::V2 if v2_ok => r.checksum,
        CheckpointFormat::V2 => u64::from(checksum_v2(&r.policy_name, &r.state)),
        CheckpointFormat::V1 | CheckpointFormat::V3 => v1_computed,
    };
    let data = looks_v3.then(|| DataPart {
        stored_checksum: r.data_checksum,
        computed_checksum: u64::from(data_checksum(&r.data)),
        error: v3.as_ref().err().map(|e| e.message().to_string()),
    });
    let Read {
        policy_name,
        state: mut outer,
        checksum: stored_checksum,
        ..
    } = r;
    if format != CheckpointFormat::V2 {
        outer.pod_entries.clear();
    }
    let mut findings = Vec::new();
    let (policy_name, state) = match v3 {
        Ok(cp) if looks_v3 => {
            if cp.policy_name != policy_name || !same_v1_state(&cp.state, &outer) {
                findings.push(Finding {
                    kind: "v1-fields-differ",
                    message: "the V1 fields differ from data: a kubelet up to 1.35 would restore another state (the V1 fields) than 1.37+ (data)".into(),
                });
            }
            (cp.policy_name, cp.state)
        }
        _ => (policy_name, outer),
    };
    let mut out = Inspection {
        format,
        policy_name,
        stored_checksum,
        computed_checksum,
        data,
        state,
        findings: Vec::new(),
        up_to_1_35,
        from_1_37,
    };
    if !out.checksum_valid() {
        let consequence = match out.format {
            CheckpointFormat::V1 if out.stored_checksum == 0 => {
                "a kubelet up to 1.35 will refuse this file; 1.37+ accepts a zero checksum"
            }
            CheckpointFormat::V1 => "the kubelet will refuse this file",
            CheckpointFormat::V2 => {
                "the kubelet will refuse this file (a kubelet up to 1.35 refuses every V2 file)"
            }
            CheckpointFormat::V3 => {
                "a kubelet up to 1.35 will refuse this file; 1.37+ reads only data"
            }
        };
        out.findings.push(Finding {
            kind: "checksum",
            message: format!(
                "checksum mismatch: the stored checksum {} does not match the content ({}) (kubelet: checkpoint is corrupted); {consequence}",
                out.stored_checksum, out.computed_checksum
            ),
        });
    }
    if let Some(d) = &out.data {
        if let Some(err) = &d.error {
            out.findings.push(Finding {
                kind: "data",
                message: format!(
                    "data does not decode (kubelet 1.37+: could not load v3 checkpoint: {err}); a 1.37+ kubelet will refuse this file"
                ),
            });
        } else if d.stored_checksum != d.computed_checksum {
            out.findings.push(Finding {
                kind: "data-checksum",
                message: format!(
                    "dataChecksum mismatch: the stored dataChecksum {} does not match data ({}) (kubelet 1.37+: could not load v3 checkpoint: checkpoint is corrupted); a 1.37+ kubelet will refuse this file",
                    d.stored_checksum, d.computed_checksum
                ),
            });
        }
    }
    out.findings.append(&mut findings);
    out.findings.extend(self::findings(&out.state));
    Ok(out)
}

fn corrupt_v1(stored: u64, computed: u64) -> EngineError {
    EngineError::CorruptCheckpoint {
        message: "checkpoint is corrupted".into(),
        stored: Some(stored),
        computed: Some(computed),
        checksum_field: Some("checksum"),
    }
}

/// The V1 fields' state and `data`'s agree (pod entries are only in `data`).
fn same_v1_state(data: &State, outer: &State) -> bool {
    data.machine_state == outer.machine_state && data.entries == outer.entries
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
    // A pod with a pod-level reservation counts once per block of it; its containers'
    // blocks are slices of that reservation and do not count again (kubelet 1.36+).
    let pod_blocks = state.pod_entries.iter().map(|(uid, e)| {
        let blocks = e.memory_blocks.as_deref().unwrap_or_default();
        ((uid.as_str(), None), blocks, true)
    });
    let container_blocks = state.entries.iter().flat_map(|(uid, ctrs)| {
        let sliced = state.pod_entries.contains_key(uid);
        ctrs.iter().map(move |(name, blocks)| {
            let blocks = blocks.as_deref().unwrap_or_default();
            ((uid.as_str(), Some(name.as_str())), blocks, !sliced)
        })
    });
    // Named only for a finding: a file has a million containers and few findings.
    let named = |(uid, name): (&str, Option<&str>)| match name {
        Some(name) => format!("pod {uid} container {name}"),
        None => format!("pod {uid} (pod-level)"),
    };
    for (who, blocks, counts) in pod_blocks.chain(container_blocks) {
        for b in blocks {
            if b.affinity().is_empty() {
                add(
                    "block-without-nodes",
                    format!("{}: a block has no NUMA nodes", named(who)),
                );
            }
            for node in b.affinity() {
                let Some(st) = ms.get(node) else {
                    add(
                        "unknown-node",
                        format!(
                            "{}: a block uses NUMA node {node}, not in the file",
                            named(who)
                        ),
                    );
                    continue;
                };
                if counts {
                    *counted.entry(*node).or_default() += 1;
                }
                if !st.memory_map.contains_key(&b.resource) {
                    add(
                        "unknown-resource",
                        format!(
                            "{}: a block uses resource {:?}, unknown on node {node}",
                            named(who),
                            b.resource
                        ),
                    );
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{to_json, to_json_v2, to_json_v3};

    fn real_v3(name: &str) -> String {
        let path = format!(
            "{}/../tests/conformance/state-files/v3/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(path).unwrap()
    }

    fn kinds(i: &Inspection) -> Vec<&'static str> {
        i.findings.iter().map(|f| f.kind).collect()
    }

    #[test]
    fn a_v3_file_shows_its_data_and_both_checksums() {
        let i = inspect(&real_v3("state-v3-podentries-example.json")).unwrap();
        assert_eq!(i.format, CheckpointFormat::V3);
        assert_eq!(
            (i.stored_checksum, i.computed_checksum),
            (1365803285, 1365803285)
        );
        let d = i.data.clone().unwrap();
        assert_eq!(
            (d.stored_checksum, d.computed_checksum, d.error),
            (3169910042, 3169910042, None)
        );
        assert!(i.intact());
        assert_eq!(i.pod_entry_count(), 1);
        // The pod's reservation counts once on its node, its containers' slices not at all
        // (numberOfAssignments 2 on node 0: pod p1 and container p2/c1).
        assert_eq!(kinds(&i), Vec::<&str>::new());
        assert_eq!(
            i.accepted_as(KubeletVersion::V1_38),
            Ok(CheckpointFormat::V3)
        );
        assert_eq!(
            i.accepted_as(KubeletVersion::V1_32),
            Ok(CheckpointFormat::V1)
        );
    }

    #[test]
    fn each_damaged_checksum_is_a_finding_that_names_who_refuses_the_file() {
        let text = real_v3("state-v3-example.json");
        let i = inspect(&text.replace("2831186308", "5")).unwrap();
        assert_eq!(kinds(&i), vec!["data-checksum"]);
        assert!(i.checksum_valid() && i.data_checksum_valid() == Some(false) && !i.intact());
        assert!(i.accepted_as(KubeletVersion::V1_32).is_ok());
        assert_eq!(
            i.accepted_as(KubeletVersion::V1_38).unwrap_err().message(),
            "could not load v3 checkpoint: checkpoint is corrupted"
        );
        let i = inspect(&text.replace("2460102113", "5")).unwrap();
        assert_eq!(kinds(&i), vec!["checksum"]);
        assert!(i.findings[0].message.contains("1.37+ reads only data"));
        assert!(i.accepted_as(KubeletVersion::V1_38).is_ok());
        // V1 fields that differ from data, both checksums intact.
        let mut st = crate::checkpoint::decode(&text).unwrap().state;
        let mut v3 = to_json_v3("Static", &st);
        st.entries.remove("p3");
        let v1_other = to_json("Static", &st);
        let data_at = v3.find(",\"data\"").unwrap();
        v3.replace_range(..data_at, &v1_other[..v1_other.len() - 1]);
        let i = inspect(&v3).unwrap();
        assert!(i.intact());
        assert_eq!(kinds(&i), vec!["v1-fields-differ"]);
        assert_eq!(i.state.entries.len(), 3, "data's state is shown");
    }

    #[test]
    fn convert_refuses_damage_and_lost_pod_entries_unless_told() {
        let text = real_v3("state-v3-podentries-example.json");
        let i = inspect(&text).unwrap();
        let to_v2 = i.convert(CheckpointFormat::V2, false, false).unwrap();
        assert!(to_v2.notes.is_empty());
        let back = inspect(&to_v2.file.text).unwrap();
        assert_eq!(
            (back.format, back.stored_checksum),
            (CheckpointFormat::V2, to_v2.file.checksum)
        );
        let again = back.convert(CheckpointFormat::V3, false, false).unwrap();
        assert_eq!(again.file.text, text);
        assert_eq!(again.file.data_checksum, Some(3169910042));
        let e = i.convert(CheckpointFormat::V1, false, false).unwrap_err();
        assert!(
            matches!(e, EngineError::Config { key: Some(ref k), .. } if k == "drop-pod-entries")
        );
        let v1 = i.convert(CheckpointFormat::V1, false, true).unwrap();
        assert_eq!(
            v1.notes,
            vec!["dropped 1 pod-level reservation(s) (podEntries)"]
        );
        assert!(!v1.file.text.contains("podEntries"));
        // A damaged dataChecksum: refused, with both values; converted when told.
        let bad = inspect(&text.replace("3169910042", "7")).unwrap();
        match bad.convert(CheckpointFormat::V3, false, false).unwrap_err() {
            EngineError::CorruptCheckpoint {
                stored,
                computed,
                checksum_field,
                ..
            } => {
                assert_eq!(
                    (stored, computed, checksum_field),
                    (Some(7), Some(3169910042), Some("dataChecksum"))
                );
            }
            e => panic!("{e:?}"),
        }
        let fixed = bad.convert(CheckpointFormat::V3, true, false).unwrap();
        assert_eq!(fixed.file.text, text);
        assert_eq!(fixed.notes.len(), 1);
    }

    #[test]
    fn v2_is_told_from_v1_by_its_checksum() {
        let text = real_v3("state-v3-podentries-example.json");
        let st = crate::checkpoint::decode_as(&text, KubeletVersion::V1_38)
            .unwrap()
            .state;
        let i = inspect(&to_json_v2("Static", &st)).unwrap();
        assert_eq!(
            (i.format, i.checksum_valid(), i.pod_entry_count()),
            (CheckpointFormat::V2, true, 1)
        );
        assert_eq!(
            i.accepted_as(KubeletVersion::V1_38),
            Ok(CheckpointFormat::V2)
        );
        assert!(i.accepted_as(KubeletVersion::V1_32).is_err());
        // A V2 file without pod entries has V1's layout but not its checksum.
        let mut bare = st.clone();
        bare.pod_entries.clear();
        let i = inspect(&to_json_v2("Static", &bare)).unwrap();
        assert_eq!((i.format, i.checksum_valid()), (CheckpointFormat::V2, true));
        let i = inspect(&to_json("Static", &bare)).unwrap();
        assert_eq!((i.format, i.checksum_valid()), (CheckpointFormat::V1, true));
    }
}
