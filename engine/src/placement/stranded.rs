//! `numa-allocation-strategy=least-stranded`: among equally good node sets, the one that
//! strands the least memory for the workload's shapes.
//!
//! The shapes are the distinct requests of the containers the machine runs (each weighted by
//! how many run) and the request being placed. For a candidate set, the container is placed on
//! it as the kubelet would place it (its nodes filled lowest id first; a set of several nodes
//! becomes a group), and for each shape the memory no further container of that shape could
//! use is counted, in the spirit of [`crate::fragmentation`]'s metric but in closed form: a
//! node serving single-node allocations, and each group, holds `k` more of a shape where `k`
//! is the smallest of its free bytes over the shape's bytes per resource, and strands the rest
//! of its free bytes of those resources; unused nodes are counted together, as they can still
//! form any group. The key is the weighted sum (lower is better). Its cost is linear in the
//! containers the state holds (the shapes are counted at every decision) and in the nodes.

use crate::nodemask::{IdMap, NodeMask};
use crate::request::Requested;
use crate::state::State;
use std::collections::BTreeMap;

/// At most this many shapes count (the most frequent), so that a state of many different
/// containers keeps the key cheap.
const MAX_SHAPES: usize = 16;

#[derive(Debug, Clone, Default)]
pub struct Stranded {
    /// Resources in the order of the vectors below.
    resources: Vec<String>,
    /// Per node position: free bytes per resource.
    free: Vec<Vec<u64>>,
    /// Per node position: the group it serves (positions), `None` when unused, a single node
    /// when it serves single-node allocations.
    role: Vec<Option<NodeMask>>,
    /// The request being placed, per resource.
    request: Vec<u64>,
    /// (bytes per resource, weight).
    shapes: Vec<(Vec<u64>, u64)>,
}

impl Stranded {
    pub fn new(state: &State, map: &IdMap, request: &Requested) -> Stranded {
        let mut counts: BTreeMap<Requested, u64> = BTreeMap::new();
        for ctrs in state.entries.values() {
            for blocks in ctrs.values() {
                let mut shape = Requested::new();
                for b in blocks.iter().flatten().filter(|b| b.size > 0) {
                    *shape.entry(b.resource.clone()).or_default() += b.size;
                }
                if !shape.is_empty() {
                    *counts.entry(shape).or_default() += 1;
                }
            }
        }
        *counts.entry(request.clone()).or_default() += 1;
        let mut shapes: Vec<(Requested, u64)> = counts.into_iter().collect();
        shapes.sort_by_key(|s| std::cmp::Reverse(s.1));
        shapes.truncate(MAX_SHAPES);
        let mut resources: Vec<String> = request.keys().cloned().collect();
        for (s, _) in &shapes {
            for r in s.keys() {
                if !resources.contains(r) {
                    resources.push(r.clone());
                }
            }
        }
        let n = map.len();
        let mut free = vec![vec![0u64; resources.len()]; n];
        let mut role = vec![None; n];
        for (id, node) in &state.machine_state {
            let Some(p) = map.position(*id) else { continue };
            for (i, r) in resources.iter().enumerate() {
                free[p][i] = node.memory_map.get(r).map_or(0, |t| t.free);
            }
            if node.number_of_assignments > 0 {
                role[p] = map.mask(node.cells()).ok();
            }
        }
        let vector = |s: &Requested| -> Vec<u64> {
            resources
                .iter()
                .map(|r| s.get(r).copied().unwrap_or(0))
                .collect()
        };
        Stranded {
            request: vector(request),
            shapes: shapes.iter().map(|(s, w)| (vector(s), *w)).collect(),
            resources,
            free,
            role,
        }
    }

