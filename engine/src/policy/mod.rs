//! Memory-manager policies. Each policy is one file; the manager talks to them through
//! [`MemoryPolicy`].

mod none;
mod static_policy;

pub use none::NonePolicy;
pub use static_policy::{PodAllocation, StaticPolicy};

/// A resize that can never be done as asked (the kubelet's `PodReasonInfeasible`).
pub const RESIZE_INFEASIBLE: &str = "Infeasible";
/// A resize that cannot be done now (the kubelet's `PodReasonDeferred`).
pub const RESIZE_DEFERRED: &str = "Deferred";

use crate::error::{EngineError, Result};
use crate::hints::{Extent, ProviderHints, TopologyHint};
use crate::request::Pod;
use crate::state::{Assignments, Block, MachineState, State};
use crate::topology::bool_option;
use std::collections::BTreeMap;

/// Memory-manager policy options: pymm's own, named like kubelet options, all off by default
/// (off, the Static policy is the kubelet's exactly).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryOptions {
    /// Place a Guaranteed container on the best valid group of nodes where the kubelet would
    /// reject it although one can hold it ([`crate::placement`]).
    pub admit_when_fits: bool,
    /// A multi-node group takes its hugepages evenly from its nodes instead of lowest-first.
    pub spread_hugepages: bool,
    /// Pods keep to a memory tier (`pymm.io/memory-tier`, default: the CPU nodes' kind).
    pub memory_tiers: bool,
    /// Never an overlapping group, never a multi-node container under `single-numa-node`
    /// (the kubelet's two group bugs, [`crate::placement`]).
    pub strict_numa_groups: bool,
    /// An in-place resize grows or shrinks a container's reservation where the kubelet
    /// re-pins nothing (KEP-5294's design; [`crate::lifecycle::Op::Resize`]).
    pub resize_in_place: bool,
}

pub const MEMORY_OPTIONS: [&str; 5] = [
    "admit-when-fits",
    "spread-hugepages",
    "memory-tiers",
    "strict-numa-groups",
    "resize-in-place",
];

impl MemoryOptions {
    pub fn parse(opts: &BTreeMap<String, String>) -> Result<MemoryOptions> {
        let mut o = MemoryOptions::default();
        for (k, v) in opts {
            match k.as_str() {
                "admit-when-fits" => o.admit_when_fits = bool_option(k, v)?,
                "spread-hugepages" => o.spread_hugepages = bool_option(k, v)?,
                "memory-tiers" => o.memory_tiers = bool_option(k, v)?,
                "strict-numa-groups" => o.strict_numa_groups = bool_option(k, v)?,
                "resize-in-place" => o.resize_in_place = bool_option(k, v)?,
                _ => {
                    return Err(EngineError::unknown_key(
                        "memory manager policy option",
                        k,
                        &MEMORY_OPTIONS,
                    ))
                }
            }
        }
        Ok(o)
    }

    /// Whether any placement option is on (off, the Static policy admits as the kubelet
    /// does). `resize-in-place` is not one: it changes only what a resize does.
    pub fn any(&self) -> bool {
        self.admit_when_fits
            || self.spread_hugepages
            || self.memory_tiers
            || self.strict_numa_groups
    }
}

/// What an in-place resize did to the reservations (pymm's `resize-in-place`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResizeVerdict {
    /// Done: each container whose blocks changed, with its blocks now (`(pod uid, container,
    /// blocks)`): the resized ones, and those whose group grew with them.
    Done(Vec<(String, String, Vec<Block>)>),
    /// Not done, and nothing changed: the kubelet's reason words (`Infeasible`: it never
    /// will be; `Deferred`: not now) and why.
    Refused {
        reason: &'static str,
        message: String,
    },
}

