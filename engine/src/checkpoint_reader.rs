//! Reading a state file in one pass, straight into [`State`]: no JSON tree in between, so an
//! 84 MiB file with a million entries takes a few hundred MB, not several GB. It reads as
//! Go's `encoding/json` does into the kubelet's structs: field names match without regard to
//! case (an exact match wins), unknown fields are skipped, `null` is the zero value, and a
//! wrong type is "json: cannot unmarshal ... into ...".
//!
//! One read takes every top-level field any checkpoint version has (V1's four, V2's
//! `podEntries`, V3's `data` and `dataChecksum`): the kubelet decodes the same text once per
//! version it tries, and which of those decodes fail depends on which fields are of the wrong
//! type. Go keeps decoding after a type error and reports the first; so when the fast pass
//! meets one, a second pass decodes each top-level field on its own and records each field's
//! error, and [`Read::first_error`] answers for any version's set of fields. A syntax error
//! fails every version alike and is returned as the error.

use crate::error::{EngineError, Result};
use crate::state::{
    Assignments, Block, MachineState, MemoryTable, NodeState, PodAssignments, PodEntry, State,
};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

/// A top-level field of a state file, or of a V3 file's `data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    PolicyName,
    MachineState,
    Entries,
    Checksum,
    PodEntries,
    Data,
    DataChecksum,
}

/// The fields of `MemoryManagerCheckpointV1` (and of V3's embedded V1 part).
pub const V1_FIELDS: &[Field] = &[
    Field::PolicyName,
    Field::MachineState,
    Field::Entries,
    Field::Checksum,
];
/// `MemoryManagerCheckpointV2`.
pub const V2_FIELDS: &[Field] = &[
    Field::PolicyName,
    Field::MachineState,
    Field::Entries,
    Field::PodEntries,
    Field::Checksum,
];
/// `MemoryManagerCheckpoint` (V3): the embedded V1 part, `data` and `dataChecksum`.
pub const V3_FIELDS: &[Field] = &[
    Field::PolicyName,
    Field::MachineState,
    Field::Entries,
    Field::Checksum,
    Field::Data,
    Field::DataChecksum,
];

const FILE_NAMES: &[&str] = &[
    "policyName",
    "machineState",
    "entries",
    "checksum",
    "podEntries",
    "data",
    "dataChecksum",
];
const FILE_FIELDS: &[Field] = &[
    Field::PolicyName,
    Field::MachineState,
    Field::Entries,
    Field::Checksum,
    Field::PodEntries,
    Field::Data,
    Field::DataChecksum,
];
/// `MemoryManagerCheckpointData`, the JSON inside V3's `data`.
const DATA_NAMES: &[&str] = &["policyName", "machineState", "entries", "podEntries"];
const DATA_FIELDS: &[Field] = &[
    Field::PolicyName,
    Field::MachineState,
    Field::Entries,
    Field::PodEntries,
];

/// What a state file holds, every version's fields together.
#[derive(Debug, Default)]
pub struct Read {
    pub policy_name: String,
    /// `machineState`, `entries` and the top-level `podEntries` (a V2 file's).
    pub state: State,
    pub checksum: u64,
    /// Whether the file has a top-level `podEntries` key at all (the kubelet omits an empty
    /// one, so only a V2 file with pod entries has it).
    pub has_pod_entries: bool,
    /// V3's `data` (empty when absent or `null`, as in Go).
    pub data: String,
    pub data_checksum: u64,
    /// Fields of the wrong type, each with its error, in the file's order.
    pub errors: Vec<(Field, EngineError)>,
}

impl Read {
    /// The error Go's decoder returns for a struct of these fields: the first in the file.
    pub fn first_error(&self, fields: &[Field]) -> Option<&EngineError> {
        self.errors
            .iter()
            .find(|(f, _)| fields.contains(f))
            .map(|(_, e)| e)
    }
}

