//! Topology Manager: merging provider hints and the policy verdict (reference §5).
//!
//! The kubelet folds `compare()` over the cartesian product of all hint lists, which costs the
//! product of their lengths (255^2 at 8 nodes for memory + hugepages, 65535^2 at 16). That fold
//! is a minimum under a total order of (preferred, mask): a preferred hint beats any
//! non-preferred one, preferred hints rank by `better()`, and non-preferred ones by their
//! distance from `bestNonPreferredAffinityCount` and then `better()`. So the merge is computed
//! as that minimum over the set of merged masks that can occur, without the product:
//! - a merged hint is preferred only when every hint in the permutation is preferred and every
//!   non-nil mask is the same mask, so the preferred candidates are the masks offered as
//!   preferred by every list (or a preferred nil);
//! - the non-preferred candidates are all reachable ANDs, found by a walk over distinct partial
//!   ANDs when the lists are short, and by an AND-convolution (superset-sum transforms over the
//!   nodes) when they are long.

use crate::error::{EngineError, Result};
use crate::hints::{ProviderHints, TopologyHint};
use crate::nodemask::NodeMask;
use std::collections::{BTreeMap, HashSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    None,
    BestEffort,
    Restricted,
    SingleNumaNode,
}

impl Policy {
    pub fn parse(s: &str) -> Result<Policy> {
        Ok(match s {
            "none" => Policy::None,
            "best-effort" => Policy::BestEffort,
            "restricted" => Policy::Restricted,
            "single-numa-node" => Policy::SingleNumaNode,
            other => {
                return Err(EngineError::config(format!(
                    "unknown policy: \"{other}\" (expected none, best-effort, restricted or single-numa-node)"
                )))
            }
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::None => "none",
            Policy::BestEffort => "best-effort",
            Policy::Restricted => "restricted",
            Policy::SingleNumaNode => "single-numa-node",
        }
    }
}

/// What the merge needs to know about the machine.
#[derive(Debug, Clone)]
pub struct MergeContext {
    /// All NUMA nodes of the machine.
    pub default: NodeMask,
    /// `prefer-closest-numa-nodes`, with the distance matrix indexed by node position.
    pub closest: Option<Vec<Vec<u64>>>,
    /// `numa-allocation-strategy` (pymm's, after KEP-6007): how the last tie is broken.
    pub strategy: AllocationStrategy,
    /// The providers' utilisation scores, present when `strategy` needs them.
    pub scores: Option<Scores>,
}

/// Utilisation scores of node sets (KEP-6007): the memory manager's score of a set is
/// `max(1, reserved * 100 / allocatable)` over its nodes and the requested resources; a
/// caller's provider may score its own hints. The merge averages the scores it has.
#[derive(Debug, Clone, Default)]
pub struct Scores {
    /// Per node position, summed over the requested resources.
    pub reserved: Vec<u64>,
    pub allocatable: Vec<u64>,
    /// Scores other providers gave to exact node sets (percent).
    pub extra: Vec<(NodeMask, f64)>,
    /// `least-stranded`: what each set would strand for the workload's shapes.
    pub stranded: Option<std::sync::Arc<crate::placement::stranded::Stranded>>,
}

impl Scores {
    /// The strategy's tie-break key for a set (lower is better; 0 without a strategy).
    pub fn key(&self, strategy: AllocationStrategy, m: NodeMask) -> u64 {
        match strategy {
            AllocationStrategy::None => 0,
            AllocationStrategy::LeastAllocated => self.score(m),
            AllocationStrategy::MostAllocated => u64::MAX - self.score(m),
            AllocationStrategy::LeastStranded => self.stranded.as_ref().map_or(0, |s| s.key(m)),
        }
    }

