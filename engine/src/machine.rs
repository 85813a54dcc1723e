//! The machine: NUMA nodes with their memory, hugepage pools and distances. It mirrors the
//! fields of cadvisor's `MachineInfo.Topology` that the kubelet reads, plus what pymm's own
//! policies use (CPU count, memory kind).
//!
//! [`Machine::from_value`] is the one decoder of machine descriptions (catalog files, `--machine
//! FILE`, sysfs discovery, scenarios): values are never coerced (`"id": 5.9` and `true` are
//! refused), hugepages must fit in their node's memory, and distances follow the ACPI SLIT
//! rules. Keys it does not know are left to the caller (sysfs discovery adds descriptive ones).

use crate::decode::{index, kind, uint, Obj, Subject};
use crate::error::{EngineError, Result};
use crate::nodemask::{MAX_MACHINE_NODE_ID, MAX_NODES};
use crate::quantity::Quantity;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HugePagePool {
    pub page_size_kib: u64,
    pub num_pages: u64,
}

impl HugePagePool {
    /// Bytes of the pool; a validated machine guarantees no overflow.
    pub fn bytes(&self) -> u64 {
        self.num_pages
            .saturating_mul(self.page_size_kib.saturating_mul(1024))
    }
}

/// What kind of memory a node has (classified from sysfs by `pymm/sysfs.py`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum MemoryKind {
    Dram,
    Hbm,
    Cxl,
    #[default]
    Unknown,
}

