//! Placement beyond the kubelet. Every choice here is a named option, off by default; with all
//! of them off, nothing in this module runs and pymm is the kubelet byte for byte.
//!
//! - **`numa-allocation-strategy`** (Topology Manager option, after KEP-6007): where the
//!   kubelet's order leaves several node sets equally good (same width and, with
//!   `prefer-closest-numa-nodes`, the same average distance), the kubelet takes the lowest
//!   node ids; `most-allocated` takes the busiest set instead (pack) and `least-allocated` the
//!   emptiest (spread). The tie-break applies in exactly three places: the Topology Manager's
//!   merge (preferred and non-preferred hints alike, all policies), the memory manager's own
//!   pick of a default hint when the merge gives no affinity, and its pick of the hint that
//!   extends one whose nodes lack free memory. Scores: [`crate::topology::Scores`].
//! - **`restrict-to-cpu-numa-nodes`** (Topology Manager option, after kubernetes PR #138172):
//!   hints leave out CPU-less nodes (HBM in flat mode, CXL, GPU memory) unless the pod asks for
//!   them with the `pymm.io/memory-tier` annotation.
//! - **`memory-tiers`** (memory manager option): the annotation `pymm.io/memory-tier: dram |
//!   hbm | cxl | any` restricts a pod's nodes to that kind; without it, a pod uses the kind(s)
//!   of the machine's CPU nodes. An explicit tier is strict; the default one may be left by
//!   `admit-when-fits` when it is full.
//! - **`admit-when-fits`** (memory manager option): where the kubelet's Allocate fails
//!   although some valid set of nodes can hold the container (its own hint list names every
//!   such set: capacity, free memory and group rules), the container goes to the best of them:
//!   narrowest, then closest to the merged affinity, then by the strategy, then lowest ids.
//!   Under `restricted` and `single-numa-node` only sets inside the merged affinity count: the
//!   Topology Manager's verdict stands.
//! - **`spread-hugepages`** (memory manager option): a multi-node group takes its hugepages
//!   evenly from its nodes, not lowest node first ([`spread`]).

pub mod plan;
pub mod spread;
pub mod stranded;

use crate::config::Config;
use crate::error::{EngineError, Result};
use crate::hints::TopologyHint;
use crate::machine::{Machine, MemoryKind, TIER_ANNOTATION};
use crate::nodemask::{IdMap, NodeMask};
use crate::policy::MemoryOptions;
use crate::request::{Pod, Requested};
use crate::state::State;
use crate::topology::{AllocationStrategy, Policy, Scores};
use std::sync::Arc;
use stranded::Stranded;

/// Everything the options need to know, built once per manager.
#[derive(Debug, Clone)]
pub struct Placement {
    pub memory: MemoryOptions,
    pub strategy: AllocationStrategy,
    pub restrict_to_cpu: bool,
    pub topology_policy: Policy,
    map: IdMap,
    /// Positions with CPUs (empty when the machine reports no CPUs at all).
    cpu_nodes: NodeMask,
    kinds: Vec<MemoryKind>,
    /// By position.
    distances: Option<Vec<Vec<u64>>>,
}

impl Placement {
    pub fn new(machine: &Machine, config: &Config) -> Result<Placement> {
        let map = IdMap::new(machine.node_ids().map(i64::from).collect())?;
        if config.memory_options.spread_hugepages && !config.version.group_sum_validation() {
            // Kubelet 1.26 compares reserved and free per node at restart, and an even spread
            // differs from its lowest-first replay on every node of the group.
            return Err(EngineError::Config {
                message: "spread-hugepages needs kubelet_version \"1.32\" or \"1.38\": kubelet 1.26 would refuse the state file at restart".into(),
                key: Some("spread-hugepages".into()),
                suggestion: None,
            });
        }
        let mut cpu_nodes = NodeMask::EMPTY;
        for (p, n) in machine.nodes.iter().enumerate() {
            if n.cpus > 0 {
                cpu_nodes = cpu_nodes.or(NodeMask::from_raw(1 << p));
            }
        }
        Self::check_applies(machine, config, cpu_nodes)?;
        Ok(Placement {
            memory: config.memory_options,
            strategy: config.topology_options.numa_allocation_strategy,
            restrict_to_cpu: config.topology_options.restrict_to_cpu_numa_nodes,
            topology_policy: config.topology_policy,
            map,
            cpu_nodes,
            kinds: machine.nodes.iter().map(|n| n.kind).collect(),
            distances: machine.distances.clone(),
        })
    }

    /// An option that cannot apply to the machine is an error, not a silent change: without
    /// any node's memory kind, `memory-tiers` would reject every pod with a tier annotation;
    /// without any node's CPU count, `restrict-to-cpu-numa-nodes` could not tell CPU nodes
    /// from CPU-less ones.
    fn check_applies(machine: &Machine, config: &Config, cpu_nodes: NodeMask) -> Result<()> {
        let refuse = |key: &str, message: String| EngineError::Config {
            message,
            key: Some(key.into()),
            suggestion: None,
        };
        let kinds = machine.nodes.iter().any(|n| n.kind != MemoryKind::Unknown);
        if config.memory_options.memory_tiers && !machine.nodes.is_empty() && !kinds {
            return Err(refuse(
                "memory-tiers",
                format!(
                    "memory-tiers cannot apply to machine {:?}: none of its NUMA nodes has a memory kind (DRAM, HBM, CXL), so every pod with a {TIER_ANNOTATION} annotation would be rejected; give each node its kind",
                    machine.name
                ),
            ));
        }
        if config.topology_options.restrict_to_cpu_numa_nodes
            && !machine.nodes.is_empty()
            && cpu_nodes.is_empty()
        {
            return Err(refuse(
                "restrict-to-cpu-numa-nodes",
                format!(
                    "restrict-to-cpu-numa-nodes cannot apply to machine {:?}: none of its NUMA nodes reports CPUs, so CPU nodes cannot be told from CPU-less ones; give each node its cpus",
                    machine.name
                ),
            ));
        }
        Ok(())
    }