    /// The score of a node set in thousandths of a percent (so that keys stay integers).
    pub fn score(&self, m: NodeMask) -> u64 {
        let (mut r, mut a) = (0u128, 0u128);
        for p in m.iter() {
            r += u128::from(self.reserved.get(p as usize).copied().unwrap_or(0));
            a += u128::from(self.allocatable.get(p as usize).copied().unwrap_or(0));
        }
        let memory = if a == 0 {
            1.0
        } else {
            ((r * 100) as f64 / a as f64).max(1.0)
        };
        let (mut sum, mut count) = (memory, 1.0);
        for (mask, s) in &self.extra {
            if *mask == m {
                sum += s;
                count += 1.0;
            }
        }
        (sum / count * 1000.0).round() as u64
    }
}

impl MergeContext {
    /// A context with no pymm options: the kubelet's merge.
    pub fn plain(default: NodeMask, closest: Option<Vec<Vec<u64>>>) -> MergeContext {
        MergeContext {
            default,
            closest,
            strategy: AllocationStrategy::None,
            scores: None,
        }
    }

    /// The strategy's tie-break: 0 for every set without a strategy (the kubelet's order
    /// then falls to the lower value), else lower is better.
    pub fn tie(&self, m: NodeMask) -> u64 {
        let Some(s) = &self.scores else {
            return 0;
        };
        s.key(self.strategy, m)
    }

    /// `better()`'s ordering as a key: narrower first; with prefer-closest, among equal sizes
    /// the lower average distance (the sum, as the size is equal); with an allocation
    /// strategy, the utilisation score; then the lower value.
    fn better_key(&self, m: NodeMask) -> (u32, u64, u64, u128) {
        let dist = match &self.closest {
            None => 0,
            Some(d) => {
                let mut s = 0u64;
                for i in m.iter() {
                    for j in m.iter() {
                        let x = d.get(i as usize).and_then(|r| r.get(j as usize));
                        s = s.saturating_add(x.copied().unwrap_or(0));
                    }
                }
                s
            }
        };
        (m.count(), dist, self.tie(m), m.raw())
    }
}

static NIL_PREFERRED: [TopologyHint; 1] = [TopologyHint {
    affinity: None,
    preferred: true,
}];
static NIL_NOT_PREFERRED: [TopologyHint; 1] = [TopologyHint {
    affinity: None,
    preferred: false,
}];

/// `filterProvidersHints`: one hint list per (provider, resource).
pub fn provider_lists<'a>(providers: &[&'a ProviderHints]) -> Vec<&'a [TopologyHint]> {
    let mut lists: Vec<&'a [TopologyHint]> = Vec::new();
    for p in providers {
        match p {
            None => lists.push(&NIL_PREFERRED),
            Some(m) if m.is_empty() => lists.push(&NIL_PREFERRED),
            Some(m) => {
                for (_, l) in m {
                    match l {
                        None => lists.push(&NIL_PREFERRED),
                        Some(l) if l.is_empty() => lists.push(&NIL_NOT_PREFERRED),
                        Some(l) => lists.push(l.as_slice()),
                    }
                }
            }
        }
    }
    lists
}

fn same_list(a: &[TopologyHint], b: &[TopologyHint]) -> bool {
    std::ptr::eq(a, b) || a == b
}

fn preferred_masks(l: &[TopologyHint]) -> impl Iterator<Item = NodeMask> + '_ {
    l.iter().filter(|h| h.preferred).filter_map(|h| h.affinity)
}

