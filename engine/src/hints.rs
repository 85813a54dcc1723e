//! Memory-manager topology hints (`calculateHints`, reference §4.3).
//!
//! The kubelet walks all 2^N - 1 node sets in size-then-lexicographic order and sums free and
//! allocatable memory per set by looping over its bits. Here the per-set sums come from
//! subset-sum tables built once per call (each entry is one addition away from a smaller set),
//! so the walk does O(1) work per set; the order, the preferred flag and the group rules are
//! the kubelet's.

use crate::error::{EngineError, Result};
use crate::nodemask::{
    binomial, for_each_combination, for_each_combination_of_size, NodeMask, MAX_NODE_ID,
};
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
    used_single: u128,
    /// positions with assignments in a multi-node group -> that group as a position mask
    used_multi: Vec<(usize, Option<u128>)>,
    /// positions whose group has more than one node (rule B)
    grouped: u128,
}

fn flatten(ms: &MachineState, resources: &[&str]) -> Result<Flat> {
    let ids: Vec<i64> = ms.keys().copied().collect();
    if let Some(&bad) = ids
        .iter()
        .find(|&&i| !(0..=i64::from(MAX_NODE_ID)).contains(&i))
    {
        return Err(EngineError::Machine(format!(
            "NUMA node id {bad} is out of range: ids must be 0-{MAX_NODE_ID}"
        )));
    }
    let dense = ids.iter().enumerate().all(|(p, &id)| p as i64 == id);
    let pos_of = |id: i64| ids.iter().position(|&x| x == id);
    let n = ids.len();
    let mut free = vec![vec![0u64; n]; resources.len()];
    let mut alloc = vec![vec![0u64; n]; resources.len()];
    let mut used_single = 0u128;
    let mut used_multi = Vec::new();
    let mut grouped = 0u128;
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
                let mut gm = Some(0u128);
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

fn sum_bits(values: &[u64], mut m: u128) -> u64 {
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
    let f = flatten(ms, &resources)?;
    let n = f.ids.len();
    if n == 0 {
        return Ok(vec![]);
    }
    // The tables cost 2^n per resource: worth it only when most sets will be visited.
    let tables = extent == Extent::Full && n <= TABLE_LIMIT && n > 6;
    let c = Checker::new(&f, req, &resources, reusable, tables);
    let mut min_size = n as u32;
    let mut masks: Vec<NodeMask> = Vec::new();
    let mut feasible_seen = false;
    for_each_combination(n, 1, |m| {
        let size = m.count_ones();
        if extent == Extent::Preferred && feasible_seen && size > min_size {
            return false;
        }
        let (capacity, accepted) = c.check(m);
        if capacity {
            feasible_seen = true;
            min_size = min_size.min(size);
        }
        if let Some(ids) = accepted {
            masks.push(ids);
        }
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

/// The per-set tests of `calculateHints`, over positions in the flattened machine.
struct Checker<'a> {
    f: &'a Flat,
    wants: Vec<u64>,
    resources: &'a [&'a str],
    reusable: Option<&'a Reusable>,
    free_t: Vec<Vec<u64>>,
    alloc_t: Vec<Vec<u64>>,
}

impl<'a> Checker<'a> {
    fn new(
        f: &'a Flat,
        req: &Requested,
        resources: &'a [&'a str],
        reusable: Option<&'a Reusable>,
        tables: bool,
    ) -> Self {
        let (free_t, alloc_t) = if tables {
            (
                f.free.iter().map(|v| subset_sums(v)).collect(),
                f.alloc.iter().map(|v| subset_sums(v)).collect(),
            )
        } else {
            (vec![], vec![])
        };
        Checker {
            f,
            wants: req.values().copied().collect(),
            resources,
            reusable,
            free_t,
            alloc_t,
        }
    }

    fn free_sum(&self, r: usize, m: u128) -> u64 {
        if self.free_t.is_empty() {
            sum_bits(&self.f.free[r], m)
        } else {
            self.free_t[r][m as usize]
        }
    }

    fn alloc_sum(&self, r: usize, m: u128) -> u64 {
        if self.alloc_t.is_empty() {
            sum_bits(&self.f.alloc[r], m)
        } else {
            self.alloc_t[r][m as usize]
        }
    }

    fn to_ids(&self, m: u128) -> NodeMask {
        if self.f.dense {
            return NodeMask::from_raw(m);
        }
        let mut out = 0u128;
        let mut x = m;
        while x != 0 {
            out |= 1 << self.f.ids[x.trailing_zeros() as usize];
            x &= x - 1;
        }
        NodeMask::from_raw(out)
    }

    /// (passes the capacity test (A), the set as node ids if it passes every test).
    fn check(&self, m: u128) -> (bool, Option<NodeMask>) {
        let f = self.f;
        // (A) capacity: could the set hold the request if it were empty?
        if (0..self.wants.len()).any(|r| self.alloc_sum(r, m) < self.wants[r]) {
            return (false, None);
        }
        if m.count_ones() == 1 {
            // (B) a node inside a multi-node group serves only that group.
            if f.grouped & m != 0 {
                return (true, None);
            }
        } else {
            // (C) no node that serves single-node allocations, (D) groups only as a whole.
            if f.used_single & m != 0 {
                return (true, None);
            }
            for &(p, gm) in &f.used_multi {
                if m & (1 << p) != 0 && gm != Some(m) {
                    return (true, None);
                }
            }
        }
        let ids = self.to_ids(m);
        let reuse = self.reusable.and_then(|r| r.get(&ids));
        // (E) free memory, counting init-container memory the pod may reuse.
        for (r, want) in self.wants.iter().enumerate() {
            let extra = reuse
                .and_then(|x| x.get(self.resources[r]))
                .copied()
                .unwrap_or(0);
            if self.free_sum(r, m).wrapping_add(extra) < *want {
                return (true, None);
            }
        }
        (true, Some(ids))
    }
}

/// Limits of the bounded search (`search = bounded`, and `auto` above
/// `max-allowable-numa-nodes`).
#[derive(Debug, Clone, PartialEq)]
pub struct Bounds {
    /// A size level with at most this many node sets is enumerated completely.
    pub level_budget: u128,
    /// The full list stops growing at this many hints.
    pub max_hints: usize,
    /// SLIT distances by position, to grow candidate sets around each node.
    pub distances: Option<Vec<Vec<u64>>>,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            level_budget: 16_384,
            max_hints: 512,
            distances: None,
        }
    }
}