impl MemoryKind {
    pub const NAMES: [&'static str; 4] = ["DRAM", "HBM", "CXL", "unknown"];

    pub fn parse(s: &str) -> Option<MemoryKind> {
        match s {
            "DRAM" => Some(MemoryKind::Dram),
            "HBM" => Some(MemoryKind::Hbm),
            "CXL" => Some(MemoryKind::Cxl),
            "unknown" => Some(MemoryKind::Unknown),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// The memory tier a pod asks for with the `pymm.io/memory-tier` annotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tier {
    Dram,
    Hbm,
    Cxl,
    /// Any node, whatever its kind.
    Any,
}

/// The annotation naming a pod's memory tier.
pub const TIER_ANNOTATION: &str = "pymm.io/memory-tier";

impl Tier {
    pub const NAMES: [&'static str; 4] = ["dram", "hbm", "cxl", "any"];

    /// Case does not matter: `DRAM` is the kind's own spelling.
    pub fn parse(s: &str) -> Option<Tier> {
        match s.to_ascii_lowercase().as_str() {
            "dram" => Some(Tier::Dram),
            "hbm" => Some(Tier::Hbm),
            "cxl" => Some(Tier::Cxl),
            "any" => Some(Tier::Any),
            _ => None,
        }
    }

    /// Whether a node of this kind belongs to the tier.
    pub fn admits(self, kind: MemoryKind) -> bool {
        match self {
            Tier::Any => true,
            Tier::Dram => kind == MemoryKind::Dram,
            Tier::Hbm => kind == MemoryKind::Hbm,
            Tier::Cxl => kind == MemoryKind::Cxl,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NumaNode {
    pub id: u32,
    pub memory_bytes: u64,
    pub hugepages: Vec<HugePagePool>,
    pub cpus: u32,
    pub kind: MemoryKind,
}

impl NumaNode {
    pub fn hugepage_bytes(&self) -> u64 {
        self.hugepages
            .iter()
            .fold(0u64, |a, p| a.saturating_add(p.bytes()))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    pub name: String,
    pub nodes: Vec<NumaNode>,
    /// SLIT rows in the order of `nodes`.
    pub distances: Option<Vec<Vec<u64>>>,
}

const M: Subject = Subject::Machine;

fn node_from(v: &Value, path: &str) -> Result<NumaNode> {
    let n = Obj::new(v, path, M)?;
    let id = n.u64("id")?.ok_or_else(|| n.err("id", "required"))?;
    if id > MAX_MACHINE_NODE_ID as u64 {
        return Err(n.err(
            "id",
            format!("NUMA node id {id} is out of range: ids must be 0-{MAX_MACHINE_NODE_ID}"),
        ));
    }
    let id = id as u32;
    let memory_bytes = match n.either("memory_bytes", "memory")? {
        Some((v, at)) => uint(v, &at, M)?,
        None => return Err(n.err("memory_bytes", "required")),
    };
    let cpus = match n.u64("cpus")? {
        None => 0,
        Some(c) => u32::try_from(c)
            .map_err(|_| n.err("cpus", format!("{c} is out of range: 0 to {}", u32::MAX)))?,
    };
    let kind = match n.get("kind") {
        None => MemoryKind::Unknown,
        Some(Value::String(s)) => MemoryKind::parse(s).ok_or_else(|| {
            n.err(
                "kind",
                format!(
                    "unknown memory kind {s:?} (expected one of {})",
                    MemoryKind::NAMES.join(", ")
                ),
            )
        })?,
        Some(other) => return Err(n.err("kind", format!("expected a string, got {}", kind(other)))),
    };
    let mut hugepages: Vec<HugePagePool> = Vec::new();
    for (i, p) in n.list("hugepages")?.into_iter().flatten().enumerate() {
        let at = index(&n.at("hugepages"), i);
        let pool = Obj::new(p, &at, M)?;
        let page_size_kib = pool
            .u64("page_size_kib")?
            .ok_or_else(|| pool.err("page_size_kib", "required"))?;
        let num_pages = pool
            .u64("num_pages")?
            .ok_or_else(|| pool.err("num_pages", "required"))?;
        hugepages.push(HugePagePool {
            page_size_kib,
            num_pages,
        });
    }
    Ok(NumaNode {
        id,
        memory_bytes,
        hugepages,
        cpus,
        kind,
    })
}

const POWER_OF_TWO: &str =
    "the kernel's hugepage sizes are powers of two (64Ki, 2Mi, 32Mi, 512Mi, 1Gi, 16Gi)";

/// A hugepage size as KiB, from a quantity (`2Mi`, `1Gi`) or a resource name
/// (`hugepages-2Mi`): positive, whole KiB, a power of two.
pub fn hugepage_size_kib(text: &str) -> Result<u64> {
    let size = text.strip_prefix("hugepages-").unwrap_or(text);
    // The caller names the size it read; these messages say only what is wrong with it.
    let bytes = Quantity::parse(size)
        .and_then(|q| q.bytes())
        .map_err(|e| EngineError::machine(None, e.message()))?;
    if bytes == 0 || bytes % 1024 != 0 || !(bytes / 1024).is_power_of_two() {
        return Err(EngineError::machine(
            None,
            format!("not a hugepage size: {POWER_OF_TWO}"),
        ));
    }
    Ok(bytes / 1024)
}

/// The pages a pool of `bytes` holds: a whole number of them, or an error saying so (a pool
/// given in bytes, as scenario machines give theirs).
pub fn whole_pages(page_size_kib: u64, bytes: u64) -> Result<u64> {
    let page = page_size_kib.saturating_mul(1024);
    if page == 0 || bytes % page != 0 {
        return Err(EngineError::machine(
            None,
            format!(
                "{} of hugepages is not a whole number of {} pages",
                crate::quantity::bytes_text(bytes),
                crate::quantity::bytes_text(page)
            ),
        ));
    }
    Ok(bytes / page)
}

/// A node's own rules: hugepage sizes positive powers of two and listed once, pools within 2^64 bytes and,
/// all together, within the node's memory (hugepages are part of it).
fn check_node(node: &NumaNode, at: &str) -> Result<()> {
    let id = node.id;
    let err = |msg: String| EngineError::machine(Some(i64::from(id)), format!("{at}: {msg}"));
    let mut total = 0u64;
    for (i, p) in node.hugepages.iter().enumerate() {
        if p.page_size_kib == 0 {
            return Err(err(format!(
                "hugepages[{i}]: a hugepage size must be positive"
            )));
        }
        if !p.page_size_kib.is_power_of_two() {
            return Err(err(format!(
                "hugepages[{i}]: {} KiB is not a hugepage size: {POWER_OF_TWO}",
                p.page_size_kib
            )));
        }
        if node.hugepages[..i]
            .iter()
            .any(|h| h.page_size_kib == p.page_size_kib)
        {
            return Err(err(format!(
                "NUMA node {id} lists hugepages of {} KiB twice",
                p.page_size_kib
            )));
        }
        let bytes = p
            .page_size_kib
            .checked_mul(1024)
            .and_then(|b| b.checked_mul(p.num_pages))
            .and_then(|b| b.checked_add(total));
        total = bytes.ok_or_else(|| {
            err(format!(
                "NUMA node {id}: its hugepages add up to more than 2^64 bytes"
            ))
        })?;
    }
    if total > node.memory_bytes {
        return Err(err(format!(
            "NUMA node {id}: its hugepages ({total} bytes) exceed its memory ({} bytes); hugepages are part of a node's memory",
            node.memory_bytes
        )));
    }
    Ok(())
}

impl Machine {
    /// Decodes and validates a machine description: `{name?, nodes: [{id, memory_bytes,
    /// hugepages?: [{page_size_kib, num_pages}], cpus?, kind?}], distances?}`. Nodes come out
    /// sorted by id, distance rows moving with them.
    pub fn from_value(v: &Value) -> Result<Machine> {
        let top = Obj::new(v, "", M)?;
        let nodes = top
            .list("nodes")?
            .ok_or_else(|| top.err("nodes", "required"))?;
        let nodes = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| node_from(n, &index("nodes", i)))
            .collect::<Result<Vec<_>>>()?;
        let distances = match top.list("distances")? {
            None => None,
            Some(rows) => Some(
                rows.iter()
                    .enumerate()
                    .map(|(i, r)| {
                        let at = index("distances", i);
                        match r {
                            Value::Array(a) => a
                                .iter()
                                .enumerate()
                                .map(|(j, x)| uint(x, &index(&at, j), M))
                                .collect::<Result<Vec<u64>>>(),
                            other => {
                                Err(M.error(&at, format!("expected a list, got {}", kind(other))))
                            }
                        }
                    })
                    .collect::<Result<Vec<_>>>()?,
            ),
        };
        Machine {
            name: top.str("name")?.unwrap_or_default().to_string(),
            nodes,
            distances,
        }
        .validated()
    }

    /// Checks the description as a whole and sorts nodes by id (distance rows move with
    /// their node).
    pub fn validated(mut self) -> Result<Machine> {
        if self.nodes.is_empty() {
            return Err(EngineError::machine(
                None,
                "a machine needs at least one NUMA node",
            ));
        }
        let n = self.nodes.len();
        if n > MAX_NODES {
            return Err(EngineError::machine(
                None,
                format!("{n} NUMA nodes is more than the {MAX_NODES} pymm supports"),
            ));
        }
        for (i, node) in self.nodes.iter().enumerate() {
            check_node(node, &index("nodes", i))?;
        }
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&i| self.nodes[i].id);
        for w in order.windows(2) {
            let id = self.nodes[w[0]].id;
            if id == self.nodes[w[1]].id {
                return Err(EngineError::machine(
                    Some(i64::from(id)),
                    format!("NUMA node {id} appears twice"),
                ));
            }
        }
        if let Some(d) = &self.distances {
            check_slit(d, &self.nodes)?;
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

    pub fn node_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.nodes.iter().map(|n| n.id)
    }

    pub fn has_node(&self, id: i64) -> bool {
        self.nodes.iter().any(|n| i64::from(n.id) == id)
    }
}

/// The ACPI SLIT rules: one row and column per node, 10 from a node to itself, more than 10
/// to any other node.
fn check_slit(d: &[Vec<u64>], nodes: &[NumaNode]) -> Result<()> {
    let n = nodes.len();
    if d.len() != n || d.iter().any(|r| r.len() != n) {
        return Err(EngineError::machine(
            None,
            format!("distances: the distance matrix must be {n} x {n}, one row and column per NUMA node"),
        ));
    }
    for (i, row) in d.iter().enumerate() {
        for (j, &x) in row.iter().enumerate() {
            let (a, b) = (nodes[i].id, nodes[j].id);
            if i == j && x != 10 {
                return Err(EngineError::machine(
                    Some(i64::from(a)),
                    format!("distances[{i}][{j}]: the distance from NUMA node {a} to itself must be 10 (ACPI SLIT), got {x}"),
                ));
            }
            if i != j && x <= 10 {
                return Err(EngineError::machine(
                    Some(i64::from(a)),
                    format!("distances[{i}][{j}]: the distance from NUMA node {a} to node {b} must be more than 10 (ACPI SLIT), got {x}"),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(v: Value) -> String {
        Machine::from_value(&v).unwrap_err().message().to_string()
    }

    #[test]
    fn values_are_not_coerced() {
        assert!(err(json!({"nodes": [{"id": 5.9, "memory_bytes": 1}]})).contains("whole number"));
        assert!(err(json!({"nodes": [{"id": true, "memory_bytes": 1}]})).contains("bool"));
        let frac = json!({"nodes": [{"id": 0, "memory_bytes": 1 << 30,
            "hugepages": [{"page_size_kib": 7.9, "num_pages": 1}]}]});
        assert!(err(frac).contains("nodes[0].hugepages[0].page_size_kib"));
    }

    #[test]
    fn hugepages_larger_than_the_node_are_refused_naming_the_node() {
        let v = json!({"nodes": [{"id": 3, "memory_bytes": 1u64 << 30,
            "hugepages": [{"page_size_kib": 1048576, "num_pages": 2}]}]});
        match Machine::from_value(&v).unwrap_err() {
            EngineError::Machine { node, message } => {
                assert_eq!(node, Some(3));
                assert!(message.contains("exceed its memory"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let huge = json!({"nodes": [{"id": 0, "memory_bytes": u64::MAX,
            "hugepages": [{"page_size_kib": 1048576, "num_pages": u64::MAX / 1024}]}]});
        assert!(err(huge).contains("2^64"));
    }

    #[test]
    fn hugepage_sizes_are_powers_of_two_and_pools_whole_pages() {
        let pool = |kib: u64| {
            json!({"nodes": [{"id": 0, "memory_bytes": 1u64 << 40,
            "hugepages": [{"page_size_kib": kib, "num_pages": 10}]}]})
        };
        assert!(err(pool(3072)).contains("3072 KiB is not a hugepage size"));
        assert!(Machine::from_value(&pool(2048)).is_ok());
        assert_eq!(hugepage_size_kib("2Mi").unwrap(), 2048);
        assert_eq!(hugepage_size_kib("hugepages-1Gi").unwrap(), 1 << 20);
        for bad in ["3Mi", "0", "1.5Ki", "-2Mi", "x"] {
            assert!(hugepage_size_kib(bad).is_err(), "{bad}");
        }
        assert_eq!(whole_pages(2048, 8 << 20).unwrap(), 4);
        assert!(whole_pages(2048, 3 << 20).is_err());
    }

    #[test]
    fn duplicate_page_sizes_and_bad_distances_are_refused() {
        let dup = json!({"nodes": [{"id": 0, "memory_bytes": 1u64 << 40, "hugepages": [
            {"page_size_kib": 2048, "num_pages": 1}, {"page_size_kib": 2048, "num_pages": 2}]}]});
        assert!(err(dup).contains("twice"));
        let two = |d: Value| {
            json!({"nodes": [{"id": 0, "memory_bytes": 1}, {"id": 1, "memory_bytes": 1}],
                   "distances": d})
        };
        assert!(err(two(json!([[10, 20], [20, 11]]))).contains("to itself must be 10"));
        assert!(err(two(json!([[10, 10], [20, 10]]))).contains("more than 10"));
        assert!(err(two(json!([[10, 20]]))).contains("2 x 2"));
        assert!(Machine::from_value(&two(json!([[10, 21], [20, 10]]))).is_ok());
    }
}