/// The best preferred merged hint, if any permutation yields one.
fn best_preferred(lists: &[&[TopologyHint]], ctx: &MergeContext) -> Option<NodeMask> {
    // Identical lists (memory and hugepages get the same one) cannot change which masks all
    // lists prefer.
    let mut distinct: Vec<&[TopologyHint]> = Vec::new();
    for l in lists {
        if !distinct.iter().any(|d| same_list(d, l)) {
            distinct.push(l);
        }
    }
    let wild = |l: &[TopologyHint]| l.iter().any(|h| h.affinity.is_none() && h.preferred);
    let mut best: Option<((u32, u64, u64, u128), NodeMask)> = None;
    let mut consider = |m: NodeMask| {
        let merged = m.and(ctx.default);
        if merged.is_empty() {
            return;
        }
        let k = ctx.better_key(merged);
        if best.is_none_or(|(bk, _)| k < bk) {
            best = Some((k, merged));
        }
    };
    let strict: Vec<&[TopologyHint]> = distinct.iter().copied().filter(|l| !wild(l)).collect();
    if strict.is_empty() {
        // Every list accepts "any": the all-nil permutation gives the default mask, and any
        // preferred mask of one list combines with nil everywhere else.
        consider(ctx.default);
        for l in &distinct {
            preferred_masks(l).for_each(&mut consider);
        }
    } else {
        let sets: Vec<Option<HashSet<NodeMask>>> = strict
            .iter()
            .map(|l| (l.len() > 32).then(|| preferred_masks(l).collect()))
            .collect();
        let (first, rest) = strict.split_first()?;
        'cand: for m in preferred_masks(first) {
            for (i, l) in rest.iter().enumerate() {
                let ok = match &sets[i + 1] {
                    Some(s) => s.contains(&m),
                    None => preferred_masks(l).any(|x| x == m),
                };
                if !ok {
                    continue 'cand;
                }
            }
            consider(m);
        }
    }
    best.map(|(_, m)| m)
}

/// Every non-empty mask that `default AND (one mask per list)` can produce.
fn reachable_ands(lists: &[&[TopologyHint]], default: NodeMask) -> Vec<NodeMask> {
    let sets: Vec<Vec<NodeMask>> = lists
        .iter()
        .map(|l| {
            let mut v: Vec<NodeMask> = l
                .iter()
                .map(|h| h.affinity.unwrap_or(default).and(default))
                .collect();
            v.sort_unstable();
            v.dedup();
            v
        })
        .collect();
    let positions: Vec<u32> = default.iter().collect();
    let mut work: u128 = 1;
    for s in &sets {
        work = work.saturating_mul(s.len() as u128);
    }
    if work > 1 << 18 && positions.len() <= 20 && sets.len() <= 6 {
        return and_convolution(&sets, &positions);
    }
    let mut cur: Vec<NodeMask> = vec![default];
    for s in &sets {
        let mut next: Vec<NodeMask> = Vec::with_capacity(cur.len() * s.len());
        for a in &cur {
            for b in s {
                next.push(a.and(*b));
            }
        }
        next.sort_unstable();
        next.dedup();
        cur = next;
    }
    cur.retain(|m| !m.is_empty());
    cur
}

/// Reachable ANDs through superset-sum transforms: with F_i(X) = #{s in list i : s ⊇ X},
/// the number of permutations whose AND is exactly X is the Möbius inverse of Π F_i. Counts
/// are kept modulo 2^128, exact while the product of list lengths stays below that.
fn and_convolution(sets: &[Vec<NodeMask>], positions: &[u32]) -> Vec<NodeMask> {
    let n = positions.len();
    let size = 1usize << n;
    let compress = |m: NodeMask| {
        let mut x = 0usize;
        for (p, id) in positions.iter().enumerate() {
            if m.has(*id) {
                x |= 1 << p;
            }
        }
        x
    };
    let superset_zeta = |f: &mut [u128]| {
        for b in 0..n {
            for x in 0..size {
                if x & (1 << b) == 0 {
                    f[x] = f[x].wrapping_add(f[x | (1 << b)]);
                }
            }
        }
    };
    let mut prod = vec![1u128; size];
    let mut f = vec![0u128; size];
    for s in sets {
        f.iter_mut().for_each(|v| *v = 0);
        for m in s {
            f[compress(*m)] = 1;
        }
        superset_zeta(&mut f);
        for (p, v) in prod.iter_mut().zip(&f) {
            *p = p.wrapping_mul(*v);
        }
    }
    for b in 0..n {
        for x in 0..size {
            if x & (1 << b) == 0 {
                prod[x] = prod[x].wrapping_sub(prod[x | (1 << b)]);
            }
        }
    }
    let mut out = Vec::new();
    for (x, c) in prod.iter().enumerate().skip(1) {
        if *c != 0 {
            let mut m = 0u128;
            for (p, id) in positions.iter().enumerate() {
                if x & (1 << p) != 0 {
                    m |= 1 << id;
                }
            }
            out.push(NodeMask::from_raw(m));
        }
    }
    out
}