    /// The weighted stranded bytes after the request is placed on `m`.
    pub fn key(&self, m: NodeMask) -> u64 {
        let mut free = self.free.clone();
        let mut role = self.role.clone();
        for (i, want) in self.request.iter().enumerate() {
            let mut left = *want;
            for p in m.iter() {
                let take = free[p as usize][i].min(left);
                free[p as usize][i] -= take;
                left -= take;
            }
        }
        for p in m.iter() {
            role[p as usize] = Some(m);
        }
        // Units: each group (once), each single node, and all unused nodes together.
        let mut units: Vec<Vec<u64>> = Vec::new();
        let mut seen: Vec<NodeMask> = Vec::new();
        let mut unused = vec![0u64; self.resources.len()];
        for (p, r) in role.iter().enumerate() {
            match r {
                None => {
                    for (u, f) in unused.iter_mut().zip(&free[p]) {
                        *u = u.saturating_add(*f);
                    }
                }
                Some(g) if seen.contains(g) => {}
                Some(g) => {
                    seen.push(*g);
                    let mut sum = vec![0u64; self.resources.len()];
                    for q in g.iter() {
                        for (s, f) in sum.iter_mut().zip(&free[q as usize]) {
                            *s = s.saturating_add(*f);
                        }
                    }
                    units.push(sum);
                }
            }
        }
        units.push(unused);
        let mut total = 0u64;
        for (shape, weight) in &self.shapes {
            let mut stranded = 0u64;
            for u in &units {
                let k = shape
                    .iter()
                    .zip(u)
                    .filter(|(s, _)| **s > 0)
                    .map(|(s, f)| f / s)
                    .min()
                    .unwrap_or(0);
                for (s, f) in shape.iter().zip(u) {
                    if *s > 0 {
                        stranded = stranded.saturating_add(f - k * s);
                    }
                }
            }
            total = total.saturating_add(stranded.saturating_mul(*weight));
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Block, MemoryTable, NodeState};

    const GI: u64 = 1 << 30;

    fn node(free: u64, assignments: i64, cells: &[i64]) -> NodeState {
        NodeState {
            number_of_assignments: assignments,
            memory_map: [(
                "memory".to_string(),
                MemoryTable {
                    total: 16 * GI,
                    system_reserved: GI,
                    allocatable: 15 * GI,
                    reserved: 15 * GI - free,
                    free,
                },
            )]
            .into(),
            cells: Some(cells.to_vec()),
        }
    }

    fn running(state: &mut State, uid: &str, gib: u64, nodes: &[i64]) {
        state.set_blocks(
            uid,
            "c",
            vec![Block {
                numa_affinity: Some(nodes.to_vec()),
                resource: "memory".into(),
                size: gib * GI,
            }],
        );
    }

    #[test]
    fn the_set_that_leaves_whole_shapes_wins() {
        // Two nodes serving 4Gi pods: node 0 has 7Gi free, node 1 has 8Gi. The workload is
        // 4Gi pods. A 3Gi pod on node 0 leaves 4Gi there (one more 4Gi pod, nothing stranded)
        // and 8Gi on node 1 (two more): 0 stranded. On node 1 it would leave 7Gi and 5Gi:
        // 3 + 1 = 4Gi stranded.
        let mut state = State {
            machine_state: [(0, node(7 * GI, 2, &[0])), (1, node(8 * GI, 1, &[1]))].into(),
            ..State::default()
        };
        for (uid, n) in [("a", 0), ("b", 0), ("c", 1)] {
            running(&mut state, uid, 4, &[n]);
        }
        let map = IdMap::new(vec![0, 1]).unwrap();
        let req: Requested = [("memory".to_string(), 3 * GI)].into();
        let s = Stranded::new(&state, &map, &req);
        let on = |p: i64| s.key(NodeMask::from_positions([p]).unwrap());
        // Shapes: 4Gi (weight 3) and the 3Gi request (weight 1).
        // On node 0: 4Gi free and 8Gi free: 4Gi strands 0; 3Gi strands 1 + 2 = 3.
        assert_eq!(on(0), 3 * GI);
        // On node 1: 7Gi and 5Gi: 4Gi strands 3 + 1 (x3); 3Gi strands 1 + 2.
        assert_eq!(on(1), 4 * GI * 3 + 3 * GI);
        assert!(on(0) < on(1));
    }

    #[test]
    fn a_group_counts_as_one_unit_and_unused_nodes_together() {
        let mut state = State {
            machine_state: [
                (0, node(5 * GI, 1, &[0, 1])),
                (1, node(5 * GI, 1, &[0, 1])),
                (2, node(15 * GI, 0, &[2])),
            ]
            .into(),
            ..State::default()
        };
        running(&mut state, "g", 20, &[0, 1]);
        let map = IdMap::new(vec![0, 1, 2]).unwrap();
        let req: Requested = [("memory".to_string(), 10 * GI)].into();
        let s = Stranded::new(&state, &map, &req);
        // Into the group: 0 free there, 15Gi unused: 10Gi shape strands 5; 20Gi shape 15.
        let group = s.key(NodeMask::from_positions([0, 1]).unwrap());
        assert_eq!(group, 5 * GI + 15 * GI);
        // On node 2: the group keeps 10Gi (one 10Gi more), node 2 has 5Gi: 10Gi strands 5;
        // 20Gi strands 10 + 5.
        let alone = s.key(NodeMask::from_positions([2]).unwrap());
        assert_eq!(alone, 5 * GI + 15 * GI);
    }
}
