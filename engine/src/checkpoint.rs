//! The kubelet's `memory_manager_state` file: compact JSON in Go's `encoding/json` layout, and
//! the V1 checksum, FNV-1a 32 over go-spew's `%#v` rendering of the checkpoint struct with
//! the checksum field set to 0 (reference §3.2). Both are written by hand: the byte layout is
//! the contract, and no serializer reproduces Go's key order and escaping by accident.

use crate::error::{EngineError, Result};
use crate::state::{Assignments, Block, MachineState, MemoryTable, NodeState, State};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt::Write;

pub const STATE_FILE_NAME: &str = "memory_manager_state";

/// FNV-1a, 32 bits.
pub fn fnv1a32(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

fn spew_ints(out: &mut String, v: Option<&Vec<i64>>) {
    match v {
        None => out.push_str("<nil>"),
        Some(v) => {
            out.push('[');
            for (i, x) in v.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                let _ = write!(out, "{x}");
            }
            out.push(']');
        }
    }
}

/// go-spew's `%#v` of `&MemoryManagerCheckpoint{...}` with `Checksum: 0`.
pub fn spew_text(policy_name: &str, state: &State) -> String {
    let mut o = String::with_capacity(512);
    let _ = write!(
        o,
        "(*state.MemoryManagerCheckpoint){{PolicyName:(string){policy_name} MachineState:(state.NUMANodeMap)map["
    );
    for (i, (id, n)) in state.machine_state.iter().enumerate() {
        if i > 0 {
            o.push(' ');
        }
        let _ = write!(
            o,
            "{id}:<*>{{NumberOfAssignments:(int){} MemoryMap:(map[v1.ResourceName]*state.MemoryTable)map[",
            n.number_of_assignments
        );
        for (j, (name, t)) in n.memory_map.iter().enumerate() {
            if j > 0 {
                o.push(' ');
            }
            let _ = write!(
                o,
                "{name}:<*>{{TotalMemSize:(uint64){} SystemReserved:(uint64){} Allocatable:(uint64){} Reserved:(uint64){} Free:(uint64){}}}",
                t.total, t.system_reserved, t.allocatable, t.reserved, t.free
            );
        }
        o.push_str("] Cells:([]int)");
        spew_ints(&mut o, n.cells.as_ref());
        o.push('}');
    }
    o.push_str("] Entries:(state.ContainerMemoryAssignments)map[");
    for (i, (pod, ctrs)) in state.entries.iter().enumerate() {
        if i > 0 {
            o.push(' ');
        }
        let _ = write!(o, "{pod}:map[");
        for (j, (name, blocks)) in ctrs.iter().enumerate() {
            if j > 0 {
                o.push(' ');
            }
            let Some(blocks) = blocks else {
                let _ = write!(o, "{name}:<nil>");
                continue;
            };
            let _ = write!(o, "{name}:[");
            for (k, b) in blocks.iter().enumerate() {
                if k > 0 {
                    o.push(' ');
                }
                o.push_str("{NUMAAffinity:([]int)");
                spew_ints(&mut o, b.numa_affinity.as_ref());
                let _ = write!(
                    o,
                    " Type:(v1.ResourceName){} Size:(uint64){}}}",
                    b.resource, b.size
                );
            }
            o.push(']');
        }
        o.push(']');
    }
    o.push_str("] Checksum:(checksum.Checksum)0}");
    o
}

pub fn checksum(policy_name: &str, state: &State) -> u32 {
    fnv1a32(spew_text(policy_name, state).as_bytes())
}

/// A JSON string as Go's encoder writes it (HTML characters escaped).
fn go_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn json_ints(out: &mut String, v: Option<&Vec<i64>>) {
    match v {
        None => out.push_str("null"),
        Some(v) => {
            out.push('[');
            for (i, x) in v.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{x}");
            }
            out.push(']');
        }
    }
}

fn json_machine_state(o: &mut String, ms: &MachineState) {
    o.push('{');
    // Go sorts map keys as strings: "10" comes before "2".
    let mut ids: Vec<(String, &NodeState)> = ms.iter().map(|(k, v)| (k.to_string(), v)).collect();
    ids.sort_by(|a, b| a.0.cmp(&b.0));
    for (i, (id, n)) in ids.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        let _ = write!(
            o,
            "\"{id}\":{{\"numberOfAssignments\":{},\"memoryMap\":{{",
            n.number_of_assignments
        );
        for (j, (name, t)) in n.memory_map.iter().enumerate() {
            if j > 0 {
                o.push(',');
            }
            go_json_string(o, name);
            let _ = write!(
                o,
                ":{{\"total\":{},\"systemReserved\":{},\"allocatable\":{},\"reserved\":{},\"free\":{}}}",
                t.total, t.system_reserved, t.allocatable, t.reserved, t.free
            );
        }
        o.push_str("},\"cells\":");
        json_ints(o, n.cells.as_ref());
        o.push('}');
    }
    o.push('}');
}

