//! Stranded memory: how many more pods of one shape fit, and what free memory no such pod
//! can use. Used by `mm.fragmentation()`, state-file inspection and the simulator's samples.

use crate::error::Result;
use crate::manager::Manager;
use crate::request::{container_requested, Pod, QosClass};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Stranded memory for a probe shape: on a copy of the state (restored as a restart would
/// restore it, so every pod in the file counts), copies of the probe are admitted until one is
/// rejected (at most `cap`); `fits` is how many were admitted and `by_node` the free bytes of
/// the probe's resources left on each node, memory no further probe can use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragmentation {
    pub fits: usize,
    /// The fill stopped at `cap`, not at a rejection.
    pub capped: bool,
    /// Node id -> stranded bytes (summed over the probe's resources).
    pub by_node: BTreeMap<i64, u64>,
    /// Node id -> free bytes of the probe's resources before the fill.
    pub free_before: BTreeMap<i64, u64>,
}

impl Fragmentation {
    pub fn total(&self) -> u64 {
        self.by_node.values().sum()
    }
}

/// The probe must be a Guaranteed pod asking for memory, or the fill would never stop.
fn probe_resources(probe: &Pod) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for c in probe.all_containers() {
        for r in container_requested(c)?.into_keys() {
            if !out.contains(&r) {
                out.push(r);
            }
        }
    }
    if probe.qos_class() != QosClass::Guaranteed || out.is_empty() {
        return Err(crate::error::EngineError::pod(
            None,
            "a probe shape must be a Guaranteed pod that requests memory or hugepages",
        ));
    }
    Ok(out)
}

fn free_of(m: &Manager, resources: &[String]) -> BTreeMap<i64, u64> {
    m.state()
        .machine_state
        .iter()
        .map(|(id, n)| {
            let free = resources
                .iter()
                .filter_map(|r| n.memory_map.get(r))
                .fold(0u64, |a, t| a.saturating_add(t.free));
            (*id, free)
        })
        .collect()
}

impl Manager {
    /// See [`Fragmentation`]. The manager itself is left untouched.
    pub fn fragmentation(&self, probe: &Pod, cap: usize) -> Result<Fragmentation> {
        let mut copy = self.clone();
        copy.adopt_all_entries();
        copy.fill_with(probe, cap)
    }

    /// [`Manager::fragmentation`] on this manager itself, which the fill changes: for a
    /// manager made only to be asked (a state file being inspected), which saves a copy of a
    /// state that may hold a million entries. Every pod in the state must count as running
    /// (adopted, or no stale-state scan pending: the fill stops at its first rejection).
    pub fn fill_with(&mut self, probe: &Pod, cap: usize) -> Result<Fragmentation> {
        let resources = probe_resources(probe)?;
        let free_before = free_of(self, &resources);
        let mut fits = 0;
        while fits < cap {
            let mut p = probe.clone();
            p.uid = format!("{}\u{0}probe-{fits}", probe.uid);
            let a = self.admit_shared(&Arc::new(p), &[], false);
            if !a.admit {
                break;
            }
            fits += 1;
        }
        Ok(Fragmentation {
            fits,
            capped: fits == cap,
            by_node: free_of(self, &resources),
            free_before,
        })
    }
}
