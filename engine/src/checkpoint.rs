//! The kubelet's `memory_manager_state` file: compact JSON in Go's `encoding/json` layout, and
//! its checksums (reference §3.2), in the three layouts kubelets have written:
//!
//! * **V1** (every kubelet up to 1.35): `policyName`, `machineState`, `entries`, `checksum`;
//!   the checksum is FNV-1a 32 over go-spew's `%#v` rendering of the struct with the checksum
//!   field set to 0.
//! * **V2** (1.36): V1 plus `podEntries` (pod uid -> `{"memoryBlocks": [...]}`), the checksum
//!   over all of it, `PodEntries` included even when empty. A kubelet up to 1.35 refuses a V2
//!   file (its V1 checksum does not match), which is why 1.37 moved on to
//! * **V3** (1.37+, PR #139626): the V1 fields with their V1 checksum, kept so that an older
//!   kubelet can still read the file, plus `data`, a string holding the JSON of policyName,
//!   machineState, entries and podEntries, and `dataChecksum`, FNV-1a 32 of `(string)`
//!   followed by `data` (go-spew's `%#v` of a Go string). `data` is authoritative: a 1.37+
//!   kubelet neither reads nor checks the V1 fields of a V3 file.
//!
//! Reading follows the kubelet of the selected version ([`decode_as`]): up to 1.35 (pymm's
//! `latest` and `1.26`) the V1 fields of whatever file it is, the rest ignored; from 1.37 V3,
//! else V2, else V1 (a V1 checksum of 0 accepted), and a file that looks like V3 (non-empty
//! `data` or a non-zero `dataChecksum`) but fails is an error with no fallback.
//!
//! Everything is written by hand: the byte layout is the contract, and no serializer
//! reproduces Go's key order and escaping by accident.

use crate::checkpoint_reader::{self, Read, V1_FIELDS, V2_FIELDS, V3_FIELDS};
use crate::error::{EngineError, Result};
use crate::state::{
    Assignments, Block, MachineState, MemoryTable, NodeState, PodAssignments, State,
};
use crate::version::{CheckpointFormat, KubeletVersion};
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

/// go-spew's `%#v` of `&MemoryManagerCheckpoint{...}` with `Checksum: 0`: the V1 checksum's
/// text, also the V1 part of a V3 file (the kubelet renames its `MemoryManagerCheckpointV1`
/// back to this name so that older kubelets accept the checksum).
pub fn spew_text(policy_name: &str, state: &State) -> String {
    spew(policy_name, state, false)
}

/// The V2 checksum's text: as V1 with `PodEntries` between `Entries` and `Checksum`.
pub fn spew_text_v2(policy_name: &str, state: &State) -> String {
    spew(policy_name, state, true)
}

fn spew_blocks(o: &mut String, blocks: &[Block]) {
    o.push('[');
    for (k, b) in blocks.iter().enumerate() {
        if k > 0 {
            o.push(' ');
        }
        o.push_str("{NUMAAffinity:([]int)");
        spew_ints(o, b.numa_affinity.as_ref());
        let _ = write!(
            o,
            " Type:(v1.ResourceName){} Size:(uint64){}}}",
            b.resource, b.size
        );
    }
    o.push(']');
}

fn spew(policy_name: &str, state: &State, pod_entries: bool) -> String {
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
            let _ = write!(o, "{name}:");
            spew_blocks(&mut o, blocks);
        }
        o.push(']');
    }
    o.push(']');
    if pod_entries {
        // A map of structs: each value prints as `{Field:(type)value}`, untyped itself.
        o.push_str(" PodEntries:(state.PodMemoryAssignments)map[");
        for (i, (pod, e)) in state.pod_entries.iter().enumerate() {
            if i > 0 {
                o.push(' ');
            }
            let _ = write!(o, "{pod}:{{MemoryBlocks:([]state.Block)");
            match &e.memory_blocks {
                None => o.push_str("<nil>"),
                Some(blocks) => spew_blocks(&mut o, blocks),
            }
            o.push('}');
        }
        o.push(']');
    }
    o.push_str(" Checksum:(checksum.Checksum)0}");
    o
}

/// The V1 checksum (also the `checksum` of a V3 file).
pub fn checksum(policy_name: &str, state: &State) -> u32 {
    fnv1a32(spew_text(policy_name, state).as_bytes())
}

