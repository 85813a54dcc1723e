//! The machine: NUMA nodes with their memory, hugepage pools and distances. It mirrors the
//! fields of cadvisor's `MachineInfo.Topology` that the kubelet reads, plus what pymm's own
//! policies use (CPU count, memory kind).

use crate::error::{EngineError, Result};
use crate::nodemask::{MAX_MACHINE_NODE_ID, MAX_NODES};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HugePagePool {
    pub page_size_kib: u64,
    pub num_pages: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NumaNode {
    pub id: u32,
    #[serde(alias = "memory")]
    pub memory_bytes: u64,
    #[serde(default)]
    pub hugepages: Vec<HugePagePool>,
    #[serde(default)]
    pub cpus: u32,
    #[serde(default)]
    pub kind: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    #[serde(default)]
    pub name: String,
    pub nodes: Vec<NumaNode>,
    /// SLIT rows in the order of `nodes`.
    #[serde(default)]
    pub distances: Option<Vec<Vec<u64>>>,
}

impl Machine {
    /// Checks the description and sorts nodes by id (distance rows move with their node).
    pub fn validated(mut self) -> Result<Machine> {
        if self.nodes.is_empty() {
            return Err(EngineError::Machine(
                "a machine needs at least one NUMA node".into(),
            ));
        }
        let n = self.nodes.len();
        if let Some(d) = &self.distances {
            if d.len() != n || d.iter().any(|r| r.len() != n) {
                return Err(EngineError::Machine(format!(
                    "the distance matrix must be {n} x {n}, one row and column per NUMA node"
                )));
            }
        }
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&i| self.nodes[i].id);
        for w in order.windows(2) {
            if self.nodes[w[0]].id == self.nodes[w[1]].id {
                return Err(EngineError::Machine(format!(
                    "NUMA node {} appears twice",
                    self.nodes[w[0]].id
                )));
            }
        }
        if let Some(last) = order.last() {
            if i64::from(self.nodes[*last].id) > MAX_MACHINE_NODE_ID {
                return Err(EngineError::Machine(format!(
                    "NUMA node id {} is out of range: ids must be 0-{MAX_MACHINE_NODE_ID}",
                    self.nodes[*last].id
                )));
            }
        }
        if n > MAX_NODES {
            return Err(EngineError::Machine(format!(
                "{n} NUMA nodes is more than the {MAX_NODES} pymm supports"
            )));
        }
        for node in &self.nodes {
            for p in &node.hugepages {
                if p.page_size_kib == 0 {
                    return Err(EngineError::Machine(format!(
                        "NUMA node {}: a hugepage size must be positive",
                        node.id
                    )));
                }
                if p.num_pages.checked_mul(p.page_size_kib * 1024).is_none() {
                    return Err(EngineError::Machine(format!(
                        "NUMA node {}: hugepage pool too large",
                        node.id
                    )));
                }
            }
        }
        let nodes = order.iter().map(|&i| self.nodes[i].clone()).collect();
        let distances = self.distances.as_ref().map(|d| {
            order
                .iter()
                .map(|&i| order.iter().map(|&j| d[i][j]).collect())
                .collect()
        });
        self.nodes = nodes;
        self.distances = distances;
        Ok(self)
    }

    pub fn from_json(text: &str) -> Result<Machine> {
        let m: Machine = serde_json::from_str(text)
            .map_err(|e| EngineError::Machine(format!("invalid machine description: {e}")))?;
        m.validated()
    }

    pub fn node_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.nodes.iter().map(|n| n.id)
    }

    pub fn has_node(&self, id: i64) -> bool {
        self.nodes.iter().any(|n| i64::from(n.id) == id)
    }

    /// Distance between two node ids, if the machine publishes distances.
    pub fn distance(&self, a: u32, b: u32) -> Option<u64> {
        let d = self.distances.as_ref()?;
        let i = self.nodes.iter().position(|n| n.id == a)?;
        let j = self.nodes.iter().position(|n| n.id == b)?;
        Some(d[i][j])
    }
}
