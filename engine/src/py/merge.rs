//! The topology manager's merge on its own, over node ids.

use super::convert::{to_py, to_value};
use super::errors::IntoPy;
use crate::config::option_map;
use crate::decode::{index, kind, uint, Subject};
use crate::error::{EngineError, Result};
use crate::hints::ProviderHints;
use crate::provider::{answer_from, hint_value, id_map_from};
use crate::topology::{policy_merge, MergeContext, Policy, PolicyOptions};
use pyo3::prelude::*;
use serde_json::Value;

const C: Subject = Subject::Config;

fn list<'a>(v: &'a Value, at: &str) -> Result<&'a Vec<Value>> {
    v.as_array()
        .ok_or_else(|| C.error(at, format!("expected a list, got {}", kind(v))))
}

fn node_ids(v: &Value) -> Result<Vec<i64>> {
    list(v, "numa_nodes")?
        .iter()
        .enumerate()
        .map(|(i, x)| {
            let id = uint(x, &index("numa_nodes", i), C)?;
            i64::try_from(id).map_err(|_| C.error(&index("numa_nodes", i), "out of range"))
        })
        .collect()
}

fn distance_rows(v: &Value, n: usize, order: &[usize]) -> Result<Vec<Vec<u64>>> {
    let rows = list(v, "distances")?;
    let d = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let at = index("distances", i);
            list(r, &at)?
                .iter()
                .enumerate()
                .map(|(j, x)| uint(x, &index(&at, j), C))
                .collect::<Result<Vec<u64>>>()
        })
        .collect::<Result<Vec<_>>>()?;
    if d.len() != n || d.iter().any(|r| r.len() != n) {
        return Err(EngineError::config(
            "the distance matrix must have one row and column per NUMA node",
        ));
    }
    // Rows by position (ids ascending), as node sets are.
    Ok(order
        .iter()
        .map(|&i| order.iter().map(|&j| d[i][j]).collect())
        .collect())
}

/// Merges hint providers' answers for a machine with the given NUMA node ids (sparse ids
/// work, as in the manager); `distances` rows follow the order of `numa_nodes`. Every
/// argument is decoded by the engine: a wrong type is a ConfigError naming it.
#[pyfunction]
#[pyo3(signature = (providers, numa_nodes, policy=None, options=None, distances=None))]
pub fn merge_hints<'py>(
    py: Python<'py>,
    providers: &Bound<'py, PyAny>,
    numa_nodes: &Bound<'py, PyAny>,
    policy: Option<&Bound<'py, PyAny>>,
    options: Option<&Bound<'py, PyAny>>,
    distances: Option<&Bound<'py, PyAny>>,
) -> PyResult<(Bound<'py, PyAny>, bool)> {
    // None means the default; any other non-string is the caller's mistake.
    let policy = match policy.filter(|p| !p.is_none()) {
        None => Policy::parse("best-effort").py()?,
        Some(p) => match to_value(p, C)? {
            Value::String(s) => Policy::parse(&s).py()?,
            other => {
                return Err(super::errors::to_py_err(C.error(
                    "policy",
                    format!("expected a string, got {}", kind(&other)),
                )))
            }
        },
    };
    let options = match options {
        Some(o) if !o.is_none() => option_map(&to_value(o, C)?, "options").py()?,
        _ => Default::default(),
    };
    let opts = PolicyOptions::parse(&options, true).py()?;
    let ids = node_ids(&to_value(numa_nodes, C)?).py()?;
    let map = id_map_from(&ids).py()?;
    let answers: Vec<ProviderHints> = {
        let v = to_value(providers, C)?;
        list(&v, "providers")
            .py()?
            .iter()
            .enumerate()
            .map(|(i, p)| answer_from(Some(p), &index("providers", i), &map))
            .collect::<Result<_>>()
            .py()?
    };
    let closest = if opts.prefer_closest_numa_nodes {
        let Some(d) = distances.filter(|d| !d.is_none()) else {
            return Err(super::errors::to_py_err(EngineError::config(
                "cannot discover NUMA topology: error getting NUMA distances from cadvisor",
            )));
        };
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| ids[i]);
        Some(distance_rows(&to_value(d, C)?, ids.len(), &order).py()?)
    } else {
        None
    };
    let ctx = MergeContext::plain(map.all(), closest);
    let refs: Vec<&ProviderHints> = answers.iter().collect();
    let (h, admit) = policy_merge(policy, &refs, &ctx);
    Ok((to_py(py, &hint_value(&h, &map))?, admit))
}