/// The V2 checksum.
pub fn checksum_v2(policy_name: &str, state: &State) -> u32 {
    fnv1a32(spew_text_v2(policy_name, state).as_bytes())
}

/// V3's `dataChecksum`: `checksum.New(data)` hashes go-spew's `%#v` of a Go string, which is
/// `(string)` followed by its bytes, unquoted.
pub fn data_checksum(data: &str) -> u32 {
    let mut h = fnv1a32(b"(string)");
    for b in data.as_bytes() {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
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

fn json_blocks(o: &mut String, blocks: &[Block]) {
    o.push('[');
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
            o.push(':');
            json_blocks(o, blocks);
        }
        o.push('}');
    }
    o.push('}');
}

fn json_pod_entries(o: &mut String, pod_entries: &PodAssignments) {
    o.push('{');
    for (i, (pod, e)) in pod_entries.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        go_json_string(o, pod);
        // `memoryBlocks` is omitempty: nil and empty are both left out.
        match e.memory_blocks.as_deref() {
            Some(blocks) if !blocks.is_empty() => {
                o.push_str(":{\"memoryBlocks\":");
                json_blocks(o, blocks);
                o.push('}');
            }
            _ => o.push_str(":{}"),
        }
    }
    o.push('}');
}

/// The state file text, exactly as the kubelet writes it (no trailing newline): V1, the
/// layout of every kubelet up to 1.35 (pod entries cannot be in it).
pub fn to_json(policy_name: &str, state: &State) -> String {
    encoded_v1(policy_name, state).text
}

/// A state file written, with the checksums written into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub text: String,
    /// `checksum` (V1's or V2's; a V3 file's V1 part's).
    pub checksum: u64,
    /// A V3 file's `dataChecksum`.
    pub data_checksum: Option<u64>,
}

fn encoded_v1(policy_name: &str, state: &State) -> Encoded {
    let mut o = String::with_capacity(1024);
    v1_fields(&mut o, policy_name, state, None);
    let sum = checksum(policy_name, state);
    let _ = write!(o, ",\"checksum\":{sum}}}");
    Encoded {
        text: o,
        checksum: u64::from(sum),
        data_checksum: None,
    }
}

/// `{"policyName":..,"machineState":..[,"entries":..]` with no closing brace: the start of
/// every layout and of V3's `data`. `pre` is the machine state and entries already written.
fn v1_fields(o: &mut String, policy_name: &str, state: &State, pre: Option<(&str, &str)>) {
    o.push_str("{\"policyName\":");
    go_json_string(o, policy_name);
    o.push_str(",\"machineState\":");
    match pre {
        Some((ms, _)) => o.push_str(ms),
        None => json_machine_state(o, &state.machine_state),
    }
    if !state.entries.is_empty() {
        o.push_str(",\"entries\":");
        match pre {
            Some((_, en)) => o.push_str(en),
            None => json_entries(o, &state.entries),
        }
    }
}

/// The state file as a kubelet 1.36 writes it: V1's fields, `podEntries` (omitted when
/// empty), and the V2 checksum over all of them.
pub fn to_json_v2(policy_name: &str, state: &State) -> String {
    encoded_v2(policy_name, state).text
}

fn encoded_v2(policy_name: &str, state: &State) -> Encoded {
    let mut o = String::with_capacity(1024);
    v1_fields(&mut o, policy_name, state, None);
    if !state.pod_entries.is_empty() {
        o.push_str(",\"podEntries\":");
        json_pod_entries(&mut o, &state.pod_entries);
    }
    let sum = checksum_v2(policy_name, state);
    let _ = write!(o, ",\"checksum\":{sum}}}");
    Encoded {
        text: o,
        checksum: u64::from(sum),
        data_checksum: None,
    }
}

/// V3's `data`: the JSON of `MemoryManagerCheckpointData` (policyName, machineState,
/// entries and podEntries, the last two omitted when empty).
pub fn data_json(policy_name: &str, state: &State) -> String {
    let mut o = String::with_capacity(1024);
    v1_fields(&mut o, policy_name, state, None);
    push_pod_entries_and_close(&mut o, state);
    o
}

fn push_pod_entries_and_close(o: &mut String, state: &State) {
    if !state.pod_entries.is_empty() {
        o.push_str(",\"podEntries\":");
        json_pod_entries(o, &state.pod_entries);
    }
    o.push('}');
}

