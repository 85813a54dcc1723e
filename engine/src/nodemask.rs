//! Sets of NUMA nodes, with the kubelet's `bitmask` semantics: "narrower" means fewer nodes and
//! then a lower numeric value, and masks are enumerated by size and then lexicographically.
//!
//! A [`NodeMask`] holds node *positions*: bit `i` is the `i`-th node of the machine in id order.
//! Node *ids* (what a user sees: sparse, up to 1023) are plain integers outside the engine's
//! core, and [`IdMap`] is the only way between the two. On the dense ids `0..n` the kubelet's
//! bitmask assumes, position `i` is id `i`.

use crate::error::{EngineError, Result};
use std::fmt;

/// The largest node id a mask can hold. The kubelet's mask is one `uint64` (ids 0-63); two
/// words cover machines up to 128 nodes (GB200 trays, large CXL systems) at the same cost.
pub const MAX_NODE_ID: u32 = 127;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct NodeMask(u128);

impl NodeMask {
    pub const EMPTY: NodeMask = NodeMask(0);

    /// The set of the given positions (not ids: see [`IdMap::mask`] for those).
    pub fn from_positions<I: IntoIterator<Item = i64>>(positions: I) -> Result<NodeMask> {
        let mut m = 0u128;
        for p in positions {
            if !(0..=MAX_NODE_ID as i64).contains(&p) {
                return Err(EngineError::machine(
                    None,
                    format!("bit number must be in range 0-{MAX_NODE_ID}"),
                ));
            }
            m |= 1 << p;
        }
        Ok(NodeMask(m))
    }

    pub const fn from_raw(v: u128) -> NodeMask {
        NodeMask(v)
    }
    pub const fn raw(self) -> u128 {
        self.0
    }
    pub const fn count(self) -> u32 {
        self.0.count_ones()
    }
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub const fn and(self, o: NodeMask) -> NodeMask {
        NodeMask(self.0 & o.0)
    }
    pub const fn or(self, o: NodeMask) -> NodeMask {
        NodeMask(self.0 | o.0)
    }
    pub const fn has(self, position: u32) -> bool {
        position <= MAX_NODE_ID && self.0 & (1 << position) != 0
    }
    pub const fn is_subset_of(self, o: NodeMask) -> bool {
        self.0 & !o.0 == 0
    }
    /// `IsNarrowerThan`: fewer bits, or as many bits and a lower value.
    pub fn is_narrower_than(self, o: NodeMask) -> bool {
        let (a, b) = (self.count(), o.count());
        a < b || (a == b && self.0 < o.0)
    }
    /// Ascending positions.
    pub fn iter(self) -> Positions {
        Positions(self.0)
    }
    pub fn positions(self) -> Vec<i64> {
        self.iter().map(i64::from).collect()
    }
}

/// Ascending positions of a mask.
pub struct Positions(u128);
impl Iterator for Positions {
    type Item = u32;
    fn next(&mut self) -> Option<u32> {
        if self.0 == 0 {
            return None;
        }
        let b = self.0.trailing_zeros();
        self.0 &= self.0 - 1;
        Some(b)
    }
}

impl fmt::Debug for NodeMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// The highest NUMA node id a machine may have (Linux `MAX_NUMNODES` - 1).
pub const MAX_MACHINE_NODE_ID: i64 = 1023;
/// The most NUMA nodes one machine may have: a node set is one 128-bit word.
pub const MAX_NODES: usize = 128;

/// A machine's node ids in ascending order. Node sets are masks over *positions* in this list:
/// bit `i` is the `i`-th node. Because positions follow ids, every order the kubelet defines
/// on id masks (narrower, lower value, lexicographic) is the same on position masks, so ids up
/// to 1023 fit in one 128-bit word as long as the machine has at most 128 nodes. On a machine
/// with ids `0..n` the map is the identity and masks are the kubelet's bitmasks exactly.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IdMap {
    ids: Vec<i64>,
    dense: bool,
}