/// Hints in bounded time, for machines where 2^N sets cannot be walked.
///
/// Sizes are visited smallest first, as in the kubelet. A size level with at most
/// `level_budget` sets is walked completely, in the kubelet's order, so every answer that only
/// needs such levels is the kubelet's. Beyond that, the candidates of a level are the sets grown
/// from each node by adding its nearest free nodes (by distance, then id) and the existing
/// groups; those levels, and the preferred flag when the minimal size is only found among
/// them, can differ from the exhaustive list. The full list stops at `max_hints`. The cost is
/// O(level_budget + N^2) sets per call.
pub fn calculate_hints_bounded(
    ms: &MachineState,
    req: &Requested,
    reusable: Option<&Reusable>,
    extent: Extent,
    bounds: &Bounds,
) -> Result<Vec<TopologyHint>> {
    let resources: Vec<&str> = req.keys().map(String::as_str).collect();
    let f = flatten(ms, &resources)?;
    let n = f.ids.len();
    if n == 0 {
        return Ok(vec![]);
    }
    let c = Checker::new(&f, req, &resources, reusable, false);
    // No set smaller than this can pass the capacity test for every resource.
    let mut lower = 1usize;
    for (r, want) in c.wants.iter().enumerate() {
        let mut a = f.alloc[r].clone();
        a.sort_unstable_by(|x, y| y.cmp(x));
        let mut sum = 0u64;
        let k = a.iter().position(|v| {
            sum = sum.saturating_add(*v);
            sum >= *want
        });
        match k {
            Some(k) => lower = lower.max(k + 1),
            None if *want > 0 => return Ok(vec![]),
            None => {}
        }
    }
    let mut grown: Option<Vec<Vec<u128>>> = None;
    let mut min_size: Option<u32> = None;
    let mut masks: Vec<NodeMask> = Vec::new();
    for k in lower..=n {
        if (extent == Extent::Preferred && min_size.is_some()) || masks.len() >= bounds.max_hints {
            break;
        }
        let mut visit = |m: u128| {
            let (capacity, accepted) = c.check(m);
            if capacity && min_size.is_none() {
                min_size = Some(k as u32);
            }
            if let Some(ids) = accepted {
                masks.push(ids);
            }
            masks.len() < bounds.max_hints
        };
        if binomial(n, k) <= bounds.level_budget {
            for_each_combination_of_size(n, k, &mut visit);
        } else {
            let levels = grown.get_or_insert_with(|| grown_candidates(&f, bounds));
            for m in levels.get(k).map(Vec::as_slice).unwrap_or(&[]) {
                if !visit(*m) {
                    break;
                }
            }
        }
    }
    if extent == Extent::Preferred && masks.is_empty() {
        return calculate_hints_bounded(ms, req, reusable, Extent::Full, bounds);
    }
    let min_size = min_size.unwrap_or(n as u32);
    Ok(masks
        .into_iter()
        .map(|m| TopologyHint::new(m, m.count() == min_size))
        .collect())
}

/// Candidate sets by size: around every node, its nearest nodes added one at a time, skipping
/// nodes that serve single-node allocations or another group; plus each existing group.
/// Sorted per size in the kubelet's (lexicographic) order, deduplicated.
fn grown_candidates(f: &Flat, bounds: &Bounds) -> Vec<Vec<u128>> {
    let n = f.ids.len();
    let busy: u128 = f.used_single | f.used_multi.iter().fold(0u128, |a, (p, _)| a | 1 << p);
    let mut by_size: Vec<Vec<u128>> = vec![Vec::new(); n + 1];
    for seed in 0..n {
        let mut order: Vec<usize> = (0..n).filter(|&q| q != seed).collect();
        let d = |q: usize| match &bounds.distances {
            Some(m) => m
                .get(seed)
                .and_then(|r| r.get(q))
                .copied()
                .unwrap_or(u64::MAX),
            // Without distances, neighbouring ids are taken as closest.
            None => seed.abs_diff(q) as u64,
        };
        order.sort_by_key(|&q| (d(q), q));
        let mut m: u128 = 1 << seed;
        by_size[1].push(m);
        for q in order {
            if busy & (1 << q) != 0 {
                continue;
            }
            m |= 1 << q;
            by_size[m.count_ones() as usize].push(m);
        }
    }
    for (_, g) in &f.used_multi {
        if let Some(g) = g {
            by_size[g.count_ones() as usize].push(*g);
        }
    }
    for level in by_size.iter_mut() {
        // Lexicographic order of the ascending position lists: compare the lowest differing
        // position, i.e. the bit-reversed masks in descending order.
        level.sort_unstable_by_key(|m| std::cmp::Reverse(m.reverse_bits()));
        level.dedup();
    }
    by_size
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
