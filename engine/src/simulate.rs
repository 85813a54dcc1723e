//! The simulation core of `pymm simulate`: one workload replayed on one configuration, in
//! memory, with the metrics an operator compares configurations by. Python generates the
//! workload and draws the report; the loop runs here because it runs a million times.
//!
//! Every event is one lifecycle operation ([`crate::lifecycle::Op`]) applied through
//! [`Manager::apply`], as every other driver applies it. The metrics are defined in
//! `pymm/simulate/core.py`; a slow reference driver through the public Python API
//! (`tests/simulate_reference.py`) checks this core event for event.

use crate::config::Config;
use crate::error::{EngineError, Result};
use crate::lifecycle::{Op, Outcome as LifecycleOutcome};
use crate::machine::{Machine, MemoryKind};
use crate::manager::Manager;
use crate::request::Pod;
use crate::scenario::Step;
use std::collections::BTreeMap;
use std::sync::Arc;

/// One event of a generated workload: admit or stop pod instance `pod` of shape `shape`.
pub const ADMIT: u8 = 0;
pub const STOP_POD: u8 = 1;

/// A generated workload: pod shapes and events, as `pymm.simulate.Workload` holds them.
/// Event `i` concerns instance `pod[i]` of shape `shape[i]`, whose uid is
/// `"{shape uid}-{pod[i]}"`.
pub struct Workload<'a> {
    pub shapes: &'a [Arc<Pod>],
    pub op: &'a [u8],
    pub pod: &'a [i64],
    pub shape: &'a [i32],
}

/// What a simulation replays: a generated workload, or a scenario's own operations (its pods,
/// uids and provider hints as written), mapped onto the lifecycle as replay maps them.
pub enum Events<'a> {
    Generated(Workload<'a>),
    Scenario(&'a [Step]),
}

impl Events<'_> {
    fn len(&self) -> usize {
        match self {
            Events::Generated(w) => w.op.len(),
            Events::Scenario(steps) => steps.len(),
        }
    }

    /// The columns agree with each other and with the shapes.
    fn check(&self) -> Result<()> {
        let Events::Generated(w) = self else {
            return Ok(());
        };
        let n = w.op.len();
        if w.pod.len() != n || w.shape.len() != n {
            return Err(EngineError::config(
                "simulate: the event columns differ in length",
            ));
        }
        if let Some(bad) = w
            .shape
            .iter()
            .find(|s| usize::try_from(**s).map_or(true, |s| s >= w.shapes.len()))
        {
            return Err(EngineError::config(format!(
                "simulate: shape index {bad} is out of range"
            )));
        }
        if let Some(bad) = w.op.iter().find(|o| **o > STOP_POD) {
            return Err(EngineError::config(format!(
                "simulate: event op {bad} is neither admit (0) nor stop pod (1)"
            )));
        }
        Ok(())
    }

    /// Event `i` as a lifecycle operation on `m`.
    fn op(&self, i: usize, m: &Manager) -> Result<Op> {
        match self {
            Events::Generated(w) => {
                let shape = &w.shapes[w.shape[i] as usize];
                let uid = instance_uid(&shape.uid, w.pod[i]);
                Ok(if w.op[i] == ADMIT {
                    Op::Admit {
                        pod: Arc::new(shape.instance(uid)),
                        hints: None,
                        start: true,
                        trace: false,
                    }
                } else {
                    Op::StopPod { pod_uid: uid }
                })
            }
            Events::Scenario(steps) => {
                steps[i].op(m, false, m.checkpoint_json(), "simulate".into())
            }
        }
    }
}