impl IdMap {
    /// `ids` must be ascending and unique.
    pub fn new(ids: Vec<i64>) -> Result<IdMap> {
        if ids.len() > MAX_NODES {
            return Err(EngineError::machine(
                None,
                format!(
                    "{} NUMA nodes is more than the {MAX_NODES} pymm supports",
                    ids.len()
                ),
            ));
        }
        if ids.windows(2).any(|w| w[0] >= w[1]) {
            return Err(EngineError::machine(
                None,
                "NUMA node ids must be ascending and unique",
            ));
        }
        let dense = ids.iter().enumerate().all(|(p, id)| p as i64 == *id);
        Ok(IdMap { ids, dense })
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Every node of the machine.
    pub fn all(&self) -> NodeMask {
        if self.ids.len() == 128 {
            NodeMask(u128::MAX)
        } else {
            NodeMask((1u128 << self.ids.len()) - 1)
        }
    }

    pub fn position(&self, id: i64) -> Option<usize> {
        if self.dense {
            return (0..self.ids.len() as i64)
                .contains(&id)
                .then_some(id as usize);
        }
        self.ids.binary_search(&id).ok()
    }

    /// The set of the given node ids; an id the machine does not have is an error.
    pub fn mask(&self, ids: &[i64]) -> Result<NodeMask> {
        let mut m = 0u128;
        for id in ids {
            let p = self.position(*id).ok_or_else(|| {
                EngineError::machine(None, format!("NUMA node {id} is not on this machine"))
            })?;
            m |= 1 << p;
        }
        Ok(NodeMask(m))
    }

    /// The node ids of a set, ascending.
    pub fn ids(&self, m: NodeMask) -> Vec<i64> {
        m.iter().map(|p| self.ids[p as usize]).collect()
    }

    /// The machine's node ids, ascending.
    pub fn all_ids(&self) -> &[i64] {
        &self.ids
    }
}

/// Visits every non-empty combination of `n` positions in the kubelet's order: by size, then
/// lexicographically (`{0},{1},{2},{0,1},{0,2},{1,2},{0,1,2}`). The callback receives the
/// combination as a mask over positions `0..n` and may stop the walk by returning `false`.
pub fn for_each_combination(n: usize, min_size: usize, mut f: impl FnMut(u128) -> bool) {
    for k in min_size.max(1)..=n {
        if !for_each_combination_of_size(n, k, &mut f) {
            return;
        }
    }
}

/// The combinations of exactly `k` of `n` positions, lexicographically. Returns `false` when
/// the callback stopped the walk.
pub fn for_each_combination_of_size(n: usize, k: usize, f: &mut impl FnMut(u128) -> bool) -> bool {
    if k == 0 || k > n {
        return true;
    }
    let mut idx = [0usize; 128];
    for (i, slot) in idx.iter_mut().enumerate().take(k) {
        *slot = i;
    }
    loop {
        let mut m = 0u128;
        for &i in &idx[..k] {
            m |= 1 << i;
        }
        if !f(m) {
            return false;
        }
        // Advance: bump the rightmost index that can still move, reset the ones after it.
        let Some(i) = (0..k).rev().find(|&i| idx[i] < n - k + i) else {
            return true;
        };
        idx[i] += 1;
        for j in i + 1..k {
            idx[j] = idx[j - 1] + 1;
        }
    }
}

/// `n choose k`, saturating.
pub fn binomial(n: usize, k: usize) -> u128 {
    if k > n {
        return 0;
    }
    let k = k.min(n - k);
    let mut r: u128 = 1;
    for i in 0..k {
        r = r.saturating_mul((n - i) as u128) / (i as u128 + 1);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_iteration_order() {
        let mut seen = vec![];
        for_each_combination(3, 1, |m| {
            seen.push(m);
            true
        });
        assert_eq!(seen, vec![0b001, 0b010, 0b100, 0b011, 0b101, 0b110, 0b111]);
        let mut four = vec![];
        for_each_combination(4, 2, |m| {
            if m.count_ones() == 2 {
                four.push(NodeMask::from_raw(m).positions());
            }
            true
        });
        // {0,3} precedes {1,2} lexicographically even though its value is larger.
        assert_eq!(
            four,
            vec![
                vec![0, 1],
                vec![0, 2],
                vec![0, 3],
                vec![1, 2],
                vec![1, 3],
                vec![2, 3]
            ]
        );
    }

    #[test]
    fn combination_count_is_two_to_the_n_minus_one() {
        for n in 1..=10 {
            let mut c = 0u64;
            for_each_combination(n, 1, |_| {
                c += 1;
                true
            });
            assert_eq!(c, (1 << n) - 1);
        }
    }

    #[test]
    fn binomials() {
        assert_eq!(binomial(16, 8), 12870);
        assert_eq!(binomial(64, 1), 64);
        assert_eq!(binomial(34, 4), 46376);
        assert_eq!(binomial(3, 5), 0);
    }

    #[test]
    fn narrower_and_range() {
        let a = NodeMask::from_positions([0, 3]).unwrap();
        let b = NodeMask::from_positions([1, 2]).unwrap();
        assert!(b.is_narrower_than(a));
        assert!(NodeMask::from_positions([2]).unwrap().is_narrower_than(b));
        assert!(NodeMask::from_positions([127]).is_ok());
        assert!(NodeMask::from_positions([128]).is_err());
        assert!(NodeMask::from_positions([-1]).is_err());
        assert_eq!(a.iter().collect::<Vec<_>>(), vec![0, 3]);
    }
}
