//! The simulation core of `pymm simulate`: one workload replayed on one configuration, in
//! memory, with the metrics an operator compares configurations by. Python generates the
//! workload and draws the report; the loop runs here because it runs a million times.
//!
//! Every event is one lifecycle operation ([`crate::lifecycle::Op`]) applied through
//! [`Manager::apply`], as every other driver applies it. The metrics are defined in
//! `pymm/simulate/core.py`; a slow reference driver through the public Python API
//! (`tests/simulate_reference.py`) checks this core event for event.
//!
//! A [`Simulation`] can pause at a rejected admission ([`Simulation::run`] with
//! `pause_on_reject`): the caller looks at a copy of the manager (a defragmentation planner),
//! and [`Simulation::settle`]s the rejection, with the steps of a plan that admits the pod
//! after all or without. Until it is settled the rejected event is not counted.

use crate::config::Config;
use crate::error::{EngineError, Result};
use crate::lifecycle::{Op, Outcome as LifecycleOutcome};
use crate::machine::{Machine, MemoryKind};
use crate::manager::{AdmitResult, Manager};
use crate::request::Pod;
use crate::scenario::Step;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// One event of a generated workload: admit or stop pod instance `pod` of shape `shape`.
pub const ADMIT: u8 = 0;
pub const STOP_POD: u8 = 1;

/// The progress callback is told about this many events at a time (and the rest at the end).
pub const TICK: usize = 10_000;

/// A generated workload: pod shapes and events, as `pymm.simulate.Workload` holds them.
/// Event `i` concerns instance `pod[i]` of shape `shape[i]`, whose uid is
/// `"{shape uid}-{pod[i]}"`.
pub struct Workload {
    pub shapes: Vec<Arc<Pod>>,
    pub op: Vec<u8>,
    pub pod: Vec<i64>,
    pub shape: Vec<i32>,
}

/// What a simulation replays: a generated workload, or a scenario's own operations (its pods,
/// uids and provider hints as written), mapped onto the lifecycle as replay maps them.
pub enum Events {
    Generated(Workload),
    Scenario(Vec<Step>),
}