/// `HintMerger.Merge`: the hint the kubelet's fold over all permutations ends with.
pub fn merge(lists: &[&[TopologyHint]], ctx: &MergeContext) -> TopologyHint {
    if let Some(m) = best_preferred(lists, ctx) {
        return TopologyHint::new(m, true);
    }
    if lists.iter().any(|l| l.is_empty()) {
        // No permutation at all.
        return TopologyHint::new(ctx.default, false);
    }
    let b = lists
        .iter()
        .map(|l| {
            l.iter()
                .filter_map(|h| h.affinity)
                .map(NodeMask::count)
                .min()
                .unwrap_or(0)
        })
        .max()
        .unwrap_or(0);
    let rank = |m: NodeMask| {
        let c = m.count();
        let k = ctx.better_key(m);
        if c == b {
            (0u8, 0u32, k)
        } else if c < b {
            (1, b - c, k)
        } else {
            (2, 0, k)
        }
    };
    reachable_ands(lists, ctx.default)
        .into_iter()
        .min_by_key(|m| rank(*m))
        .map_or(TopologyHint::new(ctx.default, false), |m| {
            TopologyHint::new(m, false)
        })
}

/// `single-numa-node` keeps preferred hints that are nil or name exactly one node.
fn single_numa_filter(lists: &[&[TopologyHint]]) -> Vec<Vec<TopologyHint>> {
    lists
        .iter()
        .map(|l| {
            l.iter()
                .filter(|h| h.preferred && h.affinity.is_none_or(|m| m.count() == 1))
                .copied()
                .collect()
        })
        .collect()
}

/// The policy's merged hint and admit verdict for the providers' answers.
pub fn policy_merge(
    policy: Policy,
    providers: &[&ProviderHints],
    ctx: &MergeContext,
) -> (TopologyHint, bool) {
    match policy {
        Policy::None => (
            TopologyHint {
                affinity: None,
                preferred: false,
            },
            true,
        ),
        Policy::BestEffort => (merge(&provider_lists(providers), ctx), true),
        Policy::Restricted => {
            let h = merge(&provider_lists(providers), ctx);
            (h, h.preferred)
        }
        Policy::SingleNumaNode => {
            let filtered = single_numa_filter(&provider_lists(providers));
            let lists: Vec<&[TopologyHint]> = filtered.iter().map(Vec::as_slice).collect();
            // single-numa-node merges without distances (one node has none), but the
            // allocation strategy still breaks ties between single nodes.
            let plain = MergeContext {
                default: ctx.default,
                closest: None,
                strategy: ctx.strategy,
                scores: ctx.scores.clone(),
            };
            let mut h = merge(&lists, &plain);
            if h.affinity == Some(ctx.default) {
                h.affinity = None;
            }
            (h, h.preferred)
        }
    }
}

/// Among equally good masks, which one the merge picks (KEP-6007's proposal, pymm-only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AllocationStrategy {
    /// The kubelet's: the lowest node ids.
    #[default]
    None,
    /// The most used nodes first (pack).
    MostAllocated,
    /// The least used nodes first (spread).
    LeastAllocated,
    /// The set that strands the least memory for the workload's shapes
    /// ([`crate::placement::stranded`]).
    LeastStranded,
}

