//! Memory-manager topology hints (`calculateHints`, reference §4.3).
//!
//! The kubelet walks all 2^N - 1 node sets in size-then-lexicographic order and sums free and
//! allocatable memory per set by looping over its bits. Here the per-set sums come from
//! subset-sum tables built once per call (each entry is one addition away from a smaller set),
//! so the walk does O(1) work per set; the order, the preferred flag and the group rules are
//! the kubelet's.

use crate::error::{EngineError, Result};
use crate::nodemask::{for_each_combination, NodeMask};
use crate::request::Requested;
use crate::state::MachineState;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TopologyHint {
    /// `None` is the kubelet's nil mask: "any NUMA node".
    pub affinity: Option<NodeMask>,
    pub preferred: bool,
}

impl TopologyHint {
    pub const fn new(affinity: NodeMask, preferred: bool) -> TopologyHint {
        TopologyHint {
            affinity: Some(affinity),
            preferred,
        }
    }
}

/// One provider's hints for each resource: `None` for the map is a nil map (no preference),
/// `None` for a list is a nil list, `Some(empty)` is "no node set can satisfy this resource".
pub type ProviderHints = Option<Vec<(String, Option<Arc<Vec<TopologyHint>>>)>>;

/// Reusable init-container memory of the pod being admitted: mask -> resource -> bytes.
pub type Reusable = BTreeMap<NodeMask, BTreeMap<String, u64>>;

/// Up to this many positions the subset-sum tables are used (2^20 entries per resource).
const TABLE_LIMIT: usize = 20;

struct Flat {
    ids: Vec<i64>,
    dense: bool,
    /// per resource, per position
    free: Vec<Vec<u64>>,
    alloc: Vec<Vec<u64>>,
    /// positions with assignments and a single-node group
    used_single: u64,
    /// positions with assignments in a multi-node group -> that group as a position mask
    used_multi: Vec<(usize, Option<u64>)>,
    /// positions whose group has more than one node (rule B)
    grouped: u64,
}

fn flatten(ms: &MachineState, resources: &[&str]) -> Result<Flat> {
    let ids: Vec<i64> = ms.keys().copied().collect();
    if let Some(&bad) = ids.iter().find(|&&i| !(0..64).contains(&i)) {
        return Err(EngineError::Machine(format!(
            "NUMA node id {bad} is out of range: ids must be 0-63"
        )));
    }
    let dense = ids.iter().enumerate().all(|(p, &id)| p as i64 == id);
    let pos_of = |id: i64| ids.iter().position(|&x| x == id);
    let n = ids.len();
    let mut free = vec![vec![0u64; n]; resources.len()];
    let mut alloc = vec![vec![0u64; n]; resources.len()];
    let mut used_single = 0u64;
    let mut used_multi = Vec::new();
    let mut grouped = 0u64;
    for (p, node) in ms.values().enumerate() {
        for (r, name) in resources.iter().enumerate() {
            // The kubelet dereferences a nil table here and crashes; say what is wrong instead.
            let t = node.memory_map.get(*name).ok_or_else(|| {
                EngineError::Allocation(format!(
                    "[memorymanager] NUMA node {} has no {name:?} memory: the machine does not report this resource, so no node can hold the request",
                    ids[p]
                ))
            })?;
            free[r][p] = t.free;
            alloc[r][p] = t.allocatable;
        }
        let cells = node.cells();
        if cells.len() > 1 {
            grouped |= 1 << p;
        }
        if node.number_of_assignments > 0 {
            if cells.len() == 1 {
                used_single |= 1 << p;
            } else {
                let mut gm = Some(0u64);
                for c in cells {
                    gm = match (gm, pos_of(*c)) {
                        (Some(m), Some(q)) if m & (1 << q) == 0 => Some(m | 1 << q),
                        _ => None,
                    };
                }
                used_multi.push((p, gm));
            }
        }
    }
    Ok(Flat {
        ids,
        dense,
        free,
        alloc,
        used_single,
        used_multi,
        grouped,
    })
}

fn subset_sums(values: &[u64]) -> Vec<u64> {
    let n = values.len();
    let mut t = vec![0u64; 1 << n];
    for m in 1..(1usize << n) {
        let low = m.trailing_zeros() as usize;
        t[m] = t[m & (m - 1)].wrapping_add(values[low]);
    }
    t
}

fn sum_bits(values: &[u64], mut m: u64) -> u64 {
    let mut s = 0u64;
    while m != 0 {
        s = s.wrapping_add(values[m.trailing_zeros() as usize]);
        m &= m - 1;
    }
    s
}

/// How much of the hint list to compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extent {
    /// Every feasible node set, as the kubelet lists them.
    Full,
    /// The preferred ones when there are any: the walk stops after the smallest size that
    /// could hold the request. Every decision that finds a preferred hint among them is the
    /// same as with the full list, because preferred hints beat non-preferred ones everywhere
    /// they are compared. When that size yields nothing, the full list is returned: an empty
    /// list means "no preference" to the topology manager, not "nothing preferred".
    Preferred,
}