/// A memory-manager policy. Contract, as in the kubelet's `policy.go`: `allocate` is
/// idempotent (a container that already has blocks keeps them and nothing changes), and so
/// is `remove_container` (removing an unknown container does nothing).
pub trait MemoryPolicy: Send + Sync {
    /// The name written into the state file (`Static`, `None`).
    fn name(&self) -> &'static str;
    /// A copy, for undoing an operation whose durable write failed.
    fn clone_box(&self) -> Box<dyn MemoryPolicy>;
    /// Validates (or initialises) a restored state at start-up.
    fn start(&mut self, state: &mut State) -> Result<()>;
    /// Container-scope hints, all of them or only the preferred ones. `Err` only where the
    /// kubelet itself would crash.
    fn container_hints(
        &self,
        state: &State,
        pod: &Pod,
        container: &str,
        extent: Extent,
    ) -> Result<ProviderHints>;
    /// Pod-scope hints.
    fn pod_hints(&self, state: &State, pod: &Pod, extent: Extent) -> Result<ProviderHints>;
    /// Reserves memory for one container following the topology manager's hint.
    fn allocate(
        &mut self,
        state: &mut State,
        pod: &Pod,
        container: &str,
        hint: TopologyHint,
    ) -> Result<()>;
    /// `AllocatePod` (the pod-level resource managers, pod scope): one allocation for the
    /// whole pod with the Topology Manager's hint; [`EngineError::EmptyPodSharedPool`] when
    /// its budget leaves no shared pool. Idempotent: a pod that has its reservation keeps it.
    fn allocate_pod(
        &mut self,
        _state: &mut State,
        _pod: &Pod,
        _hint: TopologyHint,
    ) -> Result<PodAllocation> {
        Ok(PodAllocation::default())
    }
    /// pymm's in-place resize of `old` (the pod as allocated) to `new` (as desired): each
    /// container's reservation grows or shrinks where it is, or its group extends to nodes
    /// nobody uses; all of it, or nothing. `single_numa_node`: a container may not span
    /// nodes. The kubelet's own policies resize nothing.
    fn resize(
        &mut self,
        _state: &mut State,
        _old: &Pod,
        _new: &Pod,
        _single_numa_node: bool,
    ) -> Result<ResizeVerdict> {
        Ok(ResizeVerdict::Done(Vec::new()))
    }
    /// Releases a container's memory.
    fn remove_container(&mut self, state: &mut State, pod_uid: &str, container: &str);
    /// Whether the policy pins this pod's memory (the Static policy: Guaranteed pods).
    fn pins(&self, _pod: &Pod) -> bool {
        false
    }
    /// Reserves memory for one container on exactly `nodes` (a plan's or a defragmentation
    /// move's choice) where the memory manager's own rules allow that set now; otherwise a
    /// [`EngineError::Placement`] with the reason, and nothing changes.
    fn allocate_on(
        &mut self,
        _state: &mut State,
        pod: &Pod,
        container: &str,
        nodes: &[i64],
    ) -> Result<()> {
        Err(EngineError::Placement {
            message: format!(
                "[pymm] pod {:?}: the {} memory-manager policy pins no memory",
                pod.uid,
                self.name()
            ),
            pod: pod.uid.clone(),
            container: Some(container.to_string()),
            nodes: nodes.to_vec(),
        })
    }
    /// `GetAllocatableMemory`: one block per node and resource with allocatable > 0.
    fn allocatable_memory(&self, state: &State) -> Vec<Block>;
    /// The machine state rebased onto this machine when the restored one differs only by a
    /// drift of node totals within `tolerance` bytes and every assignment still fits.
    fn tolerate_drift(&self, _state: &State, _tolerance: u64) -> Option<MachineState> {
        None
    }
    /// The least tolerance with which [`MemoryPolicy::tolerate_drift`] accepts `state`.
    fn least_drift_tolerance(&self, _state: &State) -> Option<u64> {
        None
    }
    /// A state rebuilt from the running containers' assignments (a lost state file).
    fn rebuild(&self, entries: Assignments) -> Result<State> {
        if entries.is_empty() {
            return Ok(State::default());
        }
        Err(EngineError::config(format!(
            "policy {:?} keeps no assignments to rebuild",
            self.name()
        )))
    }
}