/// `"{shape}-{k}"`, written without the formatting machinery (once per event).
fn instance_uid(shape: &str, k: i64) -> String {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut v = k.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let mut uid = String::with_capacity(shape.len() + 2 + digits.len() - at);
    uid.push_str(shape);
    uid.push('-');
    if k < 0 {
        uid.push('-');
    }
    for d in &digits[at..] {
        uid.push(char::from(*d));
    }
    uid
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
    /// Events applied: all of them, unless a restart failed (a kubelet that does not start
    /// runs nothing after it).
    pub events: usize,
    /// Why a restart failed, with the kubelet's text.
    pub restart_error: Option<String>,
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

/// Reserved bytes per node (all memory resources), in node order, into `out`.
fn reserved_into(m: &Manager, out: &mut [u64]) {
    for (slot, n) in out.iter_mut().zip(m.state().machine_state.values()) {
        *slot = n
            .memory_map
            .values()
            .fold(0u64, |a, t| a.saturating_add(t.reserved));
    }
}

/// Replays `w` on a new manager for `machine` and `config`. `tick(n)` is told every 10,000
/// events (and at the end) how many more were replayed.
pub fn run(
    machine: &Machine,
    config: &Config,
    w: &Events<'_>,
    probe: &Pod,
    sample_at: &[usize],
    cap: usize,
    tick: &mut dyn FnMut(usize),
) -> Result<Outcome> {
    w.check()?;
    if let Events::Generated(g) = w {
        // Computed once on the shapes, so that every instance shares the answer.
        for s in g.shapes {
            s.qos_class();
        }
    }
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
    let allocatable: Vec<u64> = m
        .state()
        .machine_state
        .values()
        .map(|n| {
            n.memory_map
                .values()
                .fold(0u64, |a, t| a.saturating_add(t.allocatable))
        })
        .collect();
    let total_alloc = allocatable.iter().sum::<u64>().max(1) as f64;
    let mut out = Outcome::default();
    let mut tier_of: Vec<usize> = Vec::with_capacity(kinds.len());
    let mut tiers: Vec<&'static str> = kinds.clone();
    tiers.sort_unstable();
    tiers.dedup();
    for k in &kinds {
        tier_of.push(tiers.iter().position(|t| t == k).unwrap_or(0));
    }
    let mut tier_sums = vec![0.0f64; tiers.len()];
    let mut reserved = vec![0u64; ids.len()];
    let mut next_sample = 0;
    let mut applied = 0;
    for i in 0..w.len() {
        let op = w.op(i, &m)?;
        let restart = matches!(op, Op::Restart(_));
        match m.apply(&op) {
            Ok(LifecycleOutcome::Admission(a)) if a.admit => {
                out.admitted += 1;
                // Placements as the admission made them, before starting the pod handed its
                // init containers' memory back.
                for (_, blocks) in &a.placements {
                    let mut nodes: Vec<i64> = blocks
                        .iter()
                        .flat_map(|b| b.affinity().iter().copied())
                        .collect();
                    nodes.sort_unstable();
                    nodes.dedup();
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
            }
            Ok(LifecycleOutcome::Admission(a)) => {
                count(
                    &mut out.rejected_by_reason,
                    a.reason.as_deref().unwrap_or("unknown"),
                );
                count(
                    &mut out.rejected_by_message,
                    a.message.as_deref().unwrap_or(""),
                );
            }
            Ok(_) => {}
            Err(e) if restart => {
                out.restart_error = Some(format!("event {i}: {}", e.message()));
                break;
            }
            Err(e) => return Err(e),
        }
        applied += 1;
        reserved_into(&m, &mut reserved);
        let fraction = reserved.iter().sum::<u64>() as f64 / total_alloc;
        out.fraction_sum += fraction;
        out.peak_fraction = out.peak_fraction.max(fraction);
        if let [only] = &mut tier_sums[..] {
            *only += reserved.iter().sum::<u64>() as f64;
        } else {
            for (t, r) in tier_of.iter().zip(&reserved) {
                tier_sums[*t] += *r as f64;
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
    tick(applied % 10_000);
    out.events = applied;
    out.tier_sum = tiers
        .iter()
        .zip(tier_sums)
        .map(|(t, s)| ((*t).to_string(), s))
        .collect();
    out.final_checkpoint = m.checkpoint_json();
    out.final_error = Manager::new(
        m.machine().clone(),
        m.config().clone(),
        Some(&out.final_checkpoint),
        "simulate",
    )
    .err()
    .map(|e| e.message().to_string());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::instance_uid;

    #[test]
    fn instance_uids_are_the_shape_and_the_number() {
        for k in [0i64, 7, 10, 99, 12_345, i64::MAX, -1, i64::MIN] {
            assert_eq!(instance_uid("db-16Gi", k), format!("db-16Gi-{k}"));
        }
    }
}
