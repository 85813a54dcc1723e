//! The kubelet's `cpu_manager_state` (the CPU manager's checkpoint, format V2): `policyName`,
//! `defaultCpuSet` (the shared pool), `entries` (pod uid -> container -> the CPUs it holds
//! exclusively) and `checksum`. The checksum is the memory manager's scheme over another
//! struct: FNV-1a 32 over go-spew's `%#v` of `&state.CPUManagerCheckpoint{...}` with
//! `Checksum: 0` (`checkpointmanager/checksum.New`, `hashutil.DeepHashObject`); 0 is accepted
//! unverified, as the kubelet accepts it from an old file backend. CPU sets use the kernel's
//! list syntax (`0-3,8`), parsed as `k8s.io/utils/cpuset.Parse` does.
//!
//! Read as Go's `encoding/json` reads into the struct: field names match without regard to
//! case (an exact match wins), unknown fields are skipped, `null` is the zero value (for
//! `entries`, a nil map, which go-spew prints as `<nil>`).

use crate::checkpoint::fnv1a32;
use crate::error::{EngineError, Result};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

pub const CPU_STATE_FILE_NAME: &str = "cpu_manager_state";

/// The highest CPU id a set may name: bounds the work a hostile range (`0-4000000000`) costs.
pub const MAX_CPU_ID: u32 = 1 << 20;

/// Container name -> CPU set text; `None` is a `null` (nil) map.
pub type ContainerCpus = Option<BTreeMap<String, String>>;

/// A decoded `cpu_manager_state`, its sets still as text (the checksum covers the text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuCheckpoint {
    pub policy_name: String,
    pub default_cpu_set: String,
    /// Pod uid -> containers; `None` when the file says `"entries": null`.
    pub entries: Option<BTreeMap<String, ContainerCpus>>,
    pub checksum: u64,
}

/// go-spew's `%#v` of `&state.CPUManagerCheckpoint{...}` with `Checksum: 0`.
pub fn spew_text(cp: &CpuCheckpoint) -> String {
    let mut o = String::with_capacity(256);
    let _ = write!(
        o,
        "(*state.CPUManagerCheckpoint){{PolicyName:(string){} DefaultCPUSet:(string){} Entries:(map[string]map[string]string)",
        cp.policy_name, cp.default_cpu_set
    );
    match &cp.entries {
        None => o.push_str("<nil>"),
        Some(pods) => {
            o.push_str("map[");
            for (i, (pod, containers)) in pods.iter().enumerate() {
                if i > 0 {
                    o.push(' ');
                }
                let _ = write!(o, "{pod}:");
                match containers {
                    None => o.push_str("<nil>"),
                    Some(cs) => {
                        o.push_str("map[");
                        for (j, (name, set)) in cs.iter().enumerate() {
                            if j > 0 {
                                o.push(' ');
                            }
                            let _ = write!(o, "{name}:{set}");
                        }
                        o.push(']');
                    }
                }
            }
            o.push(']');
        }
    }
    o.push_str(" Checksum:(checksum.Checksum)0}");
    o
}

pub fn checksum(cp: &CpuCheckpoint) -> u32 {
    fnv1a32(spew_text(cp).as_bytes())
}

fn corrupt(message: impl Into<String>) -> EngineError {
    EngineError::corrupt(message)
}

fn field<'a>(m: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    // Go: an exact match first, then the last key equal to it without regard to case.
    m.get(name).or_else(|| {
        m.iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .next_back()
    })
}

fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_error(v: &Value, field: &str, want: &str) -> EngineError {
    corrupt(format!(
        "json: cannot unmarshal {} into Go struct field CPUManagerCheckpoint.{field} of type {want}",
        go_type(v)
    ))
}

fn string_field(m: &Map<String, Value>, name: &str) -> Result<String> {
    match field(m, name) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(v) => Err(type_error(v, name, "string")),
    }
}

fn entries(v: Option<&Value>) -> Result<Option<BTreeMap<String, ContainerCpus>>> {
    let obj = match v {
        // Absent: the kubelet's checkpoint starts with an empty (non-nil) map.
        None => return Ok(Some(BTreeMap::new())),
        Some(Value::Null) => return Ok(None),
        Some(Value::Object(o)) => o,
        Some(v) => return Err(type_error(v, "entries", "map[string]map[string]string")),
    };
    let mut out = BTreeMap::new();
    for (pod, containers) in obj {
        let cs = match containers {
            Value::Null => None,
            Value::Object(c) => {
                let mut m = BTreeMap::new();
                for (name, set) in c {
                    let Value::String(set) = set else {
                        return Err(type_error(set, "entries", "string"));
                    };
                    m.insert(name.clone(), set.clone());
                }
                Some(m)
            }
            v => return Err(type_error(v, "entries", "map[string]string")),
        };
        out.insert(pod.clone(), cs);
    }
    Ok(Some(out))
}