/// The state file as a kubelet 1.37+ writes it: the V1 fields and V1 checksum, then `data`
/// and `dataChecksum`.
pub fn to_json_v3(policy_name: &str, state: &State) -> String {
    encoded_v3(policy_name, state).text
}

fn encoded_v3(policy_name: &str, state: &State) -> Encoded {
    // The machine state and entries appear twice: rendered once.
    let ms = machine_state_json(&state.machine_state);
    let en = if state.entries.is_empty() {
        String::new()
    } else {
        entries_json(&state.entries)
    };
    let mut data = String::with_capacity(ms.len() + en.len() + 128);
    v1_fields(&mut data, policy_name, state, Some((&ms, &en)));
    push_pod_entries_and_close(&mut data, state);
    let mut o = String::with_capacity(2 * data.len() + 256);
    v1_fields(&mut o, policy_name, state, Some((&ms, &en)));
    let sum = checksum(policy_name, state);
    let _ = write!(o, ",\"checksum\":{sum},\"data\":");
    go_json_string(&mut o, &data);
    let data_sum = data_checksum(&data);
    let _ = write!(o, ",\"dataChecksum\":{data_sum}}}");
    Encoded {
        text: o,
        checksum: u64::from(sum),
        data_checksum: Some(u64::from(data_sum)),
    }
}

/// The state file in `format`.
pub fn encode(policy_name: &str, state: &State, format: CheckpointFormat) -> String {
    encoded(policy_name, state, format).text
}

/// The state file in `format`, and its checksums.
pub fn encoded(policy_name: &str, state: &State, format: CheckpointFormat) -> Encoded {
    match format {
        CheckpointFormat::V1 => encoded_v1(policy_name, state),
        CheckpointFormat::V2 => encoded_v2(policy_name, state),
        CheckpointFormat::V3 => encoded_v3(policy_name, state),
    }
}