fn json_entries(o: &mut String, entries: &Assignments) {
    o.push('{');
    for (i, (pod, ctrs)) in entries.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        go_json_string(o, pod);
        o.push_str(":{");
        for (j, (name, blocks)) in ctrs.iter().enumerate() {
            if j > 0 {
                o.push(',');
            }
            go_json_string(o, name);
            let Some(blocks) = blocks else {
                o.push_str(":null");
                continue;
            };
            o.push_str(":[");
            for (k, b) in blocks.iter().enumerate() {
                if k > 0 {
                    o.push(',');
                }
                o.push_str("{\"numaAffinity\":");
                json_ints(o, b.numa_affinity.as_ref());
                o.push_str(",\"type\":");
                go_json_string(o, &b.resource);
                let _ = write!(o, ",\"size\":{}}}", b.size);
            }
            o.push(']');
        }
        o.push('}');
    }
    o.push('}');
}

/// The state file text, exactly as the kubelet writes it (no trailing newline).
pub fn to_json(policy_name: &str, state: &State) -> String {
    let mut o = String::with_capacity(1024);
    o.push_str("{\"policyName\":");
    go_json_string(&mut o, policy_name);
    o.push_str(",\"machineState\":");
    json_machine_state(&mut o, &state.machine_state);
    if !state.entries.is_empty() {
        o.push_str(",\"entries\":");
        json_entries(&mut o, &state.entries);
    }
    let _ = write!(o, ",\"checksum\":{}}}", checksum(policy_name, state));
    o
}

/// The machine state alone as JSON, in the state file's layout.
pub fn machine_state_json(ms: &MachineState) -> String {
    let mut o = String::new();
    json_machine_state(&mut o, ms);
    o
}

pub fn entries_json(entries: &Assignments) -> String {
    let mut o = String::new();
    json_entries(&mut o, entries);
    o
}

fn corrupt(msg: impl Into<String>) -> EngineError {
    EngineError::corrupt(msg)
}

/// Go's decoder matches field names case-insensitively; an exact match wins.
fn field<'a>(m: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    m.get(name).or_else(|| {
        m.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

fn type_err(what: &str, v: &Value) -> EngineError {
    let kind = match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    corrupt(format!("json: cannot unmarshal {kind} into {what}"))
}

fn as_u64(v: Option<&Value>, what: &str) -> Result<u64> {
    match v {
        None | Some(Value::Null) => Ok(0),
        Some(x) => x.as_u64().ok_or_else(|| type_err(what, x)),
    }
}

fn as_i64(v: Option<&Value>, what: &str) -> Result<i64> {
    match v {
        None | Some(Value::Null) => Ok(0),
        Some(x) => x.as_i64().ok_or_else(|| type_err(what, x)),
    }
}

fn as_ints(v: Option<&Value>, what: &str) -> Result<Option<Vec<i64>>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| x.as_i64().ok_or_else(|| type_err(what, x)))
            .collect::<Result<Vec<_>>>()
            .map(Some),
        Some(x) => Err(type_err(what, x)),
    }
}

fn as_object<'a>(v: &'a Value, what: &str) -> Result<Option<&'a Map<String, Value>>> {
    match v {
        Value::Null => Ok(None),
        Value::Object(m) => Ok(Some(m)),
        x => Err(type_err(what, x)),
    }
}

pub fn parse_machine_state(v: &Value) -> Result<MachineState> {
    let mut ms = MachineState::new();
    let Some(m) = as_object(v, "state.NUMANodeMap")? else {
        return Ok(ms);
    };
    for (k, node) in m {
        let id: i64 = k.parse().map_err(|_| {
            corrupt(format!(
                "json: cannot unmarshal number {k} into Go value of type int"
            ))
        })?;
        let Some(nm) = as_object(node, "state.NUMANodeState")? else {
            continue;
        };
        let mut memory_map = BTreeMap::new();
        if let Some(mm) = field(nm, "memoryMap") {
            if let Some(mm) = as_object(mm, "map[v1.ResourceName]*state.MemoryTable")? {
                for (name, t) in mm {
                    let Some(t) = as_object(t, "state.MemoryTable")? else {
                        continue;
                    };
                    let w = "Go struct field MemoryTable of type uint64";
                    memory_map.insert(
                        name.clone(),
                        MemoryTable {
                            total: as_u64(field(t, "total"), w)?,
                            system_reserved: as_u64(field(t, "systemReserved"), w)?,
                            allocatable: as_u64(field(t, "allocatable"), w)?,
                            reserved: as_u64(field(t, "reserved"), w)?,
                            free: as_u64(field(t, "free"), w)?,
                        },
                    );
                }
            }
        }
        ms.insert(
            id,
            NodeState {
                number_of_assignments: as_i64(
                    field(nm, "numberOfAssignments"),
                    "Go struct field NUMANodeState.numberOfAssignments of type int",
                )?,
                memory_map,
                cells: as_ints(
                    field(nm, "cells"),
                    "Go struct field NUMANodeState.cells of type int",
                )?,
            },
        );
    }
    Ok(ms)
}

