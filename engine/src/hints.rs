//! Memory-manager topology hints (`calculateHints`, reference §4.3).
//!
//! The kubelet walks all 2^N - 1 node sets in size-then-lexicographic order and sums free and
//! allocatable memory per set by looping over its bits. Here the walk keeps prefix sums along
//! the current combination, so each set costs O(1) amortised; the order, the preferred flag
//! and the group rules are the kubelet's.

use crate::error::{EngineError, Result};
use crate::nodemask::{binomial, for_each_combination_of_size, IdMap, NodeMask};
use crate::request::Requested;
use crate::state::MachineState;
use std::cell::Cell;
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

#[derive(Default)]
struct Flat {
    ids: Vec<i64>,
    /// state position -> machine position (identity when `dense`)
    remap: Vec<usize>,
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
    /// the request per resource, in the order of `free` and `alloc`
    wants: Vec<u64>,
}

/// The walk's work arrays (see [`calculate_hints_to`]).
#[derive(Default)]
struct Work {
    idx: Vec<usize>,
    pmask: Vec<u128>,
    palloc: Vec<u64>,
    pfree: Vec<u64>,
    sum_a: Vec<u64>,
    sum_f: Vec<u64>,
    sorted: Vec<u64>,
}

fn zeroed<T: Copy + Default>(v: &mut Vec<T>, len: usize) {
    v.clear();
    v.resize(len, T::default());
}

#[derive(Default)]
struct Scratch {
    flat: Flat,
    work: Work,
}

thread_local! {
    /// The arrays of the last hint computation on this thread, kept for the next: an admission
    /// computes hints once or twice, and allocating a dozen small arrays each time cost as
    /// much as the walk itself on small machines.
    static SPARE: Cell<Option<Box<Scratch>>> = const { Cell::new(None) };
}

/// A [`Scratch`] taken from this thread's spare (or new), given back when dropped.
struct Pooled(Option<Box<Scratch>>);

impl Pooled {
    fn take() -> Pooled {
        Pooled(Some(SPARE.with(Cell::take).unwrap_or_default()))
    }

    fn parts(&mut self) -> (&mut Flat, &mut Work) {
        let s = self.0.get_or_insert_with(Box::default);
        (&mut s.flat, &mut s.work)
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(s) = self.0.take() {
            SPARE.with(|c| c.set(Some(s)));
        }
    }
}

impl Flat {
    /// Whether no multi-node set of size `k` containing `prefix` can pass rules (C) and (D).
    fn rejects_prefix(&self, prefix: u128, k: usize) -> bool {
        if self.used_single & prefix != 0 {
            return true;
        }
        self.used_multi.iter().any(|&(p, g)| {
            prefix & (1 << p) != 0
                && g.is_none_or(|g| g.count_ones() as usize != k || prefix & !g != 0)
        })
    }
}

/// The smallest size of a node set whose allocatable memory could hold `wants` (test (A)),
/// found with an early exit; `None` when not even every node together can.
fn min_capacity_size(f: &Flat, wants: &[u64], sorted: &mut Vec<u64>) -> Option<usize> {
    let lower = capacity_lower_bound(f, wants, sorted)?;
    if wants.len() <= 1 {
        return Some(lower);
    }
    (lower..=f.ids.len()).find(|&k| {
        let mut found = false;
        for_each_combination_of_size(f.ids.len(), k, &mut |m| {
            found = f.alloc.iter().zip(wants).all(|(v, w)| sum_bits(v, m) >= *w);
            !found
        });
        found
    })
}

/// No set smaller than this can pass the capacity test for every resource: each resource
/// needs at least as many nodes as its largest allocatable values take to reach the request.
/// `None` when not even every node together can hold it.
fn capacity_lower_bound(f: &Flat, wants: &[u64], sorted: &mut Vec<u64>) -> Option<usize> {
    let mut lower = 1;
    for (r, want) in wants.iter().enumerate() {
        sorted.clear();
        sorted.extend_from_slice(&f.alloc[r]);
        sorted.sort_unstable_by(|x, y| y.cmp(x));
        let mut sum = 0u64;
        match sorted.iter().position(|v| {
            sum = sum.saturating_add(*v);
            sum >= *want
        }) {
            Some(k) => lower = lower.max(k + 1),
            None if *want > 0 => return None,
            None => {}
        }
    }
    Some(lower)
}