/// The hints of `calculateHints`: one list of masks shared by every requested resource (the
/// kubelet gives all of a request's resources the same list). Empty when nothing fits; the
/// caller turns that into an empty map, as the kubelet does.
pub fn calculate_hints(
    ms: &MachineState,
    req: &Requested,
    reusable: Option<&Reusable>,
) -> Result<Vec<TopologyHint>> {
    calculate_hints_to(ms, req, reusable, Extent::Full)
}

/// [`calculate_hints`] limited to `extent`.
pub fn calculate_hints_to(
    ms: &MachineState,
    req: &Requested,
    reusable: Option<&Reusable>,
    extent: Extent,
) -> Result<Vec<TopologyHint>> {
    let resources: Vec<&str> = req.keys().map(String::as_str).collect();
    let wants: Vec<u64> = req.values().copied().collect();
    let f = flatten(ms, &resources)?;
    let n = f.ids.len();
    if n == 0 {
        return Ok(vec![]);
    }
    // The tables cost 2^n per resource: worth it only when most sets will be visited.
    let tables = extent == Extent::Full && n <= TABLE_LIMIT && n > 6;
    let (free_t, alloc_t): (Vec<Vec<u64>>, Vec<Vec<u64>>) = if tables {
        (
            f.free.iter().map(|v| subset_sums(v)).collect(),
            f.alloc.iter().map(|v| subset_sums(v)).collect(),
        )
    } else {
        (vec![], vec![])
    };
    let free_sum = |r: usize, m: u64| {
        if tables {
            free_t[r][m as usize]
        } else {
            sum_bits(&f.free[r], m)
        }
    };
    let alloc_sum = |r: usize, m: u64| {
        if tables {
            alloc_t[r][m as usize]
        } else {
            sum_bits(&f.alloc[r], m)
        }
    };
    let to_ids = |m: u64| {
        if f.dense {
            NodeMask::from_raw(m)
        } else {
            let mut out = 0u64;
            let mut x = m;
            while x != 0 {
                out |= 1 << f.ids[x.trailing_zeros() as usize];
                x &= x - 1;
            }
            NodeMask::from_raw(out)
        }
    };
    let mut min_size = n as u32;
    let mut masks: Vec<NodeMask> = Vec::new();
    let mut feasible_seen = false;
    for_each_combination(n, 1, |m| {
        let size = m.count_ones();
        if extent == Extent::Preferred && feasible_seen && size > min_size {
            return false;
        }
        // (A) capacity: could the set hold the request if it were empty?
        if (0..wants.len()).any(|r| alloc_sum(r, m) < wants[r]) {
            return true;
        }
        feasible_seen = true;
        min_size = min_size.min(size);
        if size == 1 {
            // (B) a node inside a multi-node group serves only that group.
            if f.grouped & m != 0 {
                return true;
            }
        } else {
            // (C) no node that serves single-node allocations, (D) groups only as a whole.
            if f.used_single & m != 0 {
                return true;
            }
            for &(p, gm) in &f.used_multi {
                if m & (1 << p) != 0 && gm != Some(m) {
                    return true;
                }
            }
        }
        let ids = to_ids(m);
        let reuse = reusable.and_then(|r| r.get(&ids));
        // (E) free memory, counting init-container memory the pod may reuse.
        for (r, want) in wants.iter().enumerate() {
            let extra = reuse
                .and_then(|x| x.get(resources[r]))
                .copied()
                .unwrap_or(0);
            if free_sum(r, m).wrapping_add(extra) < *want {
                return true;
            }
        }
        masks.push(ids);
        true
    });
    if extent == Extent::Preferred && masks.is_empty() {
        return calculate_hints_to(ms, req, reusable, Extent::Full);
    }
    Ok(masks
        .into_iter()
        .map(|m| TopologyHint::new(m, m.count() == min_size))
        .collect())
}

/// Wraps the shared list into a provider answer for `resources`.
pub fn provider_answer(resources: &[String], hints: Vec<TopologyHint>) -> ProviderHints {
    if hints.is_empty() {
        return Some(vec![]);
    }
    let shared = Arc::new(hints);
    Some(
        resources
            .iter()
            .map(|r| (r.clone(), Some(Arc::clone(&shared))))
            .collect(),
    )
}

/// `findBestHint`: a preferred hint beats a non-preferred one; otherwise the narrower wins.
pub fn find_best_hint<'a>(
    hints: impl IntoIterator<Item = &'a TopologyHint>,
) -> Option<TopologyHint> {
    let mut best: Option<TopologyHint> = None;
    for h in hints {
        best = match best {
            None => Some(*h),
            Some(b) => {
                let (hm, bm) = (
                    h.affinity.unwrap_or_default(),
                    b.affinity.unwrap_or_default(),
                );
                if (h.preferred && !b.preferred)
                    || (h.preferred == b.preferred && hm.is_narrower_than(bm))
                {
                    Some(*h)
                } else {
                    Some(b)
                }
            }
        };
    }
    best
}