impl Events {
    pub fn len(&self) -> usize {
        match self {
            Events::Generated(w) => w.op.len(),
            Events::Scenario(steps) => steps.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
                let step = &steps[i];
                // Only a restart reads the state file.
                let text = if step.reads_state() {
                    m.checkpoint_json()
                } else {
                    String::new()
                };
                step.op(m, false, text, "simulate".into())
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
    /// Admissions, rejections and defragmentation moves so far.
    pub admitted: u64,
    pub rejected: u64,
    pub moves: u64,
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
    /// Rejected admissions that a defragmentation plan turned into admissions (counted in
    /// `admitted`), and the running pods those plans moved and evicted.
    pub defragmented: u64,
    pub moves: u64,
    pub evictions: u64,
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

/// A rejected admission waiting for [`Simulation::settle`].
struct Pending {
    index: usize,
    op: Op,
    result: AdmitResult,
}

/// One workload being replayed on one configuration (see the module's documentation).
pub struct Simulation {
    events: Events,
    m: Manager,
    probe: Pod,
    sample_at: Vec<usize>,
    cap: usize,
    ids: Vec<i64>,
    pos: BTreeMap<i64, usize>,
    distances: Option<Vec<Vec<u64>>>,
    allocatable: Vec<u64>,
    total_alloc: f64,
    tier_of: Vec<usize>,
    tiers: Vec<&'static str>,
    tier_sums: Vec<f64>,
    reserved: Vec<u64>,
    /// The next event to apply.
    next: usize,
    next_sample: usize,
    /// Events applied since the progress callback was last told.
    untold: usize,
    pending: Option<Pending>,
    rejected: u64,
    /// A restart failed: nothing more runs.
    stopped: bool,
    out: Outcome,
}

impl Simulation {
    /// A new manager for `machine` and `config`, about to replay `events`. Stranded memory
    /// is measured with `probe` (at most `cap` of them) after each event in `sample_at`.
    pub fn new(
        machine: &Machine,
        config: &Config,
        events: Events,
        probe: Pod,
        sample_at: Vec<usize>,
        cap: usize,
    ) -> Result<Simulation> {
        events.check()?;
        if let Events::Generated(g) = &events {
            // Computed once on the shapes, so that every instance shares the answer.
            for s in &g.shapes {
                s.qos_class();
            }
        }
        let m = Manager::new(machine.clone(), config.clone(), None, "simulate")?;
        let ids: Vec<i64> = m.state().machine_state.keys().copied().collect();
        let pos = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        let kinds: Vec<&'static str> = m
            .machine()
            .nodes
            .iter()
            .map(|n| tier_name(n.kind))
            .collect();
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
        let mut tiers: Vec<&'static str> = kinds.clone();
        tiers.sort_unstable();
        tiers.dedup();
        let tier_of = kinds
            .iter()
            .map(|k| tiers.iter().position(|t| t == k).unwrap_or(0))
            .collect();
        Ok(Simulation {
            events,
            distances: m.machine().distances.clone(),
            m,
            probe,
            sample_at,
            cap,
            reserved: vec![0; ids.len()],
            ids,
            pos,
            allocatable,
            total_alloc,
            tier_of,
            tier_sums: vec![0.0; tiers.len()],
            tiers,
            next: 0,
            next_sample: 0,
            untold: 0,
            pending: None,
            rejected: 0,
            stopped: false,
            out: Outcome::default(),
        })
    }

    /// The simulated manager, as it is now.
    pub fn manager(&self) -> &Manager {
        &self.m
    }

    /// The rejected admission waiting to be settled, if one is.
    pub fn pending(&self) -> Option<(&Arc<Pod>, Option<&Value>)> {
        match &self.pending {
            Some(Pending {
                op: Op::Admit { pod, hints, .. },
                ..
            }) => Some((pod, hints.as_ref())),
            _ => None,
        }
    }

    /// Applies events, from the first not yet applied to the last; with `pause_on_reject`
    /// it stops at a rejected admission of a pod the memory manager pins and returns that
    /// event's index (settle it before running on). `tick(n)` is told every [`TICK`]
    /// events, and at the end, how many more were applied.
    pub fn run(
        &mut self,
        pause_on_reject: bool,
        tick: &mut dyn FnMut(usize),
    ) -> Result<Option<usize>> {
        if self.pending.is_some() {
            return Err(EngineError::config(
                "simulate: a rejected admission is waiting to be settled",
            ));
        }
        while self.next < self.events.len() && !self.stopped {
            let i = self.next;
            let op = self.events.op(i, &self.m)?;
            let restart = matches!(op, Op::Restart(_));
            match self.m.apply(&op) {
                Ok(LifecycleOutcome::Admission(a)) if a.admit => self.admitted(&a),
                Ok(LifecycleOutcome::Admission(a)) => {
                    let pinned = match &op {
                        Op::Admit { pod, .. } => self.m.pins(pod),
                        _ => false,
                    };
                    if pause_on_reject && pinned {
                        self.pending = Some(Pending {
                            index: i,
                            op,
                            result: *a,
                        });
                        return Ok(Some(i));
                    }
                    self.rejected(&a);
                }
                Ok(_) => {}
                Err(e) if restart => {
                    self.out.restart_error = Some(format!("event {i}: {}", e.message()));
                    self.stopped = true;
                    break;
                }
                Err(e) => return Err(e),
            }
            self.after(i, tick)?;
        }
        tick(std::mem::take(&mut self.untold));
        Ok(None)
    }

    /// Settles the pending rejection. With `steps` (a defragmentation plan: running pods
    /// released, some admitted again elsewhere, then the pending pod admitted), they are
    /// applied all or nothing; when the last of them admits the pod, the event counts as an
    /// admission, and each released pod as a move (admitted again within the steps) or an
    /// eviction. Otherwise (no steps, or steps that do not end in the admission, which are
    /// then undone) the rejection counts as it came. Returns whether the pod was admitted.
    pub fn settle(&mut self, steps: Option<&[Op]>, tick: &mut dyn FnMut(usize)) -> Result<bool> {
        let p = self.pending.take().ok_or_else(|| {
            EngineError::config("simulate: no rejected admission is waiting to be settled")
        })?;
        let mut admitted = false;
        if let Some(ops) = steps.filter(|s| !s.is_empty()) {
            let before = self.m.snapshot();
            let outcomes = match self.m.apply_all(ops) {
                Ok(o) => o,
                Err(e) => {
                    self.pending = Some(p);
                    return Err(e);
                }
            };
            match outcomes.last() {
                Some(LifecycleOutcome::Admission(a)) if a.admit => {
                    let (moves, evictions) = moves_of(ops);
                    self.out.moves += moves;
                    self.out.evictions += evictions;
                    self.out.defragmented += 1;
                    self.admitted(a);
                    admitted = true;
                }
                _ => self.m.rollback(before),
            }
        }
        if !admitted {
            self.rejected(&p.result);
        }
        self.after(p.index, tick)?;
        Ok(admitted)
    }

    fn admitted(&mut self, a: &AdmitResult) {
        self.out.admitted += 1;
        // Placements as the admission made them, before starting the pod handed its init
        // containers' memory back.
        for (_, blocks) in &a.placements {
            let nodes = crate::state::block_nodes(blocks);
            if nodes.len() < 2 {
                continue;
            }
            self.out.cross_numa += 1;
            if let Some(d) = &self.distances {
                let idx: Vec<usize> = nodes
                    .iter()
                    .filter_map(|n| self.pos.get(n).copied())
                    .collect();
                let (mut s, mut k) = (0u64, 0u64);
                for a in &idx {
                    for b in &idx {
                        if a != b {
                            s += d[*a][*b];
                            k += 1;
                        }
                    }
                }
                self.out.distance_sum += s as f64 / k.max(1) as f64;
            }
        }
    }

    fn rejected(&mut self, a: &AdmitResult) {
        self.rejected += 1;
        count(
            &mut self.out.rejected_by_reason,
            a.reason.as_deref().unwrap_or("unknown"),
        );
        count(
            &mut self.out.rejected_by_message,
            a.message.as_deref().unwrap_or(""),
        );
    }

    /// The metrics after event `i`.
    fn after(&mut self, i: usize, tick: &mut dyn FnMut(usize)) -> Result<()> {
        self.next = i + 1;
        self.out.events += 1;
        reserved_into(&self.m, &mut self.reserved);
        let fraction = self.reserved.iter().sum::<u64>() as f64 / self.total_alloc;
        self.out.fraction_sum += fraction;
        self.out.peak_fraction = self.out.peak_fraction.max(fraction);
        if let [only] = &mut self.tier_sums[..] {
            *only += self.reserved.iter().sum::<u64>() as f64;
        } else {
            for (t, r) in self.tier_of.iter().zip(&self.reserved) {
                self.tier_sums[*t] += *r as f64;
            }
        }
        if self.sample_at.get(self.next_sample) == Some(&i) {
            let f = self.m.fragmentation(&self.probe, self.cap)?;
            self.out.samples.push(Sample {
                event: i,
                reserved_fraction: fraction,
                node_reserved_fraction: self
                    .reserved
                    .iter()
                    .zip(&self.allocatable)
                    .map(|(r, a)| if *a > 0 { *r as f64 / *a as f64 } else { 0.0 })
                    .collect(),
                fits: f.fits,
                admitted: self.out.admitted,
                rejected: self.rejected,
                moves: self.out.moves,
                node_stranded: self
                    .ids
                    .iter()
                    .map(|id| f.by_node.get(id).copied().unwrap_or(0))
                    .collect(),
            });
            self.next_sample += 1;
        }
        self.untold += 1;
        if self.untold == TICK {
            tick(std::mem::take(&mut self.untold));
        }
        Ok(())
    }

    /// The results, with the final state file and whether it restores.
    pub fn finish(mut self) -> Outcome {
        let mut out = std::mem::take(&mut self.out);
        out.tier_sum = self
            .tiers
            .iter()
            .zip(&self.tier_sums)
            .map(|(t, s)| ((*t).to_string(), *s))
            .collect();
        out.final_checkpoint = self.m.checkpoint_json();
        out.final_error = Manager::new(
            self.m.machine().clone(),
            self.m.config().clone(),
            Some(&out.final_checkpoint),
            "simulate",
        )
        .err()
        .map(|e| e.message().to_string());
        out
    }
}

/// Of a defragmentation plan's steps: the running pods released and admitted again (moves),
/// and those released and not admitted again (evictions).
fn moves_of(ops: &[Op]) -> (u64, u64) {
    let released: BTreeSet<&str> = ops
        .iter()
        .filter_map(|op| match op {
            Op::Release {
                pod_uid,
                container: None,
                ..
            } => Some(pod_uid.as_str()),
            _ => None,
        })
        .collect();
    let again: BTreeSet<&str> = ops
        .iter()
        .filter_map(|op| match op {
            Op::Admit { pod, .. } | Op::AdmitOn { pod, .. } => Some(pod.uid.as_str()),
            _ => None,
        })
        .filter(|uid| released.contains(uid))
        .collect();
    let moves = again.len() as u64;
    (moves, released.len() as u64 - moves)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_uids_are_the_shape_and_the_number() {
        for k in [0i64, 7, 10, 99, 12_345, i64::MAX, -1, i64::MIN] {
            assert_eq!(instance_uid("db-16Gi", k), format!("db-16Gi-{k}"));
        }
    }

    fn pod(uid: &str, gi: u64) -> Arc<Pod> {
        let r = serde_json::json!({"cpu": "1", "memory": format!("{gi}Gi")});
        Arc::new(
            Pod::from_value(&serde_json::json!({"uid": uid,
                "containers": [{"name": "c", "requests": r, "limits": r}]}))
            .unwrap(),
        )
    }

    /// Two 16Gi nodes (15Gi allocatable each): 7Gi pods a-0 and a-1 on node 0, a-2 on node 1;
    /// a-0 stops; then a 10Gi pod fits no node (8Gi free on each) until a-2 moves to node 0.
    fn fragmented() -> Simulation {
        let machine = Machine::from_value(&serde_json::json!({"name": "two", "nodes": [
            {"id": 0, "memory_bytes": 16u64 << 30, "cpus": 2, "hugepages": []},
            {"id": 1, "memory_bytes": 16u64 << 30, "cpus": 2, "hugepages": []}]}))
        .unwrap();
        let config = Config::from_value(&serde_json::json!({})).unwrap();
        let shapes = vec![pod("a", 7), pod("b", 10)];
        let w = Workload {
            shapes,
            op: vec![ADMIT, ADMIT, ADMIT, STOP_POD, ADMIT],
            pod: vec![0, 1, 2, 0, 0],
            shape: vec![0, 0, 0, 0, 1],
        };
        let probe = (*pod("probe", 1)).clone();
        Simulation::new(&machine, &config, Events::Generated(w), probe, vec![4], 10).unwrap()
    }

    #[test]
    fn a_paused_rejection_settled_with_a_plan_counts_as_an_admission() {
        let mut s = fragmented();
        let mut told = 0;
        let at = s.run(true, &mut |n| told += n).unwrap();
        assert_eq!(at, Some(4));
        let (p, _) = s.pending().unwrap();
        assert_eq!(p.uid, "b-0");
        // Move a-2 next to a-1, then b-0 fits on node 1.
        let a2 = s.manager().active_pods().find(|p| p.uid == "a-2").unwrap();
        let steps = vec![
            Op::Release {
                pod_uid: "a-2".into(),
                container: None,
                missing_ok: false,
            },
            Op::AdmitOn {
                pod: Arc::new(a2.clone()),
                targets: [("c".to_string(), vec![0])].into(),
                hints: None,
                start: true,
            },
            Op::Admit {
                pod: Arc::clone(p),
                hints: None,
                start: true,
                trace: false,
            },
        ];
        assert!(s.settle(Some(&steps), &mut |n| told += n).unwrap());
        assert_eq!(s.run(true, &mut |n| told += n).unwrap(), None);
        let out = s.finish();
        assert_eq!(
            (out.admitted, out.defragmented, out.moves, out.evictions),
            (4, 1, 1, 0)
        );
        assert!(out.rejected_by_reason.is_empty());
        assert_eq!((out.events, told), (5, 5));
        assert!(out.final_error.is_none());
    }

    #[test]
    fn a_rejection_settled_without_a_plan_counts_as_it_came() {
        let mut s = fragmented();
        assert_eq!(s.run(true, &mut |_| {}).unwrap(), Some(4));
        assert!(s.run(true, &mut |_| {}).is_err(), "must settle first");
        assert!(!s.settle(None, &mut |_| {}).unwrap());
        let out = s.finish();
        assert_eq!(out.admitted, 3);
        assert_eq!(out.rejected_by_reason.len(), 1);
        assert_eq!(out.samples.len(), 1);
    }

    #[test]
    fn steps_that_do_not_admit_the_pod_are_undone() {
        let mut s = fragmented();
        s.run(true, &mut |_| {}).unwrap();
        let before = s.manager().checkpoint_json();
        let steps = vec![Op::Release {
            pod_uid: "a-2".into(),
            container: None,
            missing_ok: false,
        }];
        assert!(!s.settle(Some(&steps), &mut |_| {}).unwrap());
        assert_eq!(s.manager().checkpoint_json(), before);
        assert_eq!(s.finish().evictions, 0);
    }
}