/// The state file as the kubelet of `version` writes it.
pub fn to_json_as(policy_name: &str, state: &State, version: KubeletVersion) -> String {
    encode(policy_name, state, version.checkpoint_format())
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

pub fn pod_entries_json(pod_entries: &PodAssignments) -> String {
    let mut o = String::new();
    json_pod_entries(&mut o, pod_entries);
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

/// A decoded checkpoint: what a kubelet restores from the file, before the policy check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub policy_name: String,
    pub state: State,
    /// The stored `checksum` (V1's or V2's; in a V3 file, its V1 part's).
    pub checksum: u64,
    /// The layout the kubelet read it as.
    pub format: CheckpointFormat,
}

/// A checksum that does not match: the kubelet's text, both values, and which field.
fn checksum_error(stored: u64, computed: u64, field: &'static str) -> EngineError {
    EngineError::CorruptCheckpoint {
        message: "checkpoint is corrupted".into(),
        stored: Some(stored),
        computed: Some(computed),
        checksum_field: Some(field),
    }
}

/// The error with the kubelet's wrapping text in front (type and data kept).
fn wrapped(prefix: &str, e: &EngineError) -> EngineError {
    let text = format!("{prefix}{}", e.message());
    e.clone().with_message(text)
}

/// Decodes a state file as a kubelet up to 1.35 does (pymm's `latest` and `1.26`): its V1
/// fields, the rest ignored, the V1 checksum verified. Errors carry the kubelet's inner
/// texts (`unexpected end of JSON input`, `checkpoint is corrupted`); a checksum mismatch
/// carries both checksums.
pub fn decode(text: &str) -> Result<Checkpoint> {
    decode_v1(checkpoint_reader::read(text)?, false)
}

/// Decodes a state file as the kubelet of `version` does.
pub fn decode_as(text: &str, version: KubeletVersion) -> Result<Checkpoint> {
    match version.checkpoint_format() {
        CheckpointFormat::V3 => decode_v3_or_older(checkpoint_reader::read(text)?),
        CheckpointFormat::V1 | CheckpointFormat::V2 => decode(text),
    }
}

/// `MemoryManagerCheckpointV1`'s decode and checksum. A checksum of 0 passes in the readers
/// of 1.36 on ("accept empty checksum for compatibility with old file backend"), not in
/// 1.32's.
fn v1_verifies(r: &Read, zero_passes: bool) -> Result<()> {
    if let Some(e) = r.first_error(V1_FIELDS) {
        return Err(e.clone());
    }
    if zero_passes && r.checksum == 0 {
        return Ok(());
    }
    let computed = u64::from(checksum(&r.policy_name, &r.state));
    if computed != r.checksum {
        return Err(checksum_error(r.checksum, computed, "checksum"));
    }
    Ok(())
}

/// The V1 fields, as a V1 reader restores them: pod entries are not V1's.
fn v1_checkpoint(r: Read) -> Checkpoint {
    let mut state = r.state;
    state.pod_entries.clear();
    Checkpoint {
        policy_name: r.policy_name,
        state,
        checksum: r.checksum,
        format: CheckpointFormat::V1,
    }
}

fn decode_v1(r: Read, zero_passes: bool) -> Result<Checkpoint> {
    v1_verifies(&r, zero_passes)?;
    Ok(v1_checkpoint(r))
}

/// `MemoryManagerCheckpointV2`: the checksum covers the pod entries, and 0 is no exception.
pub fn v2_verifies(r: &Read) -> bool {
    r.first_error(V2_FIELDS).is_none()
        && u64::from(checksum_v2(&r.policy_name, &r.state)) == r.checksum
}

/// `MemoryManagerCheckpoint` (V3): the outer fields decode, `data` decodes, and
/// `dataChecksum` matches `data`. The V1 fields are decoded (their errors count) but
/// neither used nor verified.
pub fn decode_v3(r: &Read) -> Result<Checkpoint> {
    let cp = decode_v3_data(r)?;
    verify_data_checksum(r)?;
    Ok(cp)
}

/// A V3 file's decode before its `dataChecksum` is checked: the state in `data`.
pub fn decode_v3_data(r: &Read) -> Result<Checkpoint> {
    if let Some(e) = r.first_error(V3_FIELDS) {
        return Err(wrapped(
            "failed to deserialize memory manager checkpoint: ",
            e,
        ));
    }
    let (policy_name, state) = checkpoint_reader::read_data(&r.data)
        .map_err(|e| wrapped("failed to deserialize memory manager checkpoint data: ", &e))?;
    Ok(Checkpoint {
        policy_name,
        state,
        checksum: r.checksum,
        format: CheckpointFormat::V3,
    })
}

/// `dataChecksum` matches `data` as stored.
pub fn verify_data_checksum(r: &Read) -> Result<()> {
    let computed = u64::from(data_checksum(&r.data));
    if computed != r.data_checksum {
        return Err(checksum_error(r.data_checksum, computed, "dataChecksum"));
    }
    Ok(())
}

/// Whether the kubelet takes a file for V3, and so refuses to fall back when it fails.
pub fn looks_like_v3(r: &Read) -> bool {
    !r.data.is_empty() || r.data_checksum != 0
}

/// `loadAndMigrateCheckpointV3`'s choice, from the V3 outcome and the older formats' checks
/// (run only when reached): V3; a failed V3 that `looks_v3` is the error, with no fallback;
/// else V2; else V1, whose error is the one returned.
pub fn v3_or_older<T>(
    looks_v3: bool,
    v3: Result<T>,
    v2_verifies: impl FnOnce() -> bool,
    v1_verifies: impl FnOnce() -> Result<()>,
) -> Result<(CheckpointFormat, Option<T>)> {
    match v3 {
        Ok(t) => return Ok((CheckpointFormat::V3, Some(t))),
        Err(e) if looks_v3 => return Err(wrapped("could not load v3 checkpoint: ", &e)),
        Err(_) => {}
    }
    if v2_verifies() {
        return Ok((CheckpointFormat::V2, None));
    }
    v1_verifies()?;
    Ok((CheckpointFormat::V1, None))
}

fn decode_v3_or_older(r: Read) -> Result<Checkpoint> {
    let chosen = v3_or_older(
        looks_like_v3(&r),
        decode_v3(&r),
        || v2_verifies(&r),
        || v1_verifies(&r, true),
    )?;
    Ok(match chosen {
        (_, Some(cp)) => cp,
        (CheckpointFormat::V2, None) => Checkpoint {
            policy_name: r.policy_name,
            state: r.state,
            checksum: r.checksum,
            format: CheckpointFormat::V2,
        },
        (_, None) => v1_checkpoint(r),
    })
}

/// Decodes a state file's V1 fields without checking its checksum (`checksum` is the
/// stored one), in one pass ([`crate::checkpoint_reader`]).
pub fn decode_unverified(text: &str) -> Result<Checkpoint> {
    let r = checkpoint_reader::read(text)?;
    if let Some(e) = r.first_error(V1_FIELDS) {
        return Err(e.clone());
    }
    let mut state = r.state;
    state.pod_entries.clear();
    Ok(Checkpoint {
        policy_name: r.policy_name,
        state,
        checksum: r.checksum,
        format: CheckpointFormat::V1,
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

/// `NewCheckpointState` of a kubelet up to 1.35, minus the file I/O: decode, verify,
/// compare the policy name.
pub fn restore(text: &str, configured_policy: &str, path: &str) -> Result<State> {
    restore_as(text, configured_policy, path, KubeletVersion::V1_32)
}

/// `NewCheckpointState` of the kubelet of `version`, minus the file I/O. A 1.37+ kubelet
/// restores the pod entries only with PodLevelResourceManagers on; they are kept here, and
/// written back, for whoever decides that.
pub fn restore_as(
    text: &str,
    configured_policy: &str,
    path: &str,
    version: KubeletVersion,
) -> Result<State> {
    let cp = decode_as(text, version).map_err(|e| restore_error(e, path))?;
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

    const V1_VECTOR: &str = r#"{"policyName":"static","machineState":{"0":{"numberOfAssignments":0,"memoryMap":{"memory":{"total":2048,"systemReserved":512,"allocatable":1536,"reserved":512,"free":1024}},"cells":[]}},"entries":{"pod":{"container1":[{"numaAffinity":[0],"type":"memory","size":512}]}},"checksum":4215593881}"#;

    /// `data` of the upstream V3 test vectors (state_checkpoint_test.go), with pod entries.
    const DATA_WITH_POD_ENTRIES: &str = r#"{"policyName":"static","machineState":{"0":{"numberOfAssignments":0,"memoryMap":{"memory":{"total":2048,"systemReserved":512,"allocatable":1536,"reserved":512,"free":1024}},"cells":[]}},"entries":{"pod":{"container1":[{"numaAffinity":[0],"type":"memory","size":512}]}},"podEntries":{"pod":{"memoryBlocks":[{"numaAffinity":[0],"type":"memory","size":512}]}}}"#;
    const DATA: &str = r#"{"policyName":"static","machineState":{"0":{"numberOfAssignments":0,"memoryMap":{"memory":{"total":2048,"systemReserved":512,"allocatable":1536,"reserved":512,"free":1024}},"cells":[]}},"entries":{"pod":{"container1":[{"numaAffinity":[0],"type":"memory","size":512}]}}}"#;
    /// The V1 part the upstream tests corrupt on purpose, to show that 1.37+ never uses it.
    const WRONG_V1_PART: &str = r#""policyName":"other","machineState":{"0":{"numberOfAssignments":5,"memoryMap":{"memory":{"total":1024,"systemReserved":256,"allocatable":768,"reserved":256,"free":512}},"cells":[]}},"entries":{"pod":{"containerX":[{"numaAffinity":[0],"type":"memory","size":128}]}},"checksum":1234"#;

    fn v3_file(outer: &str, data: Option<&str>, data_checksum: Option<u64>) -> String {
        let mut o = format!("{{{outer}");
        if let Some(d) = data {
            o.push_str(",\"data\":");
            go_json_string(&mut o, d);
        }
        if let Some(c) = data_checksum {
            let _ = write!(o, ",\"dataChecksum\":{c}");
        }
        o.push('}');
        o
    }

    fn v1_part() -> &'static str {
        &V1_VECTOR[1..V1_VECTOR.len() - 1]
    }

    fn restore_138(text: &str, policy: &str) -> Result<State> {
        restore_as(
            text,
            policy,
            "/x/memory_manager_state",
            KubeletVersion::V1_38,
        )
    }

    fn inner(e: &EngineError) -> &str {
        let m = e.message();
        let m = m
            .strip_prefix("could not restore state from checkpoint: ")
            .unwrap_or(m);
        m.split(", please drain this node").next().unwrap_or(m)
    }

    fn pod_block(size: u64) -> Block {
        Block {
            numa_affinity: Some(vec![0]),
            resource: "memory".into(),
            size,
        }
    }

    /// The upstream restore table (TestCheckpointStateRestore), as a 1.37+ kubelet.
    #[test]
    fn upstream_restore_vectors_as_kubelet_1_38() {
        let cases: Vec<(&str, String, &str, Option<&str>)> = vec![
            (
                "without data section",
                v3_file(v1_part(), None, Some(1234)),
                "none",
                Some("could not load v3 checkpoint: failed to deserialize memory manager checkpoint data: unexpected end of JSON input"),
            ),
            (
                "without dataChecksum",
                v3_file(v1_part(), Some(DATA), None),
                "none",
                Some("could not load v3 checkpoint: checkpoint is corrupted"),
            ),
            (
                "valid, V1 part corrupted",
                v3_file(WRONG_V1_PART, Some(DATA), Some(1849615440)),
                "static",
                None,
            ),
            (
                "invalid dataChecksum",
                v3_file(v1_part(), Some(DATA), Some(1234)),
                "none",
                Some("could not load v3 checkpoint: checkpoint is corrupted"),
            ),
            (
                "invalid data JSON",
                v3_file(v1_part(), Some("{"), Some(1234)),
                "none",
                Some("could not load v3 checkpoint: failed to deserialize memory manager checkpoint data: unexpected end of JSON input"),
            ),
            ("invalid JSON", "{".into(), "none", Some("unexpected end of JSON input")),
            (
                "invalid policy name",
                v3_file(WRONG_V1_PART, Some(DATA), Some(1849615440)),
                "none",
                Some(r#"[memorymanager] configured policy "none" differs from state checkpoint policy "static""#),
            ),
            (
                "unknown fields in data",
                v3_file(
                    WRONG_V1_PART,
                    Some(&DATA.replacen('{', r#"{"unknownField":"value","#, 1)),
                    Some(2100279793),
                ),
                "static",
                None,
            ),
            ("v1 (migration)", V1_VECTOR.into(), "static", None),
            (
                "v1 with checksum zeroed",
                V1_VECTOR.replace("4215593881", "0"),
                "static",
                None,
            ),
            (
                "v1 with invalid checksum",
                V1_VECTOR
                    .replace("numaAffinity", "affinity")
                    .replace("4215593881", "101010"),
                "static",
                Some("checkpoint is corrupted"),
            ),
        ];
        for (name, text, policy, want) in cases {
            match (restore_138(&text, policy), want) {
                (Ok(st), None) => {
                    let blocks = st.blocks("pod", "container1").unwrap();
                    assert_eq!(blocks, &vec![pod_block(512)], "{name}");
                    assert!(st.pod_entries.is_empty(), "{name}");
                    assert_eq!(st.machine_state[&0].memory_map["memory"].total, 2048);
                }
                (Err(e), Some(w)) => assert_eq!(inner(&e), w, "{name}"),
                (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn upstream_v2_and_v3_pod_entry_vectors() {
        let v2 = V1_VECTOR.replace(
            r#","checksum":4215593881"#,
            r#","podEntries":{"pod":{"memoryBlocks":[{"numaAffinity":[0],"type":"memory","size":512}]}},"checksum":1278640530"#,
        );
        let st = restore_138(&v2, "static").unwrap();
        assert_eq!(
            st.pod_entries["pod"].memory_blocks,
            Some(vec![pod_block(512)])
        );
        assert_eq!(
            decode_as(&v2, KubeletVersion::V1_38).unwrap().format,
            CheckpointFormat::V2
        );
        // The pymm writer gives the kubelet's V2 text, checksum included.
        assert_eq!(to_json_v2("static", &st), v2);
        // A zero V2 checksum is no exception: read as V1, which drops the pod entries.
        let zero = v2.replace("1278640530", "0");
        let cp = decode_as(&zero, KubeletVersion::V1_38).unwrap();
        assert_eq!(
            (cp.format, cp.state.pod_entries.len()),
            (CheckpointFormat::V1, 0)
        );
        let bad = v2.replace("1278640530", "101010");
        assert_eq!(
            inner(&restore_138(&bad, "static").unwrap_err()),
            "checkpoint is corrupted"
        );
        // A kubelet up to 1.35 refuses every V2 file: its V1 checksum does not match.
        let e = decode(&v2).unwrap_err();
        assert!(matches!(
            e,
            EngineError::CorruptCheckpoint {
                stored: Some(1278640530),
                computed: Some(4215593881),
                checksum_field: Some("checksum"),
                ..
            }
        ));

        let v3 = v3_file(
            &format!(
                "{},{}",
                &WRONG_V1_PART[..WRONG_V1_PART.find(",\"checksum\"").unwrap()],
                r#""podEntries":{"podY":{"memoryBlocks":[{"numaAffinity":[0],"type":"memory","size":64}]}},"checksum":1234"#
            ),
            Some(DATA_WITH_POD_ENTRIES),
            Some(637296054),
        );
        let st = restore_138(&v3, "static").unwrap();
        assert_eq!(st.pod_entries.keys().collect::<Vec<_>>(), vec!["pod"]);
        assert_eq!(
            st.pod_entries["pod"].memory_blocks,
            Some(vec![pod_block(512)])
        );
        assert_eq!(data_json("static", &st), DATA_WITH_POD_ENTRIES);
        assert_eq!(data_checksum(DATA_WITH_POD_ENTRIES), 637296054);
    }

    #[test]
    fn v3_written_as_the_kubelet_writes_it_and_its_v1_part_for_older_kubelets() {
        let mut st = decode(V1_VECTOR).unwrap().state;
        st.pod_entries.insert(
            "pod".into(),
            crate::state::PodEntry {
                memory_blocks: Some(vec![pod_block(512)]),
            },
        );
        let text = to_json_v3("static", &st);
        let want = v3_file(v1_part(), Some(DATA_WITH_POD_ENTRIES), Some(637296054));
        assert_eq!(text, want);
        // The V1 part keeps the V1 checksum (TestMemoryManagerCheckpoint_MarshalCheckpoint_
        // HashCompatibility): a kubelet up to 1.35 reads the file, without the pod entries.
        let old = decode(&text).unwrap();
        assert_eq!((old.checksum, old.state.pod_entries.len()), (4215593881, 0));
        assert_eq!(old.state.entries, st.entries);
        let new = decode_as(&text, KubeletVersion::V1_38).unwrap();
        assert_eq!((new.format, new.state), (CheckpointFormat::V3, st.clone()));
        // Empty pod entries and entries are left out of `data`, as omitempty does.
        let bare = State {
            machine_state: st.machine_state.clone(),
            ..State::default()
        };
        let d = data_json("static", &bare);
        assert!(!d.contains("entries") && !d.contains("podEntries"), "{d}");
        let mut empty = bare.clone();
        empty.pod_entries.insert(
            "p".into(),
            crate::state::PodEntry {
                memory_blocks: Some(vec![]),
            },
        );
        assert!(data_json("static", &empty).ends_with(r#""podEntries":{"p":{}}}"#));
    }

    fn real_v3(name: &str) -> String {
        let path = format!(
            "{}/../tests/conformance/state-files/v3/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn real_v3_files_round_trip_byte_for_byte() {
        for (name, pods, pod_entries) in [
            ("state-v3-example.json", 3, 0),
            ("state-v3-podentries-example.json", 2, 1),
        ] {
            let text = real_v3(name);
            let cp = decode_as(&text, KubeletVersion::V1_38).unwrap();
            assert_eq!(cp.format, CheckpointFormat::V3, "{name}");
            assert_eq!(
                (cp.state.entries.len(), cp.state.pod_entries.len()),
                (pods, pod_entries),
                "{name}"
            );
            assert_eq!(to_json_v3(&cp.policy_name, &cp.state), text, "{name}");
            assert_eq!(
                to_json_as(&cp.policy_name, &cp.state, KubeletVersion::V1_38),
                text
            );
            // What a 1.32 kubelet restores: the V1 fields, verified by the V1 checksum.
            let old = decode(&text).unwrap();
            assert_eq!(old.state.entries, cp.state.entries, "{name}");
            assert!(old.state.pod_entries.is_empty());
            assert_eq!(
                to_json(&old.policy_name, &old.state),
                text[..text.find(",\"data\"").unwrap()].to_string() + "}"
            );
        }
    }

    #[test]
    fn which_reader_checks_which_checksum() {
        let text = real_v3("state-v3-example.json");
        // A damaged dataChecksum: 1.37+ refuses the file (no fallback to its intact V1
        // part), a kubelet up to 1.35 does not look at it.
        let stored = 2831186308u64;
        let bad = text.replace(&stored.to_string(), "2831186309");
        match decode_as(&bad, KubeletVersion::V1_38).unwrap_err() {
            EngineError::CorruptCheckpoint {
                message,
                stored,
                computed,
                checksum_field,
            } => {
                assert_eq!(
                    message,
                    "could not load v3 checkpoint: checkpoint is corrupted"
                );
                assert_eq!((stored, computed), (Some(2831186309), Some(2831186308)));
                assert_eq!(checksum_field, Some("dataChecksum"));
            }
            e => panic!("{e:?}"),
        }
        assert!(decode(&bad).is_ok());
        // A damaged V1 checksum: the other way round.
        let v1_bad = text.replace("\"checksum\":2460102113", "\"checksum\":2460102114");
        assert!(decode_as(&v1_bad, KubeletVersion::V1_38).is_ok());
        assert!(matches!(
            decode(&v1_bad).unwrap_err(),
            EngineError::CorruptCheckpoint {
                stored: Some(2460102114),
                computed: Some(2460102113),
                ..
            }
        ));
        // Garbage in `data`: fatal for 1.37+ only.
        let garbage = v3_file(
            v1_part(),
            Some("not json"),
            Some(u64::from(data_checksum("not json"))),
        );
        assert!(decode(&garbage).is_ok());
        let e = decode_as(&garbage, KubeletVersion::V1_38).unwrap_err();
        assert!(
            e.message().starts_with("could not load v3 checkpoint: failed to deserialize memory manager checkpoint data: "),
            "{}",
            e.message()
        );
    }

    #[test]
    fn type_errors_decide_per_version_as_gos_decoder_does() {
        // `data` of the wrong type and no dataChecksum: V3 fails, nothing marks the file as
        // V3, so 1.37+ falls back to V1; an older kubelet does not know the field.
        let t = format!("{{{},\"data\":5}}", v1_part());
        assert_eq!(
            decode_as(&t, KubeletVersion::V1_38).unwrap().format,
            CheckpointFormat::V1
        );
        assert!(decode(&t).is_ok());
        // ... with a dataChecksum it is a V3 file that fails.
        let t = format!("{{{},\"data\":5,\"dataChecksum\":7}}", v1_part());
        let e = decode_as(&t, KubeletVersion::V1_38).unwrap_err();
        assert_eq!(
            e.message(),
            "could not load v3 checkpoint: failed to deserialize memory manager checkpoint: json: cannot unmarshal number into Go struct field data of type string"
        );
        // A V1 field of the wrong type in a V3 file: V3's decode fails too (Go keeps going
        // and sets `data`), so 1.37+ refuses it; an older kubelet fails on the field itself.
        let good = real_v3("state-v3-example.json");
        let t = good.replacen("\"policyName\":\"Static\"", "\"policyName\":7", 1);
        let e = decode_as(&t, KubeletVersion::V1_38).unwrap_err();
        assert_eq!(
            e.message(),
            "could not load v3 checkpoint: failed to deserialize memory manager checkpoint: json: cannot unmarshal number into Go struct field policyName of type string"
        );
        assert_eq!(
            decode(&t).unwrap_err().message(),
            "json: cannot unmarshal number into Go struct field policyName of type string"
        );
        // Top-level pod entries of the wrong type matter to V2 only.
        let t = format!("{{{},\"podEntries\":[]}}", v1_part());
        assert!(decode(&t).is_ok());
        assert_eq!(
            decode_as(&t, KubeletVersion::V1_38).unwrap().format,
            CheckpointFormat::V1
        );
        // A cut-off file is the syntax error in every version.
        let cut = &good[..good.len() - 10];
        for v in [KubeletVersion::V1_32, KubeletVersion::V1_38] {
            assert_eq!(
                decode_as(cut, v).unwrap_err().message(),
                "unexpected end of JSON input"
            );
        }
    }

    #[test]
    fn restore_keeps_the_kubelets_wrapping() {
        let bad = real_v3("state-v3-example.json").replace("2831186308", "1");
        let e = restore_138(&bad, "Static").unwrap_err();
        assert_eq!(
            e.message(),
            "could not restore state from checkpoint: could not load v3 checkpoint: checkpoint is corrupted, please drain this node and delete the memory manager checkpoint file \"/x/memory_manager_state\" before restarting Kubelet"
        );
        assert!(matches!(
            e,
            EngineError::CorruptCheckpoint {
                stored: Some(1),
                ..
            }
        ));
    }

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
