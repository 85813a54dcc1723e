//! The topology manager's merge on its own, over node ids.

use super::convert::{to_py, to_value};
use super::errors::IntoPy;
use crate::decode::Subject;
use crate::error::EngineError;
use crate::hints::ProviderHints;
use crate::provider::{answer_from, hint_value, id_map_from};
use crate::topology::{policy_merge, MergeContext, Policy, PolicyOptions};
use pyo3::prelude::*;
use std::collections::BTreeMap;

/// Merges hint providers' answers for a machine with the given NUMA node ids (sparse ids
/// work, as in the manager); `distances` rows follow the order of `numa_nodes`.
#[pyfunction]
#[pyo3(signature = (providers, numa_nodes, policy="best-effort", options=None, distances=None))]
pub fn merge_hints<'py>(
    py: Python<'py>,
    providers: &Bound<'py, PyAny>,
    numa_nodes: Vec<i64>,
    policy: &str,
    options: Option<BTreeMap<String, String>>,
    distances: Option<Vec<Vec<u64>>>,
) -> PyResult<(Bound<'py, PyAny>, bool)> {
    let policy = Policy::parse(policy).py()?;
    let opts = PolicyOptions::parse(&options.unwrap_or_default(), true).py()?;
    let map = id_map_from(&numa_nodes).py()?;
    let answers: Vec<ProviderHints> = providers
        .try_iter()?
        .enumerate()
        .map(|(i, p)| p.map(|p| (i, p)))
        .collect::<PyResult<Vec<_>>>()?
        .into_iter()
        .map(|(i, p)| {
            let v = to_value(&p, Subject::Config)?;
            answer_from(Some(&v), &format!("providers[{i}]"), &map).py()
        })
        .collect::<PyResult<_>>()?;
    let closest = if opts.prefer_closest_numa_nodes {
        let d = distances
            .ok_or_else(|| {
                EngineError::config(
                    "cannot discover NUMA topology: error getting NUMA distances from cadvisor",
                )
            })
            .py()?;
        // Rows by position (ids ascending), as node sets are.
        let n = numa_nodes.len();
        if d.len() != n || d.iter().any(|r| r.len() != n) {
            return Err(super::errors::to_py_err(EngineError::config(
                "the distance matrix must have one row and column per NUMA node",
            )));
        }
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&i| numa_nodes[i]);
        Some(
            order
                .iter()
                .map(|&i| order.iter().map(|&j| d[i][j]).collect())
                .collect(),
        )
    } else {
        None
    };
    let ctx = MergeContext::plain(map.all(), closest);
    let refs: Vec<&ProviderHints> = answers.iter().collect();
    let (h, admit) = policy_merge(policy, &refs, &ctx);
    Ok((to_py(py, &hint_value(&h, &map))?, admit))
}
