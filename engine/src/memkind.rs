//! Which kind of memory a NUMA node holds (DRAM, HBM, CXL), from what the kernel reports about
//! it: its CPUs, its memory tier, HMAT and SLIT distances. The first step that reaches a verdict
//! wins:
//!
//! 1. A node with CPUs is DRAM (memoryless CPU nodes too: they are sockets or dies whose
//!    controllers carry no DIMMs, not a different memory technology).
//! 2. A node with neither CPUs nor memory is unknown.
//! 3. Memory tiers (the kernel's own verdict, which already folds in HMAT): a CPU-less node in
//!    a lower-numbered (faster) tier than every DRAM node is HBM; in a higher-numbered
//!    (slower) tier than every DRAM node it is CXL. The same tier gives no verdict.
//! 4. HMAT (`nodeN/access0/initiators`): read bandwidth above every DRAM node's is HBM;
//!    otherwise read latency above every DRAM node's is CXL. Otherwise no verdict.
//! 5. SLIT distances. `near` is the node's distance to the nearest CPU node and `remote` the
//!    largest distance between two CPU nodes (never less than the kernel's REMOTE_DISTANCE,
//!    20): `near <= 13` (within 30 % of local DRAM's 10) is on-package memory, HBM;
//!    `13 < near < remote` is nearer than a remote socket, a memory expander on a socket's
//!    link, CXL; farther, or no distances, is unknown (CXL behind a switch, persistent memory,
//!    or a socket with its CPUs offline).
//!
//! On the catalog machines this gives HBM for xeon-max-2s-hbm-flat (near 13), CXL for
//! spr-2s-cxl (near 14, remote 21) and DRAM everywhere else.

use crate::machine::MemoryKind;

/// The kernel's conventional distance of another socket (`include/linux/topology.h`).
pub const REMOTE_DISTANCE: u64 = 20;
/// 1.3x local: on-package HBM is reported at 13 on Xeon Max; off-package expanders start at 14.
pub const ON_PACKAGE_MAX_DISTANCE: u64 = 13;

/// The rule in one line, for `pymm topology`.
pub const RULE: &str = "kind: CPU node = DRAM; CPU-less node: faster memory tier or higher HMAT bandwidth than DRAM = HBM, slower tier or higher HMAT latency = CXL; else SLIT distance to nearest CPU node <= 13 = HBM, below the remote-socket distance = CXL, otherwise unknown";

/// What the kernel reports about one node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeFacts {
    pub cpus: u64,
    pub has_memory: bool,
    /// The node's memory tier (`memory_tierN`), where the kernel has tiers.
    pub tier: Option<i64>,
    /// HMAT read bandwidth (MB/s) and latency (ns) from the node's nearest initiators.
    pub read_bandwidth: Option<u64>,
    pub read_latency: Option<u64>,
}

/// The kind of `nodes[index]` and why. `distances` rows follow the order of `nodes`.
pub fn classify(
    index: usize,
    nodes: &[NodeFacts],
    distances: Option<&[Vec<u64>]>,
) -> (MemoryKind, String) {
    let node = &nodes[index];
    if node.cpus > 0 {
        return if node.has_memory {
            (MemoryKind::Dram, "has CPUs: socket-local memory".into())
        } else {
            (
                MemoryKind::Dram,
                "has CPUs but no memory (memoryless CPU node)".into(),
            )
        };
    }
    if !node.has_memory {
        return (MemoryKind::Unknown, "no CPUs and no memory".into());
    }
    let dram: Vec<&NodeFacts> = nodes
        .iter()
        .filter(|n| n.cpus > 0 && n.has_memory)
        .collect();
    let dram_tiers: Vec<i64> = dram.iter().filter_map(|n| n.tier).collect();
    if let (Some(tier), Some(lo), Some(hi)) =
        (node.tier, dram_tiers.iter().min(), dram_tiers.iter().max())
    {
        if tier < *lo {
            return (
                MemoryKind::Hbm,
                format!("CPU-less, memory tier {tier} faster than DRAM tier {lo}"),
            );
        }
        if tier > *hi {
            return (
                MemoryKind::Cxl,
                format!("CPU-less, memory tier {tier} slower than DRAM tier {hi}"),
            );
        }
    }
    let dram_bw = dram
        .iter()
        .filter_map(|n| n.read_bandwidth)
        .filter(|b| *b > 0)
        .max();
    if let (Some(bw), Some(best)) = (node.read_bandwidth, dram_bw) {
        if bw > best {
            return (
                MemoryKind::Hbm,
                format!("CPU-less, HMAT read bandwidth {bw} MB/s > DRAM {best} MB/s"),
            );
        }
    }
    let dram_lat = dram
        .iter()
        .filter_map(|n| n.read_latency)
        .filter(|l| *l > 0)
        .max();
    if let (Some(lat), Some(worst)) = (node.read_latency, dram_lat) {
        if lat > worst {
            return (
                MemoryKind::Cxl,
                format!("CPU-less, HMAT read latency {lat} ns > DRAM {worst} ns"),
            );
        }
    }
    let cpu_idx: Vec<usize> = (0..nodes.len()).filter(|i| nodes[*i].cpus > 0).collect();
    let (Some(d), false) = (distances, cpu_idx.is_empty()) else {
        return (
            MemoryKind::Unknown,
            "CPU-less memory with no tier, HMAT or distance evidence".into(),
        );
    };
    let near = cpu_idx
        .iter()
        .map(|i| d[index][*i])
        .min()
        .unwrap_or(u64::MAX);
    let remote = cpu_idx
        .iter()
        .flat_map(|i| {
            cpu_idx
                .iter()
                .filter(move |j| *j != i)
                .map(move |j| d[*i][*j])
        })
        .chain(std::iter::once(REMOTE_DISTANCE))
        .max()
        .unwrap_or(REMOTE_DISTANCE);
    if near <= ON_PACKAGE_MAX_DISTANCE {
        return (
            MemoryKind::Hbm,
            format!("CPU-less, distance {near} to nearest CPU node (on-package memory)"),
        );
    }
    if near < remote {
        return (
            MemoryKind::Cxl,
            format!(
                "CPU-less, distance {near} to nearest CPU node: beyond on-package, nearer than a remote socket ({remote})"
            ),
        );
    }
    (
        MemoryKind::Unknown,
        format!(
            "CPU-less, distance {near} to nearest CPU node is no nearer than a remote socket ({remote})"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(cpus: u64, memory: bool) -> NodeFacts {
        NodeFacts {
            cpus,
            has_memory: memory,
            ..NodeFacts::default()
        }
    }

    #[test]
    fn the_rule_in_order() {
        let d = vec![vec![10, 21, 13], vec![21, 10, 14], vec![13, 14, 10]];
        let nodes = [node(4, true), node(4, true), node(0, true)];
        assert_eq!(classify(0, &nodes, Some(&d)).0, MemoryKind::Dram);
        assert_eq!(classify(2, &nodes, Some(&d)).0, MemoryKind::Hbm);
        assert_eq!(classify(2, &nodes, None).0, MemoryKind::Unknown);
        let mut tiered = nodes.clone();
        for n in &mut tiered[..2] {
            n.tier = Some(4);
        }
        tiered[2].tier = Some(5);
        assert_eq!(classify(2, &tiered, Some(&d)).0, MemoryKind::Cxl);
        assert_eq!(classify(0, &[node(0, false)], None).0, MemoryKind::Unknown);
    }
}
