//! Hint providers other than the memory manager (the caller's CPU or device manager): their
//! one decoder, and the one encoder of hint lists back to plain data. Hints name node *ids*
//! outside the engine and node *positions* inside it; [`IdMap`] is the only translation.

use crate::decode::{index, kind, Obj, Subject};
use crate::error::{EngineError, Result};
use crate::hints::{ProviderHints, TopologyHint};
use crate::nodemask::{IdMap, NodeMask};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A provider's hints: per container for container scope, and one answer for pod scope.
#[derive(Debug, Clone, Default)]
pub struct ExtraProvider {
    pub name: String,
    pub containers: BTreeMap<String, ProviderHints>,
    pub pod: ProviderHints,
    /// Utilisation scores (percent) the provider gave its hints, per container and for the
    /// pod: used by `numa-allocation-strategy` only.
    pub container_scores: BTreeMap<String, Vec<(NodeMask, f64)>>,
    pub pod_scores: Vec<(NodeMask, f64)>,
}

const S: Subject = Subject::Config;

/// `{"affinity": [node ids] | null, "preferred": bool, "score": percent?}`.
pub fn hint_from(v: &Value, path: &str, map: &IdMap) -> Result<TopologyHint> {
    let h = Obj::new(v, path, S)?;
    h.deny_unknown("hint key", &["affinity", "preferred", "score"])?;
    let affinity = match h.get("affinity") {
        None => None,
        Some(Value::Array(a)) => {
            let ids = a
                .iter()
                .enumerate()
                .map(|(i, x)| {
                    x.as_i64().ok_or_else(|| {
                        S.error(
                            &index(&h.at("affinity"), i),
                            format!("expected a NUMA node id, got {}", kind(x)),
                        )
                    })
                })
                .collect::<Result<Vec<i64>>>()?;
            Some(
                map.mask(&ids)
                    .map_err(|e| S.error(&h.at("affinity"), e.message()))?,
            )
        }
        Some(other) => {
            return Err(h.err(
                "affinity",
                format!(
                    "expected a list of NUMA node ids or null, got {}",
                    kind(other)
                ),
            ))
        }
    };
    let preferred = h
        .bool("preferred")?
        .ok_or_else(|| h.err("preferred", "required (a bool)"))?;
    match h.get("score") {
        None => {}
        Some(Value::Number(n)) if n.as_f64().is_some_and(|x| (0.0..=100.0).contains(&x)) => {}
        Some(other) => {
            return Err(h.err(
                "score",
                format!("expected a utilisation percent from 0 to 100, got {other}"),
            ))
        }
    }
    Ok(TopologyHint {
        affinity,
        preferred,
    })
}

/// The scores a provider answer gives its hints: `(node set, percent)`.
fn scores_from(v: Option<&Value>, map: &IdMap) -> Vec<(NodeMask, f64)> {
    let mut out = Vec::new();
    let Some(Value::Object(m)) = v else {
        return out;
    };
    for list in m.values().filter_map(Value::as_array) {
        for h in list {
            let score = h.get("score").and_then(Value::as_f64);
            let ids: Option<Vec<i64>> = h
                .get("affinity")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_i64).collect());
            if let (Some(s), Some(ids)) = (score, ids) {
                if let Ok(mask) = map.mask(&ids) {
                    out.push((mask, s));
                }
            }
        }
    }
    out
}

/// One provider answer: `null` (no preference) or `{resource: [hint, ...] | null}`.
pub fn answer_from(v: Option<&Value>, path: &str, map: &IdMap) -> Result<ProviderHints> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let m = Obj::new(v, path, S)?;
    let mut out = Vec::with_capacity(m.map.len());
    for (resource, list) in m.map {
        let at = m.at(resource);
        let hints = match list {
            Value::Null => None,
            Value::Array(a) => Some(Arc::new(
                a.iter()
                    .enumerate()
                    .map(|(i, h)| hint_from(h, &index(&at, i), map))
                    .collect::<Result<Vec<_>>>()?,
            )),
            other => {
                return Err(S.error(
                    &at,
                    format!("expected a list of hints or null, got {}", kind(other)),
                ))
            }
        };
        out.push((resource.clone(), hints));
    }
    Ok(Some(out))
}

/// `[{"name": str, "containers": {name: answer}, "pod": answer}, ...]`.
pub fn providers_from(v: &Value, map: &IdMap) -> Result<Vec<ExtraProvider>> {
    let Value::Array(items) = v else {
        return Err(S.error(
            "hints",
            format!("expected a list of hint providers, got {}", kind(v)),
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let at = index("hints", i);
            let o = Obj::new(p, &at, S)?;
            o.deny_unknown("hint provider key", &["name", "containers", "pod"])?;
            let mut containers = BTreeMap::new();
            let mut container_scores = BTreeMap::new();
            if let Some(cs) = o.obj("containers")? {
                for (c, h) in cs.map {
                    containers.insert(c.clone(), answer_from(Some(h), &cs.at(c), map)?);
                    container_scores.insert(c.clone(), scores_from(Some(h), map));
                }
            }
            Ok(ExtraProvider {
                name: o.str("name")?.unwrap_or("extra").to_string(),
                containers,
                pod: answer_from(o.get("pod"), &o.at("pod"), map)?,
                container_scores,
                pod_scores: scores_from(o.get("pod"), map),
            })
        })
        .collect()
}

pub fn hint_value(h: &TopologyHint, map: &IdMap) -> Value {
    json!({"affinity": h.affinity.map(|m| map.ids(m)), "preferred": h.preferred})
}

pub fn answer_value(p: &ProviderHints, map: &IdMap) -> Value {
    match p {
        None => Value::Null,
        Some(m) => Value::Object(
            m.iter()
                .map(|(r, l)| {
                    let v = l.as_ref().map_or(Value::Null, |l| {
                        Value::Array(l.iter().map(|h| hint_value(h, map)).collect())
                    });
                    (r.clone(), v)
                })
                .collect::<Map<_, _>>(),
        ),
    }
}

/// A node-id list as given by a caller: ascending, unique, each a NUMA node id.
pub fn id_map_from(ids: &[i64]) -> Result<IdMap> {
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    if sorted.windows(2).any(|w| w[0] == w[1]) {
        return Err(EngineError::config(
            "numa_nodes: a NUMA node id appears twice",
        ));
    }
    IdMap::new(sorted).map_err(|e| EngineError::config(format!("numa_nodes: {}", e.message())))
}