impl AllocationStrategy {
    pub fn as_str(self) -> &'static str {
        match self {
            AllocationStrategy::None => "none",
            AllocationStrategy::MostAllocated => "most-allocated",
            AllocationStrategy::LeastAllocated => "least-allocated",
            AllocationStrategy::LeastStranded => "least-stranded",
        }
    }
}

/// Topology Manager policy options, parsed and checked as the kubelet does; the last two are
/// pymm's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyOptions {
    pub prefer_closest_numa_nodes: bool,
    pub max_allowable_numa_nodes: usize,
    pub numa_allocation_strategy: AllocationStrategy,
    pub restrict_to_cpu_numa_nodes: bool,
}

impl Default for PolicyOptions {
    fn default() -> Self {
        PolicyOptions {
            prefer_closest_numa_nodes: false,
            max_allowable_numa_nodes: 8,
            numa_allocation_strategy: AllocationStrategy::None,
            restrict_to_cpu_numa_nodes: false,
        }
    }
}

/// Go's `strconv.ParseBool`.
pub fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// A boolean option's value, with the kubelet's error text.
pub fn bool_option(k: &str, v: &str) -> Result<bool> {
    parse_go_bool(v).ok_or_else(|| EngineError::Config {
        message: format!(
            "bad value for option {k:?}: strconv.ParseBool: parsing {v:?}: invalid syntax"
        ),
        key: Some(k.to_string()),
        suggestion: None,
    })
}

const TOPOLOGY_OPTIONS: [&str; 4] = [
    "prefer-closest-numa-nodes",
    "max-allowable-numa-nodes",
    "numa-allocation-strategy",
    "restrict-to-cpu-numa-nodes",
];

