//! Reading a state file in one pass, straight into [`State`]: no JSON tree in between, so an
//! 84 MiB file with a million entries takes a few hundred MB, not several GB. It reads as
//! Go's `encoding/json` does into the kubelet's structs: field names match without regard to
//! case (an exact match wins), unknown fields are skipped, `null` is the zero value, and a
//! wrong type is "json: cannot unmarshal ... into ...".

use crate::error::{EngineError, Result};
use crate::state::{Assignments, Block, MachineState, MemoryTable, NodeState, State};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::collections::BTreeMap;
use std::fmt;

/// What the file holds: policy name, state and stored checksum.
pub struct Read {
    pub policy_name: String,
    pub state: State,
    pub checksum: u64,
}

pub fn read(text: &str) -> Result<Read> {
    let mut de = serde_json::Deserializer::from_str(text);
    let top = Top
        .deserialize(&mut de)
        .and_then(|t| de.end().map(|()| t))
        .map_err(|e| {
            // Go checks the whole text's syntax before it decodes anything, so a file that is
            // both cut off and of the wrong shape reports the cut.
            if e.is_data() {
                if let Err(syntax) = serde_json::from_str::<IgnoredAny>(text) {
                    return json_error(&syntax);
                }
            }
            json_error(&e)
        })?;
    let Some((policy_name, machine_state, entries, checksum)) = top else {
        return Err(EngineError::corrupt("checkpoint is corrupted"));
    };
    Ok(Read {
        policy_name,
        state: State {
            machine_state,
            entries,
        },
        checksum,
    })
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

type Top4 = (String, MachineState, Assignments, u64);

object!(Top, Top4, TOP, |map| {
    let (mut policy, mut ms, mut entries, mut checksum) = (String::new(), None, None, 0);
    fields(
        map,
        &["policyName", "machineState", "entries", "checksum"],
        |i, m| {
            match i {
                0 => {
                    policy = m.next_value_seed(Str("Go struct field policyName of type string"))?
                }
                1 => ms = m.next_value_seed(Machine)?,
                2 => entries = m.next_value_seed(Entries)?,
                _ => {
                    checksum = m.next_value_seed(U64(
                        "Go struct field checksum of type checksum.Checksum",
                    ))?
                }
            }
            Ok(())
        },
    )?;
    Ok(Some((
        policy,
        ms.unwrap_or_default(),
        entries.unwrap_or_default(),
        checksum,
    )))
});

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