/// Reads a state file. Fails only when the text is not JSON or not an object: a field of
/// the wrong type is recorded in [`Read::errors`] for the caller's version to judge.
pub fn read(text: &str) -> Result<Read> {
    let mut acc = Read::default();
    let mut de = serde_json::Deserializer::from_str(text);
    let fast = TopSeed {
        read: &mut acc,
        names: FILE_NAMES,
        fields: FILE_FIELDS,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    match fast {
        Ok(()) => Ok(acc),
        Err(e) if !e.is_data() => Err(json_error(&e)),
        Err(e) => {
            // Go checks the whole text's syntax before it decodes anything, so a file that is
            // both cut off and of the wrong shape reports the cut.
            if let Err(syntax) = serde_json::from_str::<IgnoredAny>(text) {
                return Err(json_error(&syntax));
            }
            read_field_by_field(text).map_err(|_| json_error(&e))
        }
    }
}

/// The JSON inside a V3 file's `data`: its policy name and state (`null` is the empty one,
/// as Go leaves the struct alone). Any error fails, the first in the text, as Go reports it.
pub fn read_data(text: &str) -> Result<(String, State)> {
    let mut acc = Read::default();
    let mut de = serde_json::Deserializer::from_str(text);
    TopSeed {
        read: &mut acc,
        names: DATA_NAMES,
        fields: DATA_FIELDS,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end())
    .map_err(|e| {
        if e.is_data() {
            if let Err(syntax) = serde_json::from_str::<IgnoredAny>(text) {
                return json_error(&syntax);
            }
        }
        json_error(&e)
    })?;
    Ok((acc.policy_name, acc.state))
}

/// The slow pass, after a type error: each top-level field decoded from its own slice of the
/// text, so that one field's error leaves the others' values and errors as Go has them.
fn read_field_by_field(text: &str) -> Result<Read, serde_json::Error> {
    let mut acc = Read::default();
    let mut de = serde_json::Deserializer::from_str(text);
    let Some(pairs) = RawTop.deserialize(&mut de)? else {
        return Ok(acc);
    };
    let mut exact = vec![false; FILE_NAMES.len()];
    for (key, raw) in pairs {
        let Some((i, is_exact)) = field(&key, FILE_NAMES) else {
            continue;
        };
        if !is_exact && exact[i] {
            continue;
        }
        exact[i] |= is_exact;
        let mut one = serde_json::Deserializer::from_str(raw.get());
        let decoded = FieldSeed {
            read: &mut acc,
            field: FILE_FIELDS[i],
        }
        .deserialize(&mut one);
        if let Err(e) = decoded {
            acc.errors.push((FILE_FIELDS[i], json_error(&e)));
        }
    }
    Ok(acc)
}

/// The kubelet's texts: `unexpected end of JSON input` for a cut-off file, the decoder's own
/// text for bad syntax, and our type errors without serde's position suffix.
fn json_error(e: &serde_json::Error) -> EngineError {
    if e.is_eof() {
        return EngineError::corrupt("unexpected end of JSON input");
    }
    let text = e.to_string();
    if e.is_data() {
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        return EngineError::corrupt(text.strip_suffix(&suffix).unwrap_or(&text).to_string());
    }
    EngineError::corrupt(format!("invalid JSON: {e}"))
}

fn unmarshal<E: de::Error>(kind: &str, into: &str) -> E {
    E::custom(format!("json: cannot unmarshal {kind} into {into}"))
}

/// Which of `names` a key means, Go-style: exactly, or else without regard to case.
fn field(key: &str, names: &[&str]) -> Option<(usize, bool)> {
    if let Some(i) = names.iter().position(|n| *n == key) {
        return Some((i, true));
    }
    names
        .iter()
        .position(|n| n.eq_ignore_ascii_case(key))
        .map(|i| (i, false))
}

/// Reads an object's fields with Go's matching: a field set by its exact name is not
/// overwritten by a later case-insensitive match.
fn fields<'de, A: MapAccess<'de>>(
    mut map: A,
    names: &[&str],
    mut read: impl FnMut(usize, &mut A) -> Result<(), A::Error>,
) -> Result<(), A::Error> {
    let mut exact = vec![false; names.len()];
    while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
        match field(&key, names) {
            Some((i, is_exact)) if is_exact || !exact[i] => {
                exact[i] |= is_exact;
                read(i, &mut map)?;
            }
            _ => {
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
    Ok(())
}

macro_rules! reject_others {
    ($into:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Err(unmarshal("bool", $into))
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Err(unmarshal("number", $into))
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Err(unmarshal("number", $into))
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Err(unmarshal("number", $into))
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Err(unmarshal("string", $into))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(unmarshal("array", $into))
        }
    };
}

macro_rules! reject_maps {
    ($into:expr) => {
        fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(unmarshal("object", $into))
        }
    };
}

/// A JSON number into a Go uint64 (`null` is 0).
struct U64(&'static str);
impl<'de> DeserializeSeed<'de> for U64 {
    type Value = u64;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<u64, D::Error> {
        d.deserialize_any(self)
    }
}
impl<'de> Visitor<'de> for U64 {
    type Value = u64;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a non-negative integer")
    }
    fn visit_unit<E>(self) -> Result<u64, E> {
        Ok(0)
    }
    fn visit_u64<E>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<u64, E> {
        Err(unmarshal("number", self.0))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<u64, E> {
        Err(unmarshal("number", self.0))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<u64, E> {
        Err(unmarshal("bool", self.0))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<u64, E> {
        Err(unmarshal("string", self.0))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<u64, A::Error> {
        Err(unmarshal("array", self.0))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<u64, A::Error> {
        Err(unmarshal("object", self.0))
    }
}

/// A JSON number into a Go int (`null` is 0).
struct I64(&'static str);
impl<'de> DeserializeSeed<'de> for I64 {
    type Value = i64;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<i64, D::Error> {
        d.deserialize_any(self)
    }
}
impl<'de> Visitor<'de> for I64 {
    type Value = i64;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an integer")
    }
    fn visit_unit<E>(self) -> Result<i64, E> {
        Ok(0)
    }
    fn visit_i64<E>(self, v: i64) -> Result<i64, E> {
        Ok(v)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
        i64::try_from(v).map_err(|_| unmarshal("number", self.0))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<i64, E> {
        Err(unmarshal("number", self.0))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<i64, E> {
        Err(unmarshal("bool", self.0))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<i64, E> {
        Err(unmarshal("string", self.0))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<i64, A::Error> {
        Err(unmarshal("array", self.0))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<i64, A::Error> {
        Err(unmarshal("object", self.0))
    }
}

/// A JSON string (`null` is "").
struct Str(&'static str);
impl<'de> DeserializeSeed<'de> for Str {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_any(self)
    }
}
impl<'de> Visitor<'de> for Str {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_unit<E>(self) -> Result<String, E> {
        Ok(String::new())
    }
    fn visit_str<E>(self, v: &str) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_string<E>(self, v: String) -> Result<String, E> {
        Ok(v)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<String, E> {
        Err(unmarshal("bool", self.0))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<String, E> {
        Err(unmarshal("number", self.0))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<String, E> {
        Err(unmarshal("number", self.0))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<String, E> {
        Err(unmarshal("number", self.0))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<String, A::Error> {
        Err(unmarshal("array", self.0))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<String, A::Error> {
        Err(unmarshal("object", self.0))
    }
}

/// A JSON array of numbers into a Go `[]int` (`null` is a nil slice).
struct Ints(&'static str);
impl<'de> DeserializeSeed<'de> for Ints {
    type Value = Option<Vec<i64>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}
impl<'de> Visitor<'de> for Ints {
    type Value = Option<Vec<i64>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of integers")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(2));
        while let Some(x) = seq.next_element_seed(I64(self.0))? {
            v.push(x);
        }
        Ok(Some(v))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Err(unmarshal("bool", self.0))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Err(unmarshal("number", self.0))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Err(unmarshal("number", self.0))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Err(unmarshal("number", self.0))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Err(unmarshal("string", self.0))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(unmarshal("object", self.0))
    }
}

/// The kubelet's struct names, for type errors.
const TOP: &str = "state.MemoryManagerCheckpoint";
const MACHINE: &str = "state.NUMANodeMap";
const NODE: &str = "state.NUMANodeState";
const TABLES: &str = "map[v1.ResourceName]*state.MemoryTable";
const TABLE: &str = "state.MemoryTable";
const ENTRIES: &str = "state.ContainerMemoryAssignments";
const PODS: &str = "map[string][]state.Block";
const BLOCKS: &str = "[]state.Block";
const BLOCK: &str = "state.Block";
const POD_ENTRIES: &str = "state.PodMemoryAssignments";
const POD_ENTRY: &str = "state.PodEntry";

/// Defines a visitor for a JSON object (or `null`, which gives `None`) read by `$body`.
macro_rules! object {
    ($name:ident, $value:ty, $into:expr, |$map:ident| $body:block) => {
        struct $name;
        impl<'de> DeserializeSeed<'de> for $name {
            type Value = Option<$value>;
            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(self)
            }
        }
        impl<'de> Visitor<'de> for $name {
            type Value = Option<$value>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            #[allow(unused_mut)]
            fn visit_map<A: MapAccess<'de>>(self, mut $map: A) -> Result<Self::Value, A::Error> {
                $body
            }
            reject_others!($into);
        }
    };
}

/// The top-level object, each field of `names` stored through [`FieldSeed`]. `null` leaves
/// everything at its zero value, as Go does.
struct TopSeed<'a> {
    read: &'a mut Read,
    names: &'static [&'static str],
    fields: &'static [Field],
}
impl<'de> DeserializeSeed<'de> for TopSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}
impl<'de> Visitor<'de> for TopSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let (read, fields_of) = (self.read, self.fields);
        fields(map, self.names, |i, m| {
            m.next_value_seed(FieldSeed {
                read: &mut *read,
                field: fields_of[i],
            })
        })
    }
    reject_others!(TOP);
}

/// One top-level field's value, decoded and stored in its place (only when it decodes).
struct FieldSeed<'a> {
    read: &'a mut Read,
    field: Field,
}
impl<'de> DeserializeSeed<'de> for FieldSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        let r = self.read;
        match self.field {
            Field::PolicyName => {
                r.policy_name = Str("Go struct field policyName of type string").deserialize(d)?
            }
            Field::MachineState => {
                r.state.machine_state = Machine.deserialize(d)?.unwrap_or_default()
            }
            Field::Entries => r.state.entries = Entries.deserialize(d)?.unwrap_or_default(),
            Field::Checksum => {
                r.checksum =
                    U64("Go struct field checksum of type checksum.Checksum").deserialize(d)?
            }
            Field::PodEntries => {
                r.state.pod_entries = PodEntries.deserialize(d)?.unwrap_or_default();
                r.has_pod_entries = true;
            }
            Field::Data => r.data = Str("Go struct field data of type string").deserialize(d)?,
            Field::DataChecksum => {
                r.data_checksum =
                    U64("Go struct field dataChecksum of type checksum.Checksum").deserialize(d)?
            }
        }
        Ok(())
    }
}

/// The top-level object as (key, raw value) pairs in the file's order (`null`: none).
struct RawTop;
impl<'de> DeserializeSeed<'de> for RawTop {
    type Value = Option<Vec<(Cow<'de, str>, &'de RawValue)>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}
impl<'de> Visitor<'de> for RawTop {
    type Value = Option<Vec<(Cow<'de, str>, &'de RawValue)>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(k) = map.next_key::<Cow<'de, str>>()? {
            out.push((k, map.next_value::<&'de RawValue>()?));
        }
        Ok(Some(out))
    }
    reject_others!(TOP);
}

object!(Machine, MachineState, MACHINE, |map| {
    let mut ms = MachineState::new();
    while let Some(k) = map.next_key::<std::borrow::Cow<'de, str>>()? {
        let id: i64 = k.parse().map_err(|_| {
            de::Error::custom(format!(
                "json: cannot unmarshal number {k} into Go value of type int"
            ))
        })?;
        if let Some(node) = map.next_value_seed(Node)? {
            ms.insert(id, node);
        }
    }
    Ok(Some(ms))
});

object!(Node, NodeState, NODE, |map| {
    let mut node = NodeState::default();
    fields(
        map,
        &["numberOfAssignments", "memoryMap", "cells"],
        |i, m| {
            match i {
                0 => {
                    node.number_of_assignments = m.next_value_seed(I64(
                        "Go struct field NUMANodeState.numberOfAssignments of type int",
                    ))?
                }
                1 => node.memory_map = m.next_value_seed(Tables)?.unwrap_or_default(),
                _ => {
                    node.cells =
                        m.next_value_seed(Ints("Go struct field NUMANodeState.cells of type int"))?
                }
            }
            Ok(())
        },
    )?;
    Ok(Some(node))
});

object!(Tables, BTreeMap<String, MemoryTable>, TABLES, |map| {
    let mut out = BTreeMap::new();
    while let Some(k) = map.next_key::<String>()? {
        if let Some(t) = map.next_value_seed(Table)? {
            out.insert(k, t);
        }
    }
    Ok(Some(out))
});

object!(Table, MemoryTable, TABLE, |map| {
    let mut t = MemoryTable::default();
    let into = "Go struct field MemoryTable of type uint64";
    fields(
        map,
        &["total", "systemReserved", "allocatable", "reserved", "free"],
        |i, m| {
            let v = m.next_value_seed(U64(into))?;
            match i {
                0 => t.total = v,
                1 => t.system_reserved = v,
                2 => t.allocatable = v,
                3 => t.reserved = v,
                _ => t.free = v,
            }
            Ok(())
        },
    )?;
    Ok(Some(t))
});

object!(Entries, Assignments, ENTRIES, |map| {
    let mut out = Assignments::new();
    while let Some(pod) = map.next_key::<String>()? {
        if let Some(containers) = map.next_value_seed(Pods)? {
            out.insert(pod, containers);
        }
    }
    Ok(Some(out))
});

object!(Pods, BTreeMap<String, Option<Vec<Block>>>, PODS, |map| {
    let mut out = BTreeMap::new();
    while let Some(name) = map.next_key::<String>()? {
        let blocks = map.next_value_seed(Blocks)?;
        out.insert(name, blocks);
    }
    Ok(Some(out))
});

object!(OneBlock, Block, BLOCK, |map| {
    let mut b = Block {
        numa_affinity: None,
        resource: String::new(),
        size: 0,
    };
    fields(map, &["numaAffinity", "type", "size"], |i, m| {
        match i {
            0 => {
                b.numa_affinity =
                    m.next_value_seed(Ints("Go struct field Block.numaAffinity of type int"))?
            }
            1 => {
                b.resource =
                    m.next_value_seed(Str("Go struct field Block.type of type v1.ResourceName"))?
            }
            _ => b.size = m.next_value_seed(U64("Go struct field Block.size of type uint64"))?,
        }
        Ok(())
    })?;
    Ok(Some(b))
});

/// A container's blocks: `null` is a nil slice, an element `null` is skipped.
struct Blocks;
impl<'de> DeserializeSeed<'de> for Blocks {
    type Value = Option<Vec<Block>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}
impl<'de> Visitor<'de> for Blocks {
    type Value = Option<Vec<Block>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of blocks")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(1));
        while let Some(b) = seq.next_element_seed(OneBlock)? {
            if let Some(b) = b {
                v.push(b);
            }
        }
        Ok(Some(v))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Err(unmarshal("bool", BLOCKS))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Err(unmarshal("number", BLOCKS))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Err(unmarshal("number", BLOCKS))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Err(unmarshal("number", BLOCKS))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Err(unmarshal("string", BLOCKS))
    }
    reject_maps!(BLOCKS);
}

object!(PodEntries, PodAssignments, POD_ENTRIES, |map| {
    let mut out = PodAssignments::new();
    while let Some(pod) = map.next_key::<String>()? {
        // A `null` entry is Go's zero PodEntry, which the map still holds.
        let entry = map.next_value_seed(OnePodEntry)?.unwrap_or_default();
        out.insert(pod, entry);
    }
    Ok(Some(out))
});

object!(OnePodEntry, PodEntry, POD_ENTRY, |map| {
    let mut e = PodEntry::default();
    fields(map, &["memoryBlocks"], |_, m| {
        e.memory_blocks = m.next_value_seed(Blocks)?;
        Ok(())
    })?;
    Ok(Some(e))
});

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"{"policyName":"Static","machineState":{"0":{"numberOfAssignments":1,"memoryMap":{"memory":{"total":8,"systemReserved":0,"allocatable":8,"reserved":4,"free":4}},"cells":[0]}},"entries":{"p":{"c":[{"numaAffinity":[0],"type":"memory","size":4}]}},"checksum":11,"podEntries":{"p":{"memoryBlocks":[{"numaAffinity":[0],"type":"memory","size":4}]},"q":null,"r":{}},"data":"{}","dataChecksum":22}"#;

    #[test]
    fn one_read_takes_every_versions_fields() {
        let r = read(FILE).unwrap();
        assert!(r.errors.is_empty());
        assert_eq!((r.policy_name.as_str(), r.checksum), ("Static", 11));
        assert_eq!((r.data.as_str(), r.data_checksum), ("{}", 22));
        assert!(r.has_pod_entries);
        assert_eq!(r.state.entries["p"]["c"].as_ref().map(Vec::len), Some(1));
        // `null` and `{}` are both Go's zero PodEntry: a nil block list.
        assert_eq!(r.state.pod_entries.len(), 3);
        assert_eq!(r.state.pod_entries["q"], PodEntry::default());
        assert_eq!(r.state.pod_entries["r"], PodEntry::default());
        assert_eq!(
            r.state.pod_entries["p"]
                .memory_blocks
                .as_ref()
                .map(Vec::len),
            Some(1)
        );
    }

    #[test]
    fn a_type_error_is_recorded_per_field_and_the_other_fields_still_read() {
        let t = FILE
            .replace(r#""checksum":11"#, r#""checksum":"x""#)
            .replace(r#""data":"{}""#, r#""data":[1]"#);
        let r = read(&t).unwrap();
        let fields: Vec<Field> = r.errors.iter().map(|(f, _)| *f).collect();
        assert_eq!(fields, vec![Field::Checksum, Field::Data]);
        assert_eq!(
            r.errors[0].1.message(),
            "json: cannot unmarshal string into Go struct field checksum of type checksum.Checksum"
        );
        // Values of the fields that decoded are there, as Go leaves them.
        assert_eq!((r.policy_name.as_str(), r.data_checksum), ("Static", 22));
        assert_eq!(r.state.pod_entries.len(), 3);
        // Each version sees the first error among its own fields.
        assert_eq!(
            r.first_error(V2_FIELDS).map(|e| e.message()),
            Some(r.errors[0].1.message())
        );
        assert!(r.first_error(&[Field::PodEntries]).is_none());
        let only_data = FILE.replace(r#""data":"{}""#, r#""data":true"#);
        let r = read(&only_data).unwrap();
        assert!(r.first_error(V1_FIELDS).is_none() && r.first_error(V2_FIELDS).is_none());
        assert!(r.first_error(V3_FIELDS).is_some());
    }

    #[test]
    fn names_match_as_in_go_and_null_is_the_zero_value() {
        let r = read(r#"{"POLICYNAME":"a","policyName":"b","DataChecksum":3}"#).unwrap();
        assert_eq!((r.policy_name.as_str(), r.data_checksum), ("b", 3));
        let r = read("null").unwrap();
        assert!(r.policy_name.is_empty() && r.state == State::default() && r.errors.is_empty());
        assert_eq!(
            read("[]").unwrap_err().message(),
            "json: cannot unmarshal array into state.MemoryManagerCheckpoint"
        );
        // Syntax first, as Go checks the whole text before it decodes.
        assert_eq!(
            read(r#"{"checksum":"x","#).unwrap_err().message(),
            "unexpected end of JSON input"
        );
    }

    #[test]
    fn data_reads_only_its_own_fields() {
        // `checksum` is not a field of MemoryManagerCheckpointData: ignored, whatever it holds.
        let (policy, st) =
            read_data(r#"{"policyName":"Static","checksum":"x","podEntries":{"p":{}}}"#).unwrap();
        assert_eq!((policy.as_str(), st.pod_entries.len()), ("Static", 1));
        assert_eq!(
            read_data("null").unwrap(),
            (String::new(), State::default())
        );
        assert_eq!(
            read_data("").unwrap_err().message(),
            "unexpected end of JSON input"
        );
        assert_eq!(
            read_data(r#"{"podEntries":{"p":{"memoryBlocks":5}}}"#)
                .unwrap_err()
                .message(),
            "json: cannot unmarshal number into []state.Block"
        );
    }
}