/// Decodes a `cpu_manager_state` and verifies its checksum (a wrong one is
/// `checkpoint is corrupted`, with both checksums).
pub fn decode(text: &str) -> Result<CpuCheckpoint> {
    let v: Value = serde_json::from_str(text).map_err(|e| {
        if e.is_eof() {
            corrupt("unexpected end of JSON input")
        } else {
            corrupt(format!("invalid JSON: {e}"))
        }
    })?;
    let Value::Object(m) = &v else {
        return Err(corrupt(format!(
            "json: cannot unmarshal {} into Go value of type state.CPUManagerCheckpoint",
            go_type(&v)
        )));
    };
    if field(m, "podEntries").is_some() {
        // Kubelet 1.37+ with PodLevelResourceManagers: the checksum covers another struct.
        return Err(corrupt(
            "checkpoint has pod-level entries (podEntries), a format pymm does not read yet",
        ));
    }
    let stored = match field(m, "checksum") {
        None | Some(Value::Null) => 0,
        Some(Value::Number(n)) => n
            .as_u64()
            .ok_or_else(|| corrupt(format!("json: cannot unmarshal number {n} into Go struct field CPUManagerCheckpoint.checksum of type checksum.Checksum")))?,
        Some(v) => return Err(type_error(v, "checksum", "checksum.Checksum")),
    };
    let cp = CpuCheckpoint {
        policy_name: string_field(m, "policyName")?,
        default_cpu_set: string_field(m, "defaultCpuSet")?,
        entries: entries(field(m, "entries"))?,
        checksum: stored,
    };
    if cp.checksum != 0 {
        let computed = u64::from(checksum(&cp));
        if computed != cp.checksum {
            return Err(EngineError::CorruptCheckpoint {
                message: "checkpoint is corrupted".into(),
                stored: Some(cp.checksum),
                computed: Some(computed),
                checksum_field: Some("checksum"),
            });
        }
    }
    Ok(cp)
}

fn atoi(s: &str) -> std::result::Result<u32, String> {
    let digits = s.strip_prefix('+').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("strconv.Atoi: parsing {s:?}: invalid syntax"));
    }
    match digits.parse::<u32>() {
        Ok(n) if n <= MAX_CPU_ID => Ok(n),
        _ => Err(format!("CPU id {s} is above {MAX_CPU_ID}")),
    }
}

/// `cpuset.Parse`: `""` is the empty set; `"0-5,34,46-48"` the union of its ranges.
pub fn parse_cpuset(s: &str) -> std::result::Result<BTreeSet<u32>, String> {
    let mut out = BTreeSet::new();
    if s.is_empty() {
        return Ok(out);
    }
    for r in s.split(',') {
        match r.split_once('-') {
            None => {
                out.insert(atoi(r)?);
            }
            Some((a, b)) => {
                let (start, end) = (atoi(a)?, atoi(b)?);
                if start > end {
                    return Err(format!("invalid range {r:?} ({start} > {end})"));
                }
                out.extend(start..=end);
            }
        }
    }
    Ok(out)
}

/// The CPU sets of a checkpoint: the shared pool, and per pod and container the exclusive
/// CPUs, with the kubelet's restore-error texts for a set that does not parse.
#[allow(clippy::type_complexity)]
pub fn cpu_sets(
    cp: &CpuCheckpoint,
) -> Result<(
    BTreeSet<u32>,
    BTreeMap<String, BTreeMap<String, BTreeSet<u32>>>,
)> {
    let default = parse_cpuset(&cp.default_cpu_set).map_err(|e| {
        corrupt(format!(
            "could not parse default cpu set {:?}: {e}",
            cp.default_cpu_set
        ))
    })?;
    let mut pods = BTreeMap::new();
    for (pod, containers) in cp.entries.iter().flatten() {
        let mut out = BTreeMap::new();
        for (name, set) in containers.iter().flatten() {
            let cpus = parse_cpuset(set).map_err(|e| {
                corrupt(format!(
                    "could not parse cpuset {set:?} for container {name:?} in pod {pod:?}: {e}"
                ))
            })?;
            out.insert(name.clone(), cpus);
        }
        pods.insert(pod.clone(), out);
    }
    Ok((default, pods))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The vectors of the kubelet's own tests (pkg/kubelet/cm/cpumanager/state,
    // TestCheckpointStateRestore), which decode and verify there.
    #[test]
    fn upstream_checksum_vectors() {
        let empty = r#"{"policyName": "none", "defaultCPUSet": "4-6", "entries": {}, "checksum": 354655845}"#;
        let cp = decode(empty).unwrap();
        assert_eq!(
            (cp.policy_name.as_str(), cp.default_cpu_set.as_str()),
            ("none", "4-6")
        );
        let two = r#"{"policyName": "none", "defaultCPUSet": "1-3", "entries": {"pod": {"container1": "4-6", "container2": "1-3"}}, "checksum": 3610638499}"#;
        let (default, pods) = cpu_sets(&decode(two).unwrap()).unwrap();
        assert_eq!(default, BTreeSet::from([1, 2, 3]));
        assert_eq!(pods["pod"]["container1"], BTreeSet::from([4, 5, 6]));
        let bad =
            r#"{"policyName": "none", "defaultCPUSet": "4-6", "entries": {}, "checksum": 1337}"#;
        match decode(bad) {
            Err(EngineError::CorruptCheckpoint {
                stored, computed, ..
            }) => assert_eq!((stored, computed), (Some(1337), Some(354655845))),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn null_entries_and_unverified_zero() {
        let cp = decode(
            r#"{"policyName": "static", "defaultCpuSet": "", "entries": null, "checksum": 0}"#,
        )
        .unwrap();
        assert!(cp.entries.is_none());
        assert!(spew_text(&cp).contains("Entries:(map[string]map[string]string)<nil> "));
    }

    #[test]
    fn cpusets_parse_as_go_does() {
        assert_eq!(parse_cpuset("0-2,5").unwrap(), BTreeSet::from([0, 1, 2, 5]));
        assert!(parse_cpuset("3-1").unwrap_err().contains("invalid range"));
        assert!(parse_cpuset("x").unwrap_err().contains("invalid syntax"));
        assert!(parse_cpuset("0-4000000000").is_err());
    }
}