pub fn parse_entries(v: &Value) -> Result<Assignments> {
    let mut out = Assignments::new();
    let Some(m) = as_object(v, "state.ContainerMemoryAssignments")? else {
        return Ok(out);
    };
    for (pod, ctrs) in m {
        let Some(cm) = as_object(ctrs, "map[string][]state.Block")? else {
            continue;
        };
        let mut pm = BTreeMap::new();
        for (name, blocks) in cm {
            let mut bl = Vec::new();
            match blocks {
                Value::Null => {
                    pm.insert(name.clone(), None);
                    continue;
                }
                Value::Array(a) => {
                    for b in a {
                        let Some(bm) = as_object(b, "state.Block")? else {
                            continue;
                        };
                        let resource = match field(bm, "type") {
                            None | Some(Value::Null) => String::new(),
                            Some(Value::String(s)) => s.clone(),
                            Some(x) => {
                                return Err(type_err(
                                    "Go struct field Block.type of type v1.ResourceName",
                                    x,
                                ))
                            }
                        };
                        bl.push(Block {
                            numa_affinity: as_ints(
                                field(bm, "numaAffinity"),
                                "Go struct field Block.numaAffinity of type int",
                            )?,
                            resource,
                            size: as_u64(
                                field(bm, "size"),
                                "Go struct field Block.size of type uint64",
                            )?,
                        });
                    }
                }
                x => return Err(type_err("[]state.Block", x)),
            }
            pm.insert(name.clone(), Some(bl));
        }
        out.insert(pod.clone(), pm);
    }
    Ok(out)
}

/// A decoded checkpoint: what the file holds, before any policy check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub policy_name: String,
    pub state: State,
    pub checksum: u64,
}

/// Decodes a state file and verifies its checksum. Errors carry the kubelet's inner texts
/// (`unexpected end of JSON input`, `checkpoint is corrupted`); a checksum mismatch carries
/// both checksums.
pub fn decode(text: &str) -> Result<Checkpoint> {
    let cp = decode_unverified(text)?;
    let computed = u64::from(checksum(&cp.policy_name, &cp.state));
    if computed != cp.checksum {
        return Err(EngineError::CorruptCheckpoint {
            message: "checkpoint is corrupted".into(),
            stored: Some(cp.checksum),
            computed: Some(computed),
        });
    }
    Ok(cp)
}

/// Decodes a state file without checking its checksum (`checksum` is the stored one), in
/// one pass ([`crate::checkpoint_reader`]).
pub fn decode_unverified(text: &str) -> Result<Checkpoint> {
    let r = crate::checkpoint_reader::read(text)?;
    Ok(Checkpoint {
        policy_name: r.policy_name,
        state: r.state,
        checksum: r.checksum,
    })
}

/// The kubelet's wrapping of a restore error; the error keeps its type and data.
pub fn restore_error(inner: EngineError, path: &str) -> EngineError {
    let msg = format!(
        "could not restore state from checkpoint: {}, please drain this node and delete the memory manager checkpoint file {path:?} before restarting Kubelet",
        inner.message()
    );
    inner.with_message(msg)
}

/// `NewCheckpointState` minus the file I/O: decode, verify, compare the policy name.
pub fn restore(text: &str, configured_policy: &str, path: &str) -> Result<State> {
    let cp = decode(text).map_err(|e| restore_error(e, path))?;
    if cp.policy_name != configured_policy {
        let e = EngineError::PolicyMismatch {
            message: format!(
                "[memorymanager] configured policy {configured_policy:?} differs from state checkpoint policy {:?}",
                cp.policy_name
            ),
            configured: configured_policy.to_string(),
            stored: cp.policy_name.clone(),
        };
        return Err(restore_error(e, path));
    }
    Ok(cp.state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_checksum_vector() {
        let text = r#"{"policyName":"static","machineState":{"0":{"numberOfAssignments":0,"memoryMap":{"memory":{"total":2048,"systemReserved":512,"allocatable":1536,"reserved":512,"free":1024}},"cells":[]}},"entries":{"pod":{"container1":[{"numaAffinity":[0],"type":"memory","size":512}]}},"checksum":4215593881}"#;
        let cp = decode(text).unwrap();
        assert_eq!(cp.checksum, 4215593881);
        assert_eq!(to_json("static", &cp.state), text);
    }

    #[test]
    fn go_key_order_and_escaping() {
        let mut st = State::default();
        for id in [2, 10] {
            st.machine_state.insert(
                id,
                NodeState {
                    cells: Some(vec![id]),
                    ..Default::default()
                },
            );
        }
        st.set_blocks("<p&>", "c", vec![]);
        let j = to_json("Static", &st);
        assert!(j.find("\"10\"").unwrap() < j.find("\"2\"").unwrap());
        assert!(j.contains("\"\\u003cp\\u0026\\u003e\""));
    }
}