#[cfg(test)]
fn flatten(ms: &MachineState, req: &Requested, map: &IdMap) -> Result<Flat> {
    let mut f = Flat::default();
    flatten_into(&mut f, ms, req, map)?;
    Ok(f)
}

/// The state as arrays by position, for the resources of `req`, into `f` (its arrays reused).
fn flatten_into(f: &mut Flat, ms: &MachineState, req: &Requested, map: &IdMap) -> Result<()> {
    if ms.len() > crate::nodemask::MAX_NODES {
        return Err(EngineError::machine(
            None,
            format!(
                "{} NUMA nodes is more than the {} pymm supports",
                ms.len(),
                crate::nodemask::MAX_NODES
            ),
        ));
    }
    f.ids.clear();
    f.remap.clear();
    let mut dense = true;
    for id in ms.keys() {
        let q = map.position(*id).ok_or_else(|| {
            EngineError::mismatch(
                crate::error::MismatchKind::UnknownNode,
                format!("[pymm] the state has NUMA node {id}, which the machine does not have"),
            )
        })?;
        dense &= q == f.ids.len();
        f.ids.push(*id);
        f.remap.push(q);
    }
    let ids = &f.ids;
    let pos_of = |id: i64| ids.iter().position(|&x| x == id);
    let n = ids.len();
    let r_count = req.len();
    f.free.resize_with(r_count, Vec::new);
    f.alloc.resize_with(r_count, Vec::new);
    for v in f.free.iter_mut().chain(f.alloc.iter_mut()) {
        zeroed(v, n);
    }
    f.wants.clear();
    f.wants.extend(req.values().copied());
    let (free, alloc) = (&mut f.free, &mut f.alloc);
    let mut used_single = 0u128;
    let used_multi = &mut f.used_multi;
    used_multi.clear();
    let mut grouped = 0u128;
    for (p, node) in ms.values().enumerate() {
        for (r, name) in req.keys().enumerate() {
            // The kubelet dereferences a nil table here and crashes; say what is wrong instead.
            let t = table(&node.memory_map, name).ok_or_else(|| {
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
    f.dense = dense;
    f.used_single = used_single;
    f.grouped = grouped;
    Ok(())
}

/// `map[name]`. A node has a few resources: a scan that compares lengths first calls `memcmp`
/// once, where the tree's ordered search calls it for every key it passes.
pub(crate) fn table<'a, T>(map: &'a BTreeMap<String, T>, name: &str) -> Option<&'a T> {
    if map.len() > 8 {
        return map.get(name);
    }
    map.iter().find(|(k, _)| k.as_str() == name).map(|(_, t)| t)
}

fn sum_bits(values: &[u64], mut m: u128) -> u64 {
    let mut s = 0u64;
    while m != 0 {
        s = s.saturating_add(values[m.trailing_zeros() as usize]);
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
    map: &IdMap,
) -> Result<Vec<TopologyHint>> {
    calculate_hints_to(ms, req, reusable, Extent::Full, map)
}

/// [`calculate_hints`] limited to `extent`.
pub fn calculate_hints_to(
    ms: &MachineState,
    req: &Requested,
    reusable: Option<&Reusable>,
    extent: Extent,
    map: &IdMap,
) -> Result<Vec<TopologyHint>> {
    let mut pooled = Pooled::take();
    let (f, work) = pooled.parts();
    flatten_into(f, ms, req, map)?;
    let f: &Flat = f;
    let n = f.ids.len();
    if n == 0 {
        return Ok(vec![]);
    }
    let c = Checker::new(f, req, reusable);
    let r_count = c.wants.len();
    // The kubelet takes the preferred size from the capacity test alone, before the group
    // rules; computing it apart lets the walk below skip what the group rules reject.
    let Some(min_size) = min_capacity_size(f, c.wants, &mut work.sorted) else {
        return Ok(vec![]);
    };
    let top = if extent == Extent::Preferred {
        min_size
    } else {
        n
    };
    let capacity = (min_size..=top)
        .map(|k| binomial(n, k))
        .sum::<u128>()
        .min(1 << 16);
    let mut hints: Vec<TopologyHint> = Vec::with_capacity(capacity as usize);
    // The kubelet's walk (by size, then lexicographically), keeping prefix sums along the
    // current combination so each set costs O(1) amortised, and skipping every combination
    // that extends a prefix the group rules already reject: one holding a node that serves
    // single-node allocations, or part of a group together with anything else.
    // Sized by the machine, not by the 128-node maximum: zeroing the larger arrays cost more
    // than the whole walk on small machines.
    let Work {
        idx,
        pmask,
        palloc,
        pfree,
        sum_a,
        sum_f,
        ..
    } = work;
    zeroed(idx, n);
    zeroed(pmask, n + 1);
    zeroed(palloc, (n + 1) * r_count);
    zeroed(pfree, (n + 1) * r_count);
    zeroed(sum_a, r_count);
    zeroed(sum_f, r_count);
    'sizes: for k in min_size..=n {
        if k == top + 1 && extent == Extent::Preferred && !hints.is_empty() {
            // The preferred hints were asked for and found: the rest of the list is not needed.
            // When the preferred size yields none, the walk goes on to the full list (an
            // empty list would mean "no preference" to the topology manager).
            break;
        }
        // The first k-1 positions form a prefix walked like the kubelet's combinations; the
        // last position runs over the remaining nodes in a tight loop.
        let head = k - 1;
        for (i, slot) in idx.iter_mut().enumerate().take(head) {
            *slot = i;
        }
        let mut from = 0;
        loop {
            let mut pruned_at = None;
            for j in from..head {
                let p = idx[j];
                pmask[j + 1] = pmask[j] | 1 << p;
                for r in 0..r_count {
                    palloc[(j + 1) * r_count + r] =
                        palloc[j * r_count + r].saturating_add(f.alloc[r][p]);
                    pfree[(j + 1) * r_count + r] =
                        pfree[j * r_count + r].saturating_add(f.free[r][p]);
                }
                if k > 1 && f.rejects_prefix(pmask[j + 1], k) {
                    pruned_at = Some(j);
                    break;
                }
            }
            if pruned_at.is_none() {
                let start = if head == 0 { 0 } else { idx[head - 1] + 1 };
                let base = head * r_count;
                for p in start..n {
                    let m = pmask[head] | 1 << p;
                    if k > 1 && f.rejects_prefix(m, k) {
                        continue;
                    }
                    for r in 0..r_count {
                        sum_a[r] = palloc[base + r].saturating_add(f.alloc[r][p]);
                        sum_f[r] = pfree[base + r].saturating_add(f.free[r][p]);
                    }
                    if let (_, Some(ids)) = c.check_sums(m, &sum_a[..r_count], &sum_f[..r_count]) {
                        hints.push(TopologyHint::new(ids, k == min_size));
                    }
                }
            }
            if head == 0 {
                continue 'sizes;
            }
            // The prefix's last node must leave room for the final position.
            let limit = pruned_at.unwrap_or(head - 1);
            let Some(i) = (0..=limit).rev().find(|&i| idx[i] < n - k + i) else {
                continue 'sizes;
            };
            idx[i] += 1;
            for j in i + 1..head {
                idx[j] = idx[j - 1] + 1;
            }
            from = i;
        }
    }
    Ok(hints)
}

/// The per-set tests of `calculateHints`, over positions in the flattened machine.
struct Checker<'a> {
    f: &'a Flat,
    wants: &'a [u64],
    req: &'a Requested,
    reusable: Option<&'a Reusable>,
}

impl<'a> Checker<'a> {
    fn new(f: &'a Flat, req: &'a Requested, reusable: Option<&'a Reusable>) -> Self {
        Checker {
            f,
            wants: &f.wants,
            req,
            reusable,
        }
    }

    /// A set over the state's positions as a set over the machine's positions.
    fn to_mask(&self, m: u128) -> NodeMask {
        if self.f.dense {
            return NodeMask::from_raw(m);
        }
        let mut out = 0u128;
        let mut x = m;
        while x != 0 {
            out |= 1 << self.f.remap[x.trailing_zeros() as usize];
            x &= x - 1;
        }
        NodeMask::from_raw(out)
    }

    /// (passes the capacity test (A), the set as node ids if it passes every test).
    fn check(&self, m: u128) -> (bool, Option<NodeMask>) {
        // On the stack for the usual few resources: this runs for thousands of sets per call.
        const FEW: usize = 8;
        let r = self.f.alloc.len();
        if r > FEW {
            let alloc: Vec<u64> = self.f.alloc.iter().map(|v| sum_bits(v, m)).collect();
            let free: Vec<u64> = self.f.free.iter().map(|v| sum_bits(v, m)).collect();
            return self.check_sums(m, &alloc, &free);
        }
        let (mut alloc, mut free) = ([0u64; FEW], [0u64; FEW]);
        for (a, v) in alloc.iter_mut().zip(&self.f.alloc) {
            *a = sum_bits(v, m);
        }
        if alloc[..r].iter().zip(self.wants).any(|(a, w)| a < w) {
            return (false, None);
        }
        for (x, v) in free.iter_mut().zip(&self.f.free) {
            *x = sum_bits(v, m);
        }
        self.check_sums(m, &alloc[..r], &free[..r])
    }

    /// Whether some set of `k` nodes passes the capacity test (A), whatever the group rules.
    fn some_set_has_capacity(&self, k: usize) -> bool {
        let f = self.f;
        let n = f.ids.len();
        if let [want] = self.wants[..] {
            // One resource: the k largest nodes decide.
            let mut a = f.alloc[0].clone();
            a.sort_unstable_by(|x, y| y.cmp(x));
            return a.iter().take(k).fold(0u64, |s, v| s.saturating_add(*v)) >= want;
        }
        let mut found = false;
        for_each_combination_of_size(n, k, &mut |m| {
            found = f
                .alloc
                .iter()
                .zip(self.wants)
                .all(|(v, w)| sum_bits(v, m) >= *w);
            !found
        });
        found
    }

    /// [`Checker::check`] with the set's allocatable and free sums per resource given.
    #[inline]
    fn check_sums(&self, m: u128, alloc: &[u64], free: &[u64]) -> (bool, Option<NodeMask>) {
        let f = self.f;
        // (A) capacity: could the set hold the request if it were empty?
        if alloc.iter().zip(self.wants).any(|(a, w)| a < w) {
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
        let ids = self.to_mask(m);
        // (E) free memory, counting init-container memory the pod may reuse.
        match self.reusable.and_then(|r| r.get(&ids)) {
            None => {
                if free.iter().zip(self.wants).any(|(f, w)| f < w) {
                    return (true, None);
                }
            }
            Some(reuse) => {
                for (r, (name, want)) in self.req.iter().enumerate() {
                    let extra = reuse.get(name.as_str()).copied().unwrap_or(0);
                    if free[r].saturating_add(extra) < *want {
                        return (true, None);
                    }
                }
            }
        }
        (true, Some(ids))
    }
}

/// Why the memory manager's hints would not offer exactly `set` for `req` now (capacity, the
/// group rules, free memory counting reusable init-container memory), in words; `None` when
/// they would. The same tests as [`calculate_hints`], for one set.
pub fn set_violation(
    ms: &MachineState,
    req: &Requested,
    reusable: Option<&Reusable>,
    set: NodeMask,
    map: &IdMap,
) -> Result<Option<String>> {
    let resources: Vec<&str> = req.keys().map(String::as_str).collect();
    let mut f = Flat::default();
    flatten_into(&mut f, ms, req, map)?;
    let ids = map.ids(set);
    let mut m = 0u128;
    for id in &ids {
        match f.ids.iter().position(|x| x == id) {
            Some(p) => m |= 1 << p,
            None => return Ok(Some(format!("NUMA node {id} is not in the state"))),
        }
    }
    let c = Checker::new(&f, req, reusable);
    if let (_, Some(_)) = c.check(m) {
        return Ok(None);
    }
    let bytes = crate::quantity::bytes_text;
    for (r, want) in c.wants.iter().enumerate() {
        let alloc = sum_bits(&f.alloc[r], m);
        if alloc < *want {
            return Ok(Some(format!(
                "they have {} of {} allocatable, less than the {} requested",
                bytes(alloc),
                resources[r],
                bytes(*want)
            )));
        }
    }
    let single = m.count_ones() == 1;
    for (p, id) in f.ids.iter().enumerate() {
        if m & (1 << p) == 0 {
            continue;
        }
        if single && f.grouped & m != 0 {
            return Ok(Some(format!(
                "NUMA node {id} belongs to a multi-node group, which serves only containers spanning the whole group"
            )));
        }
        if !single && f.used_single & (1 << p) != 0 {
            return Ok(Some(format!(
                "NUMA node {id} serves single-node allocations, so it cannot be part of a multi-node set"
            )));
        }
        if !single && f.used_multi.iter().any(|&(q, g)| q == p && g != Some(m)) {
            return Ok(Some(format!(
                "NUMA node {id} belongs to another multi-node group, which a set may only take whole"
            )));
        }
    }
    for (r, want) in c.wants.iter().enumerate() {
        let free = sum_bits(&f.free[r], m);
        if free < *want {
            return Ok(Some(format!(
                "they have {} of {} free, less than the {} requested",
                bytes(free),
                resources[r],
                bytes(*want)
            )));
        }
    }
    Ok(Some("the memory manager's rules refuse it".into()))
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
    map: &IdMap,
) -> Result<Vec<TopologyHint>> {
    let mut pooled = Pooled::take();
    let (f, work) = pooled.parts();
    flatten_into(f, ms, req, map)?;
    let f: &Flat = f;
    let n = f.ids.len();
    if n == 0 {
        return Ok(vec![]);
    }
    let c = Checker::new(f, req, reusable);
    let Some(lower) = capacity_lower_bound(f, c.wants, &mut work.sorted) else {
        return Ok(vec![]);
    };
    let mut grown: Option<Vec<Vec<u128>>> = None;
    let mut min_size: Option<u32> = None;
    let mut masks: Vec<NodeMask> = Vec::new();
    let rules = GroupRules::of(f);
    for k in lower..=n {
        if (extent == Extent::Preferred && min_size.is_some()) || masks.len() >= bounds.max_hints {
            break;
        }
        if binomial(n, k) <= bounds.level_budget {
            // The whole level, in the kubelet's order; but only the sets the group rules allow
            // are tested (on a busy machine, a few among thousands), so the preferred size,
            // which the capacity test alone decides, is found apart.
            if min_size.is_none() && c.some_set_has_capacity(k) {
                min_size = Some(k as u32);
            }
            for m in rules.level(k) {
                if let (_, Some(ids)) = c.check(m) {
                    masks.push(ids);
                    if masks.len() >= bounds.max_hints {
                        break;
                    }
                }
            }
            continue;
        }
        let levels = grown.get_or_insert_with(|| grown_candidates(f, bounds));
        for m in levels.get(k).map(Vec::as_slice).unwrap_or(&[]) {
            let (capacity, accepted) = c.check(*m);
            if capacity && min_size.is_none() {
                min_size = Some(k as u32);
            }
            if let Some(ids) = accepted {
                masks.push(ids);
                if masks.len() >= bounds.max_hints {
                    break;
                }
            }
        }
    }
    if extent == Extent::Preferred && masks.is_empty() {
        drop(pooled);
        return calculate_hints_bounded(ms, req, reusable, Extent::Full, bounds, map);
    }
    let min_size = min_size.unwrap_or(n as u32);
    Ok(masks
        .into_iter()
        .map(|m| TopologyHint::new(m, m.count() == min_size))
        .collect())
}

/// The sets the group rules allow, by size: single nodes outside multi-node groups (rule B),
/// and for more nodes, sets of unused nodes or exactly an existing group (rules C and D).
struct GroupRules {
    singles: Vec<u128>,
    /// Positions of nodes without assignments, ascending.
    unused: Vec<usize>,
    groups: Vec<u128>,
}

impl GroupRules {
    fn of(f: &Flat) -> GroupRules {
        let n = f.ids.len();
        let busy: u128 = f.used_single | f.used_multi.iter().fold(0u128, |a, (p, _)| a | 1 << p);
        let mut groups: Vec<u128> = f.used_multi.iter().filter_map(|(_, g)| *g).collect();
        groups.sort_unstable();
        groups.dedup();
        GroupRules {
            singles: (0..n)
                .filter(|p| f.grouped & (1 << p) == 0)
                .map(|p| 1u128 << p)
                .collect(),
            unused: (0..n).filter(|p| busy & (1 << p) == 0).collect(),
            groups,
        }
    }

    /// The allowed sets of `k` nodes in the kubelet's (lexicographic) order.
    fn level(&self, k: usize) -> Vec<u128> {
        if k == 1 {
            return self.singles.clone();
        }
        let mut out = Vec::new();
        for_each_combination_of_size(self.unused.len(), k, &mut |m| {
            let mut set = 0u128;
            let mut x = m;
            while x != 0 {
                set |= 1 << self.unused[x.trailing_zeros() as usize];
                x &= x - 1;
            }
            out.push(set);
            true
        });
        let before = out.len();
        out.extend(self.groups.iter().filter(|g| g.count_ones() as usize == k));
        if out.len() > before {
            out.sort_unstable_by_key(|m| std::cmp::Reverse(m.reverse_bits()));
        }
        out
    }
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
pub fn provider_answer<'a>(
    resources: impl IntoIterator<Item = &'a String>,
    hints: Vec<TopologyHint>,
) -> ProviderHints {
    if hints.is_empty() {
        return Some(vec![]);
    }
    let shared = Arc::new(hints);
    Some(
        resources
            .into_iter()
            .map(|r| (r.clone(), Some(Arc::clone(&shared))))
            .collect(),
    )
}

/// `findBestHint`: a preferred hint beats a non-preferred one; otherwise the narrower wins.
pub fn find_best_hint<'a>(
    hints: impl IntoIterator<Item = &'a TopologyHint>,
) -> Option<TopologyHint> {
    find_best_hint_by(hints, &|_| 0)
}

/// [`find_best_hint`] with a tie-break (lower wins) between sets of the same size, before the
/// lower value decides (`numa-allocation-strategy`; the kubelet's is `|_| 0`).
pub fn find_best_hint_by<'a>(
    hints: impl IntoIterator<Item = &'a TopologyHint>,
    tie: &dyn Fn(NodeMask) -> u64,
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
                let better = hm.count() < bm.count()
                    || (hm.count() == bm.count() && (tie(hm), hm.raw()) < (tie(bm), bm.raw()));
                if (h.preferred && !b.preferred) || (h.preferred == b.preferred && better) {
                    Some(*h)
                } else {
                    Some(b)
                }
            }
        };
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::machine::{HugePagePool, Machine, MemoryKind, NumaNode};
    use crate::manager::Manager;
    use crate::request::Pod;
    use proptest::prelude::*;

    fn check_with_vecs(c: &Checker<'_>, m: u128) -> (bool, Option<NodeMask>) {
        let alloc: Vec<u64> = c.f.alloc.iter().map(|v| sum_bits(v, m)).collect();
        let free: Vec<u64> = c.f.free.iter().map(|v| sum_bits(v, m)).collect();
        c.check_sums(m, &alloc, &free)
    }

    /// The bounded search as it was before the group rules pruned its complete levels: every
    /// set of a complete level tested.
    fn reference_bounded(
        ms: &MachineState,
        req: &Requested,
        reusable: Option<&Reusable>,
        extent: Extent,
        bounds: &Bounds,
        map: &IdMap,
    ) -> Result<Vec<TopologyHint>> {
        let f = flatten(ms, req, map)?;
        let n = f.ids.len();
        if n == 0 {
            return Ok(vec![]);
        }
        let c = Checker::new(&f, req, reusable);
        let Some(lower) = capacity_lower_bound(&f, c.wants, &mut Vec::new()) else {
            return Ok(vec![]);
        };
        let mut grown: Option<Vec<Vec<u128>>> = None;
        let mut min_size: Option<u32> = None;
        let mut masks: Vec<NodeMask> = Vec::new();
        for k in lower..=n {
            if (extent == Extent::Preferred && min_size.is_some())
                || masks.len() >= bounds.max_hints
            {
                break;
            }
            let mut visit = |m: u128| {
                let (capacity, accepted) = check_with_vecs(&c, m);
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
            return reference_bounded(ms, req, reusable, Extent::Full, bounds, map);
        }
        let min_size = min_size.unwrap_or(n as u32);
        Ok(masks
            .into_iter()
            .map(|m| TopologyHint::new(m, m.count() == min_size))
            .collect())
    }

    const GI: u64 = 1 << 30;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

        /// Pruning by the group rules changes nothing: the same hints, in the same order, with
        /// the same preferred flags, at every budget.
        #[test]
        fn pruned_bounded_search_is_the_unpruned_one(
            sizes in prop::collection::vec(4u64..40, 3..13),
            pods in prop::collection::vec((1u64..60, 0u64..3), 0..12),
            probe in (1u64..120, 0u64..4),
            budget in 1u128..200,
            max_hints in 1usize..300,
        ) {
            let machine = Machine {
                name: "t".into(),
                nodes: sizes.iter().zip(0u32..).map(|(g, id)| NumaNode {
                    id,
                    memory_bytes: (g + 4) * GI,
                    hugepages: vec![HugePagePool { page_size_kib: 1 << 20, num_pages: 2 }],
                    cpus: 1,
                    kind: MemoryKind::Dram,
                }).collect(),
                distances: None,
            };
            let config = Config::from_value(&serde_json::json!({"search": "bounded"})).unwrap();
            let mut mgr = Manager::new(machine, config, None, "s").unwrap();
            let pod = |uid: String, mem: u64, hp: u64| {
                let mut r = serde_json::json!({"cpu": "1", "memory": format!("{mem}Gi")});
                if hp > 0 {
                    r["hugepages-1Gi"] = serde_json::json!(format!("{hp}Gi"));
                }
                Pod::from_value(&serde_json::json!({"uid": uid, "containers": [
                    {"name": "c", "requests": r, "limits": r}]})).unwrap()
            };
            for (i, (mem, hp)) in pods.iter().enumerate() {
                let op = crate::lifecycle::Op::Admit {
                    pod: std::sync::Arc::new(pod(format!("p{i}"), *mem, *hp)),
                    hints: None,
                    start: false,
                    trace: false,
                };
                mgr.apply(&op).unwrap();
            }
            let req = crate::request::container_requested(&pod("x".into(), probe.0, probe.1).containers[0]).unwrap();
            let bounds = Bounds { level_budget: budget, max_hints, distances: None };
            for extent in [Extent::Preferred, Extent::Full] {
                let ms = &mgr.state().machine_state;
                let got = calculate_hints_bounded(ms, &req, None, extent, &bounds, mgr.id_map()).unwrap();
                let want = reference_bounded(ms, &req, None, extent, &bounds, mgr.id_map()).unwrap();
                prop_assert_eq!(got, want);
            }
        }
    }
}