    fn tiers_active(&self) -> bool {
        self.memory.memory_tiers || self.restrict_to_cpu
    }

    fn of_kinds(&self, keep: impl Fn(MemoryKind) -> bool) -> NodeMask {
        let mut m = NodeMask::EMPTY;
        for (p, k) in self.kinds.iter().enumerate() {
            if keep(*k) {
                m = m.or(NodeMask::from_raw(1 << p));
            }
        }
        m
    }

    /// The nodes a pod may use, and whether that is strict (an explicit tier) or only the
    /// default; `None` when every node is allowed.
    pub fn allowed(&self, pod: &Pod) -> Option<(NodeMask, bool)> {
        if !self.tiers_active() {
            return None;
        }
        let all = self.map.all();
        if let Some(t) = pod.tier {
            let m = self.of_kinds(|k| t.admits(k));
            return (m != all).then_some((m, true));
        }
        let mut m = all;
        if self.memory.memory_tiers && !self.cpu_nodes.is_empty() {
            let cpu_kinds: Vec<MemoryKind> = self
                .cpu_nodes
                .iter()
                .map(|p| self.kinds[p as usize])
                .collect();
            m = m.and(self.of_kinds(|k| cpu_kinds.contains(&k)));
        }
        if self.restrict_to_cpu && !self.cpu_nodes.is_empty() {
            m = m.and(self.cpu_nodes);
        }
        (m != all).then_some((m, false))
    }

    pub fn uses_scores(&self) -> bool {
        self.strategy != AllocationStrategy::None
    }

    /// The memory manager's utilisation scores for the requested resources (and, for
    /// `least-stranded`, what each set would strand).
    pub fn scores(&self, state: &State, requested: &Requested) -> Scores {
        let n = self.map.len();
        let mut s = Scores {
            reserved: vec![0; n],
            allocatable: vec![0; n],
            extra: Vec::new(),
            stranded: None,
        };
        for (id, node) in &state.machine_state {
            let Some(p) = self.map.position(*id) else {
                continue;
            };
            for r in requested.keys() {
                if let Some(t) = crate::hints::table(&node.memory_map, r) {
                    s.reserved[p] = s.reserved[p].saturating_add(t.reserved);
                    s.allocatable[p] = s.allocatable[p].saturating_add(t.allocatable);
                }
            }
        }
        if self.strategy == AllocationStrategy::LeastStranded {
            s.stranded = Some(Arc::new(Stranded::new(state, &self.map, requested)));
        }
        s
    }

    /// The strategy's tie-break key for a set (lower is better; 0 without a strategy).
    pub fn tie(&self, scores: Option<&Scores>, m: NodeMask) -> u64 {
        scores.map_or(0, |s| s.key(self.strategy, m))
    }

    /// Mean distance between a set's nodes and the merged affinity's (0 without distances or
    /// affinity): how far a fallback set is from what the Topology Manager wanted.
    fn closeness(&self, m: NodeMask, to: Option<NodeMask>) -> u64 {
        let (Some(d), Some(to)) = (&self.distances, to) else {
            return 0;
        };
        let (mut sum, mut count) = (0u64, 0u64);
        for i in m.iter() {
            for j in to.iter() {
                sum = sum.saturating_add(d[i as usize][j as usize]);
                count += 1;
            }
        }
        sum.saturating_mul(1000).checked_div(count).unwrap_or(0)
    }

    /// `admit-when-fits`: the best set among the memory manager's hints (every valid set that
    /// can hold the request): narrowest, then closest to the merged affinity, then by the
    /// strategy, then the lowest ids. Under `restricted` and `single-numa-node` only sets
    /// inside the merged affinity count.
    pub fn fallback(
        &self,
        hints: &[TopologyHint],
        merged: Option<NodeMask>,
        scores: Option<&Scores>,
    ) -> Option<NodeMask> {
        let within = match self.topology_policy {
            Policy::Restricted | Policy::SingleNumaNode => merged,
            Policy::None | Policy::BestEffort => None,
        };
        // single-numa-node admits only single-node placements, whatever the merge said.
        let single = self.topology_policy == Policy::SingleNumaNode;
        hints
            .iter()
            .filter_map(|h| h.affinity)
            .filter(|m| within.is_none_or(|w| m.is_subset_of(w)))
            .filter(|m| !single || m.count() == 1)
            .min_by_key(|m| {
                (
                    m.count(),
                    self.closeness(*m, merged),
                    self.tie(scores, *m),
                    m.raw(),
                )
            })
    }
}