impl PolicyOptions {
    /// `with_max_allowable` is false for kubelet 1.26, which has no such option.
    pub fn parse(
        opts: &BTreeMap<String, String>,
        with_max_allowable: bool,
    ) -> Result<PolicyOptions> {
        let mut o = PolicyOptions::default();
        for (k, v) in opts {
            match k.as_str() {
                "prefer-closest-numa-nodes" => o.prefer_closest_numa_nodes = bool_option(k, v)?,
                "max-allowable-numa-nodes" if with_max_allowable => {
                    let n: i64 = v.parse().map_err(|_| {
                        EngineError::config(format!(
                            "unable to convert policy option to integer {k:?}: strconv.Atoi: parsing {v:?}: invalid syntax"
                        ))
                    })?;
                    if n < 8 {
                        return Err(EngineError::config(
                            "the minimum value of \"max-allowable-numa-nodes\" should not be less than 8",
                        ));
                    }
                    o.max_allowable_numa_nodes = usize::try_from(n).unwrap_or(usize::MAX);
                }
                "numa-allocation-strategy" => {
                    o.numa_allocation_strategy = match v.as_str() {
                        "none" => AllocationStrategy::None,
                        "most-allocated" => AllocationStrategy::MostAllocated,
                        "least-allocated" => AllocationStrategy::LeastAllocated,
                        "least-stranded" => AllocationStrategy::LeastStranded,
                        other => {
                            return Err(EngineError::Config {
                                message: format!("bad value for option {k:?}: {other:?} (expected none, most-allocated, least-allocated or least-stranded)"),
                                key: Some(k.clone()),
                                suggestion: None,
                            })
                        }
                    }
                }
                "restrict-to-cpu-numa-nodes" => o.restrict_to_cpu_numa_nodes = bool_option(k, v)?,
                "max-allowable-numa-nodes" => {
                    // Only the kubelet version lacks it: no misspelling to suggest.
                    return Err(EngineError::Config {
                        message: format!("unknown Topology Manager Policy option: {k:?} (kubelet 1.26 does not have it; kubelet_version \"1.32\" and \"1.38\" do)"),
                        key: Some(k.clone()),
                        suggestion: None,
                    });
                }
                _ => {
                    // The kubelet's text first, so operators can search for it.
                    let suggestion = crate::error::closest(k, &TOPOLOGY_OPTIONS);
                    let tail = suggestion
                        .as_ref()
                        .map_or(String::new(), |s| format!(" (did you mean {s:?}?)"));
                    return Err(EngineError::Config {
                        message: format!("unknown Topology Manager Policy option: {k:?}{tail}"),
                        key: Some(k.clone()),
                        suggestion,
                    });
                }
            }
        }
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(ids: &[i64], p: bool) -> TopologyHint {
        TopologyHint::new(NodeMask::from_positions(ids.iter().copied()).unwrap(), p)
    }

    /// The kubelet's fold over the cartesian product, written the slow way, to check `merge`.
    fn brute(lists: &[&[TopologyHint]], ctx: &MergeContext) -> TopologyHint {
        let b = lists
            .iter()
            .map(|l| {
                l.iter()
                    .filter_map(|h| h.affinity)
                    .map(NodeMask::count)
                    .min()
                    .unwrap_or(0)
            })
            .max()
            .unwrap_or(0);
        let better = |cur: TopologyHint, cand: TopologyHint| {
            let (c, d) = (cur.affinity.unwrap(), cand.affinity.unwrap());
            if c == d {
                return cur;
            }
            if ctx.better_key(d) < ctx.better_key(c) {
                cand
            } else {
                cur
            }
        };
        let mut best: Option<TopologyHint> = None;
        let mut idx = vec![0usize; lists.len()];
        if lists.iter().any(|l| l.is_empty()) {
            return TopologyHint::new(ctx.default, false);
        }
        loop {
            let perm: Vec<TopologyHint> = idx.iter().zip(lists).map(|(i, l)| l[*i]).collect();
            let affs: Vec<NodeMask> = perm.iter().filter_map(|h| h.affinity).collect();
            let preferred =
                perm.iter().all(|h| h.preferred) && affs.iter().all(|m| Some(m) == affs.first());
            let merged = affs.iter().fold(ctx.default, |a, m| a.and(*m));
            let cand = TopologyHint::new(merged, preferred);
            if merged.count() > 0 {
                best = Some(match best {
                    None => cand,
                    Some(cur) if cand.preferred && !cur.preferred => cand,
                    Some(cur) if !cand.preferred && cur.preferred => cur,
                    Some(cur) if cur.preferred => better(cur, cand),
                    Some(cur) => {
                        let (cc, dc) = (cur.affinity.unwrap().count(), merged.count());
                        if cc > b {
                            better(cur, cand)
                        } else if cc == b {
                            if dc == b {
                                better(cur, cand)
                            } else {
                                cur
                            }
                        } else if dc > b {
                            cur
                        } else if dc == b || dc > cc {
                            cand
                        } else if dc < cc {
                            cur
                        } else {
                            better(cur, cand)
                        }
                    }
                });
            }
            let mut i = 0;
            loop {
                if i == idx.len() {
                    return best.unwrap_or(TopologyHint::new(ctx.default, false));
                }
                idx[i] += 1;
                if idx[i] < lists[i].len() {
                    break;
                }
                idx[i] = 0;
                i += 1;
            }
        }
    }

    #[test]
    fn merge_matches_the_cartesian_fold_on_awkward_lists() {
        let ctx = MergeContext::plain(NodeMask::from_raw(0b1111), None);
        let a = vec![
            h(&[2, 3], false),
            h(&[0, 1, 2], false),
            h(&[0, 1, 3], false),
        ];
        let b = a.clone();
        let lists: Vec<&[TopologyHint]> = vec![&a, &b];
        let got = merge(&lists, &ctx);
        assert_eq!(got, brute(&lists, &ctx));
        // {0,1} only appears as an AND of two different masks, and wins.
        assert_eq!(got, h(&[0, 1], false));
    }
}
