//! The simulation core of `pymm simulate`: one workload replayed on one configuration, in
//! memory, with the metrics an operator compares configurations by. Python generates the
//! workload and draws the report; the loop runs here because it runs a million times.
//!
//! The metrics are defined in `pymm/simulate/driver.py`, whose slow reference driver (public
//! API only) the tests compare this core with, event for event.

use crate::config::Config;
use crate::error::Result;
use crate::machine::{Machine, MemoryKind};
use crate::manager::Manager;
use crate::request::Pod;
use std::collections::BTreeMap;
use std::sync::Arc;

/// One event of a workload: admit or remove pod instance `pod` of shape `shape`.
pub const ADMIT: u8 = 0;

/// A workload: pod shapes and events, as `pymm.simulate.Workload` holds them.
pub struct Workload<'a> {
    pub shapes: &'a [Arc<Pod>],
    pub op: &'a [u8],
    pub pod: &'a [i64],
    pub shape: &'a [i32],
}

#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub event: usize,
    pub reserved_fraction: f64,
    /// Per node, in the machine's node order.
    pub node_reserved_fraction: Vec<f64>,
    pub fits: usize,
    pub node_stranded: Vec<u64>,
}

#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub admitted: u64,
    /// In order of first occurrence; the caller sorts.
    pub rejected_by_reason: Vec<(String, u64)>,
    pub rejected_by_message: Vec<(String, u64)>,
    pub cross_numa: u64,
    /// Sum over cross-NUMA containers of the mean distance between distinct pairs of nodes.
    pub distance_sum: f64,
    pub fraction_sum: f64,
    pub peak_fraction: f64,
    /// Tier -> sum over events of reserved bytes on that tier's nodes.
    pub tier_sum: BTreeMap<String, f64>,
    pub samples: Vec<Sample>,
    pub final_checkpoint: String,
    /// Why the final state file would not restore, if it would not.
    pub final_error: Option<String>,
}

fn count(list: &mut Vec<(String, u64)>, key: &str) {
    match list.iter_mut().find(|(k, _)| k == key) {
        Some((_, n)) => *n += 1,
        None => list.push((key.to_string(), 1)),
    }
}

fn tier_name(k: MemoryKind) -> &'static str {
    match k {
        MemoryKind::Dram => "DRAM",
        MemoryKind::Hbm => "HBM",
        MemoryKind::Cxl => "CXL",
        MemoryKind::Unknown => "unknown",
    }
}

/// Replays `w` on a new manager for `machine` and `config`. `tick(n)` is told every 10,000
/// events (and at the end) how many more were replayed.
pub fn run(
    machine: &Machine,
    config: &Config,
    w: &Workload<'_>,
    probe: &Pod,
    sample_at: &[usize],
    cap: usize,
    tick: &mut dyn FnMut(usize),
) -> Result<Outcome> {
    let mut m = Manager::new(machine.clone(), config.clone(), None, "simulate")?;
    let ids: Vec<i64> = m.state().machine_state.keys().copied().collect();
    let pos: BTreeMap<i64, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let kinds: Vec<&'static str> = m
        .machine()
        .nodes
        .iter()
        .map(|n| tier_name(n.kind))
        .collect();
    let distances = m.machine().distances.clone();
    let per_node = |m: &Manager, pick: fn(&crate::state::MemoryTable) -> u64| -> Vec<u64> {
        m.state()
            .machine_state
            .values()
            .map(|n| {
                n.memory_map
                    .values()
                    .fold(0u64, |a, t| a.saturating_add(pick(t)))
            })
            .collect()
    };
    let allocatable = per_node(&m, |t| t.allocatable);
    let total_alloc = allocatable.iter().sum::<u64>().max(1) as f64;
    let mut out = Outcome::default();
    let mut tiers: Vec<&'static str> = kinds.clone();
    tiers.sort_unstable();
    tiers.dedup();
    for t in &tiers {
        out.tier_sum.insert((*t).to_string(), 0.0);
    }
    let mut running = std::collections::HashSet::new();
    let mut next_sample = 0;
    for i in 0..w.op.len() {
        let shape = &w.shapes[w.shape[i] as usize];
        let uid = format!("{}-{}", shape.uid, w.pod[i]);
        if w.op[i] == ADMIT {
            let mut p = (**shape).clone();
            p.uid = uid;
            let p = Arc::new(p);
            let a = m.admit_shared(&p, &[], false);
            if a.admit {
                running.insert(w.pod[i]);
                out.admitted += 1;
                // Placements as the admission made them, before starting the pod hands its
                // init containers' memory back.
                for c in p.all_containers() {
                    let Some(nodes) = m.container_nodes(&p.uid, &c.name) else {
                        continue;
                    };
                    if nodes.len() < 2 {
                        continue;
                    }
                    out.cross_numa += 1;
                    if let Some(d) = &distances {
                        let idx: Vec<usize> =
                            nodes.iter().filter_map(|n| pos.get(n).copied()).collect();
                        let (mut s, mut k) = (0u64, 0u64);
                        for a in &idx {
                            for b in &idx {
                                if a != b {
                                    s += d[*a][*b];
                                    k += 1;
                                }
                            }
                        }
                        out.distance_sum += s as f64 / k.max(1) as f64;
                    }
                }
                m.start_pod(&p.uid)?;
            } else {
                count(
                    &mut out.rejected_by_reason,
                    a.reason.as_deref().unwrap_or("unknown"),
                );
                count(
                    &mut out.rejected_by_message,
                    a.message.as_deref().unwrap_or(""),
                );
            }
        } else if running.remove(&w.pod[i]) {
            m.remove_pod(&uid);
        }
        let reserved = per_node(&m, |t| t.reserved);
        let fraction = reserved.iter().sum::<u64>() as f64 / total_alloc;
        out.fraction_sum += fraction;
        out.peak_fraction = out.peak_fraction.max(fraction);
        for (k, r) in kinds.iter().zip(&reserved) {
            if let Some(s) = out.tier_sum.get_mut(*k) {
                *s += *r as f64;
            }
        }
        if sample_at.get(next_sample) == Some(&i) {
            let f = m.fragmentation(probe, cap)?;
            out.samples.push(Sample {
                event: i,
                reserved_fraction: fraction,
                node_reserved_fraction: reserved
                    .iter()
                    .zip(&allocatable)
                    .map(|(r, a)| if *a > 0 { *r as f64 / *a as f64 } else { 0.0 })
                    .collect(),
                fits: f.fits,
                node_stranded: ids
                    .iter()
                    .map(|id| f.by_node.get(id).copied().unwrap_or(0))
                    .collect(),
            });
            next_sample += 1;
        }
        if (i + 1) % 10_000 == 0 {
            tick(10_000);
        }
    }
    tick(w.op.len() % 10_000);
    out.final_checkpoint = m.checkpoint_json();
    out.final_error = Manager::new(
        machine.clone(),
        config.clone(),
        Some(&out.final_checkpoint),
        "simulate",
    )
    .err()
    .map(|e| e.message().to_string());
    Ok(out)
}
