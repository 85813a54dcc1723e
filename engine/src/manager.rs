//! The manager: topology-manager admission around a memory-manager policy, with the kubelet's
//! glue (stale-state removal, container start, removal), and a trace of every hint call and
//! Allocate for replay and debugging.

use crate::checkpoint;
pub use crate::config::{Config, MemoryPolicyName, Scope, Search};
use crate::error::{EngineError, Result};
use crate::hints::{Bounds, Extent, ProviderHints, TopologyHint};
use crate::machine::Machine;
use crate::nodemask::IdMap;
use crate::placement::Placement;
use crate::policy::{MemoryPolicy, NonePolicy, PodAllocation, StaticPolicy};
pub use crate::provider::ExtraProvider;
use crate::quantity::Format;
use crate::quantity::{bytes_text, Quantity};
use crate::request::{pod_requested, requested_of, Container, Pod, Requested};
use crate::reserved::{
    get_system_reserved, sum_of_reservations, MemoryReservation, SystemReserved,
};
use crate::state::{Assignments, Block, State};
use crate::topology::{policy_merge, AllocationStrategy, MergeContext, Policy};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct HintCall {
    pub container: String,
    pub scope: Scope,
    /// Provider name and answer; filled only when tracing.
    pub providers: Vec<(String, ProviderHints)>,
    pub merged: TopologyHint,
    pub admit: bool,
}

#[derive(Debug, Clone)]
pub struct AllocationRecord {
    pub container: String,
    pub affinity_from_store: TopologyHint,
    pub error: Option<String>,
    pub blocks: Option<Vec<Block>>,
}

#[derive(Debug, Clone)]
pub struct AdmitResult {
    pub admit: bool,
    /// Allocate calls made and failed (the kubelet's pinning request/error counters), kept
    /// also when `allocations` (the trace) is not.
    pub allocate_calls: u32,
    pub allocate_errors: u32,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub hint_calls: Vec<HintCall>,
    pub allocations: Vec<AllocationRecord>,
    /// Each container's blocks right after the admission, before starting the pod hands
    /// its init containers' memory back (filled by [`Manager::apply`]).
    pub placements: Vec<(String, Vec<Block>)>,
    /// The pod-level allocation (`AllocatePod`, the pod-level resource managers in pod
    /// scope): what it assigned, and whether it failed.
    pub pod_level: Option<(PodAllocation, bool)>,
}

impl AdmitResult {
    /// An admission not (yet) refused, with nothing recorded.
    pub(crate) fn admitted() -> AdmitResult {
        AdmitResult {
            admit: true,
            allocate_calls: 0,
            allocate_errors: 0,
            reason: None,
            message: None,
            hint_calls: vec![],
            allocations: vec![],
            placements: vec![],
            pod_level: None,
        }
    }

    fn reject(&mut self, reason: &str, message: String) {
        self.admit = false;
        self.reason = Some(reason.to_string());
        self.message = Some(message);
    }
}

/// What an in-place resize did ([`Op::Resize`](crate::lifecycle::Op::Resize)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResizeResult {
    /// Whether the resize was admitted (the pod as desired is the pod as allocated now).
    pub admit: bool,
    /// `Infeasible` or `Deferred` when not admitted (the kubelet's resize reasons).
    pub reason: Option<String>,
    pub message: Option<String>,
    /// pymm's `resize-in-place`: each container whose blocks changed, with its blocks now
    /// (`(pod uid, container, blocks)`; a group that grew moves its other containers too).
    pub changed: Vec<(String, String, Vec<Block>)>,
}

/// The kubelet's refusal of a memory resize of a Guaranteed pod under the Static policy
/// without `InPlacePodVerticalScalingExclusiveMemory` (`canResizePod`).
pub const RESIZE_STATIC_MEMORY_INFEASIBLE: &str =
    "Resize is infeasible for Guaranteed Pods alongside Memory Manager policy \"Static\"";

pub const TOPOLOGY_AFFINITY_ERROR: &str = "TopologyAffinityError";
pub const UNEXPECTED_ADMISSION_ERROR: &str = "UnexpectedAdmissionError";
pub const EMPTY_POD_SHARED_POOL_ERROR: &str = "EmptyPodSharedPoolError";
/// The Topology Manager's rejection in words.
const TOPOLOGY_AFFINITY_MESSAGE: &str = "Resources cannot be allocated with Topology locality";
/// Its rejection of a pod it admits as a whole (the pod-level resource managers, pod scope).
/// The reference harness rebuilt this file of the Topology Manager from its signatures, so
/// the text is less certain than the rest (SCENARIOS.md); it is the one the reference
/// results carry.
const POD_LEVEL_AFFINITY_MESSAGE: &str =
    "Pod Scope pod with pod-level resources failed admission under pod-scope topology manager";

/// A copy of a manager, to undo an operation whose durable write failed
/// ([`Manager::snapshot`], [`Manager::rollback`]).
pub struct Snapshot(Box<Manager>);

pub struct Manager {
    machine: Machine,
    /// pymm's placement options, `None` when all are off.
    placement: Option<Arc<Placement>>,
    /// Node ids <-> node-set positions, built once.
    map: IdMap,
    config: Config,
    ctx: MergeContext,
    policy: Box<dyn MemoryPolicy>,
    state: State,
    system_reserved: SystemReserved,
    /// The topology manager's hints for the containers of the pod being admitted: pod uid ->
    /// container -> hint (looked up by `&str`, without allocating).
    store: HashMap<String, HashMap<String, TopologyHint>>,
    /// container id -> (pod uid, container name)
    container_map: HashMap<String, (String, String)>,
    active: BTreeMap<String, Arc<Pod>>,
    /// Active pods known only from the state file (adopted at start-up): their specs were
    /// never given, so what is allocated to them is what their blocks hold.
    spec_unknown: std::collections::BTreeSet<String>,
    /// What start-up accepted beyond the kubelet's rules (drift rebased, state rebuilt).
    notes: Vec<String>,
    /// Whether any state may be stale (a pod with assignments that is not active). The
    /// kubelet scans every assignment at every admission; with thousands of pods that scan
    /// is most of an admission, and it finds nothing unless one of the few events that make
    /// state stale happened since the last scan.
    stale_possible: bool,
}

/// The reservation when none is configured: 1Gi of memory on every node, as the CLI has
/// always used. (The kubelet has no default: its Static policy refuses to start without one,
/// which an explicit empty `reserved_memory` reproduces.)
pub const DEFAULT_RESERVED_PER_NODE: u64 = 1 << 30;

/// The reservations in effect: the configured ones, or [`DEFAULT_RESERVED_PER_NODE`].
pub fn effective_reservations(machine: &Machine, config: &Config) -> Vec<MemoryReservation> {
    if let Some(r) = &config.reserved {
        return r.clone();
    }
    let q = Quantity::from_bytes(DEFAULT_RESERVED_PER_NODE, Format::BinarySI);
    machine
        .nodes
        .iter()
        .map(|n| MemoryReservation {
            numa_node: n.id as i32,
            limits: [("memory".to_string(), (q, q.to_string()))].into(),
        })
        .collect()
}

/// pymm's placement options, when any is on.
fn placement_of(machine: &Machine, config: &Config) -> Result<Option<Arc<Placement>>> {
    let m = config.memory_options;
    let t = &config.topology_options;
    let any = m.any()
        || t.restrict_to_cpu_numa_nodes
        || t.numa_allocation_strategy != AllocationStrategy::None;
    Ok(if any {
        Some(Arc::new(Placement::new(machine, config)?))
    } else {
        None
    })
}

fn build_policy(
    machine: &Machine,
    config: &Config,
    bounded: bool,
    placement: Option<Arc<Placement>>,
) -> Result<(Box<dyn MemoryPolicy>, SystemReserved)> {
    match config.memory_policy {
        MemoryPolicyName::None => Ok((Box::new(NonePolicy), SystemReserved::new())),
        MemoryPolicyName::Static => {
            let reserved = effective_reservations(machine, config);
            let node_alloc = config
                .node_allocatable
                .clone()
                .unwrap_or_else(|| sum_of_reservations(&reserved));
            let sr = get_system_reserved(machine, &node_alloc, &reserved)?;
            let bounds = bounded.then(|| Bounds {
                distances: machine.distances.clone(),
                ..Bounds::default()
            });
            let p = StaticPolicy::new(machine.clone(), sr.clone(), config.version)?
                .with_bounds(bounds)
                .with_placement(placement)
                .with_gates(config.gates.clone());
            Ok((Box::new(p), sr))
        }
    }
}

/// The merge context, and whether hints are searched in bounded mode.
fn merge_context(machine: &Machine, config: &Config) -> Result<(MergeContext, bool)> {
    let opts = &config.topology_options;
    let n = machine.nodes.len();
    let above = n > opts.max_allowable_numa_nodes;
    let bounded = match config.search {
        Search::Exact => false,
        Search::Bounded => true,
        Search::Auto => above,
    };
    if config.search == Search::Exact && config.topology_policy != Policy::None && above {
        return Err(EngineError::config(format!(
            "unsupported on machines with more than {} NUMA Nodes",
            opts.max_allowable_numa_nodes
        )));
    }
    let default = IdMap::new(machine.node_ids().map(i64::from).collect())?.all();
    let closest = if opts.prefer_closest_numa_nodes {
        // Distances by node position, as node sets are (machine rows are in id order).
        let Some(d) = &machine.distances else {
            return Err(EngineError::config(
                "cannot discover NUMA topology: error getting NUMA distances from cadvisor",
            ));
        };
        Some(d.clone())
    } else {
        None
    };
    let mut ctx = MergeContext::plain(default, closest);
    ctx.strategy = opts.numa_allocation_strategy;
    Ok((ctx, bounded))
}

/// Adds to a start-up mismatch what pymm could do beyond the kubelet: keep the reservations
/// when the node totals only drifted (`least`: the tolerance that would be needed).
fn with_drift_hint(e: EngineError, least: Option<u64>, config: &Config) -> EngineError {
    match (e, least) {
        (
            EngineError::StateMismatch {
                message,
                kind,
                mut details,
                ..
            },
            Some(least),
        ) => {
            let configured = match config.drift_tolerance {
                Some(t) => format!(" (the configured tolerance is {})", bytes_text(t)),
                None => String::new(),
            };
            let text = bytes_text(least);
            details.push(format!(
                "beyond the kubelet: node totals drifted by at most {text} and every assignment still fits; a drift tolerance of at least {text} keeps the reservations and rebases the totals{configured}"
            ));
            EngineError::StateMismatch {
                message,
                kind,
                details,
                least_drift: Some(least),
            }
        }
        (e, _) => e,
    }
}

impl Clone for Manager {
    fn clone(&self) -> Manager {
        Manager {
            placement: self.placement.clone(),
            machine: self.machine.clone(),
            map: self.map.clone(),
            config: self.config.clone(),
            ctx: self.ctx.clone(),
            policy: self.policy.clone_box(),
            state: self.state.clone(),
            system_reserved: self.system_reserved.clone(),
            store: self.store.clone(),
            container_map: self.container_map.clone(),
            active: self.active.clone(),
            spec_unknown: self.spec_unknown.clone(),
            notes: self.notes.clone(),
            stale_possible: self.stale_possible,
        }
    }
}

impl Manager {
    /// Builds a manager as the kubelet's start-up does: topology manager first, then the
    /// memory manager, then restoring `checkpoint` (the state file's text, if there is one)
    /// and validating it against the machine. `state_path` only appears in error messages.
    pub fn new(
        machine: Machine,
        config: Config,
        checkpoint_text: Option<&str>,
        state_path: &str,
    ) -> Result<Manager> {
        let policy_name = match config.memory_policy {
            MemoryPolicyName::Static => "Static",
            MemoryPolicyName::None => "None",
        };
        let state = match checkpoint_text {
            Some(t) => {
                let mut s = checkpoint::restore_as(t, policy_name, state_path, config.version)?;
                if !config.pod_level_resource_managers() {
                    // Restored only with PodLevelResourceManagers on (and so written back
                    // only then), as the kubelet does.
                    s.pod_entries.clear();
                }
                Some(s)
            }
            None => None,
        };
        let mut m = Manager::with_state(machine, config, state.unwrap_or_default())?;
        m.adopt_restored_pods();
        Ok(m)
    }

    /// A manager started on a state already decoded (its policy name checked by the caller),
    /// validated as the kubelet validates a restored file. Pods in the state are not taken as
    /// running: see [`Manager::adopt_all_entries`].
    pub fn with_state(machine: Machine, config: Config, mut state: State) -> Result<Manager> {
        let machine = machine.validated()?;
        let (ctx, bounded) = merge_context(&machine, &config)?;
        let placement = placement_of(&machine, &config)?;
        let (mut policy, system_reserved) =
            build_policy(&machine, &config, bounded, placement.clone())?;
        let mut notes = Vec::new();
        if let Err(e) = policy.start(&mut state) {
            let rebased = match (&e, config.drift_tolerance) {
                (EngineError::StateMismatch { .. }, Some(tol)) => {
                    policy.tolerate_drift(&state, tol)
                }
                _ => None,
            };
            let Some(ms) = rebased else {
                let e = with_drift_hint(e, policy.least_drift_tolerance(&state), &config);
                return Err(e);
            };
            notes.push(format!(
                "the restored state differed from this machine ({}); node totals drifted within the tolerance of {} and every assignment still fits, so the totals were rebased",
                e.message(),
                bytes_text(config.drift_tolerance.unwrap_or(0))
            ));
            state.machine_state = ms;
        }
        let map = IdMap::new(machine.node_ids().map(i64::from).collect())?;
        let m = Manager {
            placement,
            map,
            machine,
            config,
            ctx,
            policy,
            state,
            system_reserved,
            store: HashMap::new(),
            container_map: HashMap::new(),
            active: BTreeMap::new(),
            spec_unknown: Default::default(),
            notes,
            stale_possible: true,
        };
        Ok(m)
    }

    /// A manager whose state is rebuilt from the running containers' assignments, for when
    /// the state file is lost. The assignments must refer to existing nodes and resources and
    /// fit the machine.
    pub fn rebuilt(machine: Machine, config: Config, entries: Assignments) -> Result<Manager> {
        let mut m = Manager::new(machine, config, None, "")?;
        let n = entries.len();
        m.state = m.policy.rebuild(entries)?;
        m.notes.push(format!(
            "the state was rebuilt from the assignments of {n} pods"
        ));
        m.adopt_restored_pods();
        Ok(m)
    }

    /// What start-up accepted beyond the kubelet's rules.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// Takes every pod with assignments as active and started, as a restart from the state
    /// file would (pods already known keep their specs).
    pub fn adopt_all_entries(&mut self) {
        let known: Vec<String> = self.active.keys().cloned().collect();
        let before = std::mem::take(&mut self.active);
        self.adopt_restored_pods();
        for uid in known {
            if let Some(p) = before.get(&uid) {
                self.spec_unknown.remove(&uid);
                self.active.insert(uid, Arc::clone(p));
            }
        }
    }

    /// A state file is all a fresh process knows about running pods (the kubelet asks its pod
    /// sources instead): every pod with assignments is taken as active and its containers as
    /// started, so stale-state removal keeps them and removal releases them.
    fn adopt_restored_pods(&mut self) {
        for (uid, ctrs) in &self.state.entries {
            let containers = ctrs
                .keys()
                .map(|name| Container {
                    name: name.clone(),
                    requests: BTreeMap::new(),
                    limits: BTreeMap::new(),
                    restartable: false,
                    requested: std::sync::OnceLock::new(),
                })
                .collect();
            for name in ctrs.keys() {
                self.container_map
                    .insert(container_id(uid, name), (uid.clone(), name.clone()));
            }
            let pod = Pod {
                uid: uid.clone(),
                name: String::new(),
                namespace: String::new(),
                containers,
                init_containers: Default::default(),
                resources: Default::default(),
                annotations: BTreeMap::new(),
                tier: None,
                qos: std::sync::OnceLock::new(),
                index: std::sync::OnceLock::new(),
            };
            self.active.insert(uid.clone(), Arc::new(pod));
            self.spec_unknown.insert(uid.clone());
        }
    }

    /// The whole manager as it is now. A caller that persists the state takes one before
    /// each operation and rolls back to it when the write fails, so that memory never holds
    /// what the caller was told did not happen (the state file is written whole at every
    /// operation, so copying the state costs no more than writing it).
    pub fn snapshot(&self) -> Snapshot {
        Snapshot(Box::new(self.clone()))
    }

    pub fn rollback(&mut self, s: Snapshot) {
        *self = *s.0;
    }

    /// [`Op::Release`](crate::lifecycle::Op::Release): gives one container's memory back, or
    /// (without `container`) every container's of the pod, which is then no longer active;
    /// started or not. Unknown pods and containers are an error unless `missing_ok`. Returns
    /// whether anything was known.
    pub(crate) fn release(
        &mut self,
        pod_uid: &str,
        container: Option<&str>,
        missing_ok: bool,
    ) -> Result<bool> {
        let in_state = self.state.entries.get(pod_uid);
        let active = self.active.get(pod_uid);
        let known = match container {
            None => in_state.is_some() || active.is_some(),
            Some(c) => {
                in_state.is_some_and(|m| m.contains_key(c))
                    || active.is_some_and(|p| p.container(c).is_some())
            }
        };
        if !known {
            if missing_ok {
                return Ok(false);
            }
            let message = match container {
                None => format!(
                    "pod {pod_uid:?} is not known to this manager: it has no memory assignment and was not admitted"
                ),
                Some(c) if in_state.is_some() || active.is_some() => {
                    format!("pod {pod_uid:?} has no container {c:?}")
                }
                Some(_) => format!("pod {pod_uid:?} is not known to this manager"),
            };
            return Err(EngineError::NotFound {
                message,
                pod: pod_uid.to_string(),
                container: container.map(str::to_string),
            });
        }
        match container {
            None => self.release_pod(pod_uid),
            Some(c) => {
                self.policy.remove_container(&mut self.state, pod_uid, c);
                self.container_map.remove(&container_id(pod_uid, c));
            }
        }
        Ok(true)
    }

    /// [`Op::Resize`](crate::lifecycle::Op::Resize): the kubelet's `canResizePod` for what the
    /// memory manager decides, then, admitted, the pod as desired becomes the pod as
    /// allocated (pymm's `resize-in-place` first grows or shrinks the reservations).
    pub(crate) fn resize(&mut self, desired: &Arc<Pod>) -> Result<ResizeResult> {
        let uid = &desired.uid;
        let allocated = self
            .active
            .get(uid)
            .cloned()
            .ok_or_else(|| EngineError::NotFound {
                message: format!(
                    "pod {uid:?} is not admitted: only an admitted pod can be resized"
                ),
                pod: uid.clone(),
                container: None,
            })?;
        let known = !self.spec_unknown.contains(uid);
        let version = self.config.version;
        let pod_level_qos = version.is_1_38() && self.config.gates.pod_level_resources();
        let qos = desired.qos_class_for(pod_level_qos);
        if known {
            crate::request::check_resize(&allocated, desired)?;
            if allocated.qos_class_for(pod_level_qos) != qos {
                return Err(EngineError::Pod {
                    message:
                        "spec: Forbidden: Pod QOS Class may not change as a result of resizing"
                            .into(),
                    field: Some("spec".into()),
                });
            }
        }
        let in_place = self.config.memory_options.resize_in_place;
        if !version.is_1_38() && !in_place {
            return Err(EngineError::config(format!(
                "in-place resize is modelled on kubelet 1.38 (kubelet_version \"1.38\"); with kubelet {} pymm resizes only with its memory-manager option resize-in-place",
                version.as_str()
            )));
        }
        let static_policy = self.config.memory_policy == MemoryPolicyName::Static;
        // What is allocated: the spec last admitted, or, for a pod known only from the state
        // file, what its blocks hold.
        let allocated_memory = |name: &str| -> Option<u64> {
            if known {
                let q = allocated.container(name)?.requests.get("memory").copied();
                return q.unwrap_or(Quantity::ZERO).bytes().ok();
            }
            let blocks = self.state.blocks(uid, name)?;
            blocks
                .iter()
                .find(|b| b.resource == "memory")
                .map(|b| b.size)
        };
        let memory_changed = desired
            .init_containers
            .iter()
            .filter(|c| c.restartable)
            .chain(desired.containers.iter())
            .any(|c| {
                let want = c
                    .requests
                    .get("memory")
                    .copied()
                    .unwrap_or(Quantity::ZERO)
                    .bytes()
                    .ok();
                match allocated_memory(&c.name) {
                    Some(have) => want != Some(have),
                    None => known,
                }
            });
        let mut out = ResizeResult {
            admit: true,
            reason: None,
            message: None,
            changed: Vec::new(),
        };
        if static_policy
            && qos == crate::request::QosClass::Guaranteed
            && memory_changed
            && !self.config.gates.in_place_exclusive_memory()
            && !in_place
        {
            out.admit = false;
            out.reason = Some(crate::policy::RESIZE_INFEASIBLE.into());
            out.message = Some(RESIZE_STATIC_MEMORY_INFEASIBLE.into());
            return Ok(out);
        }
        if in_place {
            let single = self.config.topology_policy == Policy::SingleNumaNode;
            match self
                .policy
                .resize(&mut self.state, &allocated, desired, single)?
            {
                crate::policy::ResizeVerdict::Done(changed) => out.changed = changed,
                crate::policy::ResizeVerdict::Refused { reason, message } => {
                    out.admit = false;
                    out.reason = Some(reason.to_string());
                    out.message = Some(message);
                    return Ok(out);
                }
            }
        }
        self.active.insert(uid.clone(), Arc::clone(desired));
        self.spec_unknown.remove(uid);
        Ok(out)
    }

    /// [`Op::Restart`](crate::lifecycle::Op::Restart): a new manager from the state file,
    /// keeping the running containers. On an error the manager is left as it was.
    pub(crate) fn restart(
        &mut self,
        machine: Option<Machine>,
        config: Option<Config>,
        checkpoint_text: &str,
        state_path: &str,
    ) -> Result<()> {
        let machine = machine.unwrap_or_else(|| self.machine.clone());
        let config = config.unwrap_or_else(|| self.config.clone());
        let mut fresh = Manager::new(machine, config, Some(checkpoint_text), state_path)?;
        fresh.container_map = std::mem::take(&mut self.container_map);
        fresh.active = std::mem::take(&mut self.active);
        fresh.spec_unknown = std::mem::take(&mut self.spec_unknown);
        *self = fresh;
        Ok(())
    }

    pub fn machine(&self) -> &Machine {
        &self.machine
    }
    /// Node ids <-> positions of the node sets in hints.
    pub fn id_map(&self) -> &IdMap {
        &self.map
    }
    pub fn config(&self) -> &Config {
        &self.config
    }
    pub fn state(&self) -> &State {
        &self.state
    }
    pub fn system_reserved(&self) -> &SystemReserved {
        &self.system_reserved
    }
    pub fn policy_name(&self) -> &'static str {
        self.policy.name()
    }
    pub fn active_pods(&self) -> impl Iterator<Item = &Pod> {
        self.active.values().map(|p| &**p)
    }

    /// The state file as the kubelet would write it now.
    pub fn checkpoint_json(&self) -> String {
        checkpoint::to_json_as(self.policy.name(), &self.state, self.config.version)
    }

    pub fn allocatable_memory(&self) -> Vec<Block> {
        self.policy.allocatable_memory(&self.state)
    }

    /// `removeStaleState`: forget containers of pods that are neither active nor `keep`.
    /// Makes the next admission scan every assignment for stale state, as the kubelet does at
    /// every admission (tests check that skipping the scan never changes an outcome).
    pub fn assume_stale_state(&mut self) {
        self.stale_possible = true;
    }

    /// Declares that every pod in the state counts as running (see [`Manager::fill_with`]).
    pub fn assume_no_stale_state(&mut self) {
        self.stale_possible = false;
    }

    pub fn remove_stale_state(&mut self, keep: Option<&Pod>) {
        // Re-admitting a pod that has assignments can leave some of them stale (a container
        // it no longer has).
        let readmitted = keep.is_some_and(|p| self.state.entries.contains_key(&p.uid));
        if !self.stale_possible && !readmitted {
            return;
        }
        self.stale_possible = false;
        let alive = |pod: &str, c: &str| {
            self.active
                .get(pod)
                .is_some_and(|p| p.container(c).is_some())
                || keep.is_some_and(|p| p.uid == pod && p.container(c).is_some())
        };
        let mut stale: Vec<(String, String)> = Vec::new();
        for (pod, ctrs) in &self.state.entries {
            // Most admissions find nothing stale: look the pod up once, not per container.
            let active = self.active.get(pod);
            for c in ctrs.keys() {
                let live = active.is_some_and(|p| p.container(c).is_some());
                if !live && !alive(pod, c) {
                    stale.push((pod.clone(), c.clone()));
                }
            }
        }
        let stale_ids: Vec<String> = self
            .container_map
            .iter()
            .filter(|(_, (p, c))| !alive(p, c))
            .map(|(id, _)| id.clone())
            .collect();
        for (pod, c) in stale {
            self.policy.remove_container(&mut self.state, &pod, &c);
        }
        for id in stale_ids {
            self.container_map.remove(&id);
        }
    }

    /// The memory manager's hints for a container (or, with `None`, for the pod, pod scope).
    pub fn memory_hints(&self, pod: &Pod, container: Option<&str>) -> Result<ProviderHints> {
        if let Some(c) = container {
            // Asked from outside, an unknown container is a mistake to report, not "no hints".
            pod.require_container(c)?;
        }
        self.memory_hints_to(pod, container, Extent::Full)
    }

    pub(crate) fn memory_hints_to(
        &self,
        pod: &Pod,
        container: Option<&str>,
        extent: Extent,
    ) -> Result<ProviderHints> {
        match container {
            Some(c) => self.policy.container_hints(&self.state, pod, c, extent),
            None => self.policy.pod_hints(&self.state, pod, extent),
        }
    }

    /// The kubelet's `Allocate(pod, container)` with the hint the topology manager stored.
    pub fn allocate(&mut self, pod: &Pod, container: &str) -> Result<()> {
        let hint = self.stored_hint(&pod.uid, container);
        self.policy.allocate(&mut self.state, pod, container, hint)
    }

    /// What the topology-manager store holds for a container (no preference without one).
    fn stored_hint(&self, pod_uid: &str, container: &str) -> TopologyHint {
        self.store
            .get(pod_uid)
            .and_then(|m| m.get(container))
            .copied()
            .unwrap_or(TopologyHint {
                affinity: None,
                preferred: false,
            })
    }

    /// Sets what the topology-manager store returns for a container.
    pub fn set_stored_hint(&mut self, pod_uid: &str, container: &str, hint: TopologyHint) {
        let pod = match self.store.get_mut(pod_uid) {
            Some(m) => m,
            None => self.store.entry(pod_uid.to_string()).or_default(),
        };
        match pod.get_mut(container) {
            Some(h) => *h = hint,
            None => {
                pod.insert(container.to_string(), hint);
            }
        }
    }

    /// Allocate with `hint`, what the topology-manager store holds for the container (the
    /// admission passes what it just stored, rather than looking it up again).
    fn record_allocation(
        &mut self,
        pod: &Pod,
        container: &str,
        hint: TopologyHint,
        trace: bool,
        out: &mut AdmitResult,
    ) -> Result<()> {
        let r = self.policy.allocate(&mut self.state, pod, container, hint);
        out.allocate_calls += 1;
        out.allocate_errors += u32::from(r.is_err());
        if !trace {
            return r;
        }
        out.allocations.push(AllocationRecord {
            container: container.to_string(),
            affinity_from_store: hint,
            error: r.as_ref().err().map(|e| e.message().to_string()),
            blocks: self.state.blocks(&pod.uid, container).cloned(),
        });
        r
    }

    /// `AllocatePod` with `hint` (the one stored for the pod's first container), recorded as
    /// an allocation of container `""`.
    fn record_pod_allocation(
        &mut self,
        pod: &Pod,
        hint: TopologyHint,
        trace: bool,
        out: &mut AdmitResult,
    ) -> Result<()> {
        let r = self.policy.allocate_pod(&mut self.state, pod, hint);
        let counts = match &r {
            Ok(c) => *c,
            // Only AllocatePod's own pinning request was counted when it failed.
            Err(_) => PodAllocation {
                pinning_requests: 1,
                ..PodAllocation::default()
            },
        };
        out.allocate_calls += counts.pinning_requests;
        out.allocate_errors += u32::from(r.is_err());
        out.pod_level = Some((counts, r.is_err()));
        if trace {
            out.allocations.push(AllocationRecord {
                container: String::new(),
                affinity_from_store: hint,
                error: r.as_ref().err().map(|e| e.message().to_string()),
                blocks: self
                    .state
                    .pod_entries
                    .get(&pod.uid)
                    .and_then(|e| e.memory_blocks.clone()),
            });
        }
        r.map(|_| ())
    }

    /// The merge context for one pod under pymm's options, `None` when they change nothing:
    /// with utilisation scores when an allocation strategy needs them (the memory manager's
    /// over the resources the container or pod requests, averaged with the scores other
    /// providers gave their hints), and with the default affinity narrowed to the nodes the
    /// pod may use (its memory tier, CPU nodes), as its hints are.
    fn pod_context(
        &self,
        pod: &Pod,
        container: Option<&str>,
        extra: &[ExtraProvider],
    ) -> Option<MergeContext> {
        let p = self.placement.as_ref()?;
        let allowed = p.allowed(pod);
        if !p.uses_scores() && allowed.is_none() {
            return None;
        }
        let mut ctx = self.ctx.clone();
        if let Some((nodes, _)) = allowed {
            ctx.default = nodes;
        }
        if p.uses_scores() {
            // A container's requests are computed once and kept on it.
            let pod_total;
            let requested = match container {
                Some(c) => pod.container(c).and_then(|c| requested_of(c).ok()),
                None => {
                    pod_total = pod_requested(pod, self.config.version.has_sidecars()).ok();
                    pod_total.as_ref()
                }
            };
            let mut scores = p.scores(&self.state, requested.unwrap_or(&Requested::new()));
            for e in extra {
                let given = match container {
                    Some(c) => e.container_scores.get(c),
                    None => Some(&e.pod_scores),
                };
                scores.extra.extend(given.into_iter().flatten().copied());
            }
            ctx.scores = Some(scores);
        }
        Some(ctx)
    }

    fn hint_call(
        &mut self,
        pod: &Pod,
        container: Option<&str>,
        extra: &[ExtraProvider],
        trace: bool,
    ) -> Result<HintCall> {
        let extra_answers: Vec<&ProviderHints> = extra
            .iter()
            .map(|p| match container {
                Some(c) => p.containers.get(c).unwrap_or(&None),
                None => &p.pod,
            })
            .collect();
        let scored = self.pod_context(pod, container, extra);
        let ctx = scored.as_ref().unwrap_or(&self.ctx);
        let merge_with = |mm: &ProviderHints| {
            let mut all: Vec<&ProviderHints> = extra_answers.clone();
            all.push(mm);
            policy_merge(self.config.topology_policy, &all, ctx)
        };
        // The preferred hints decide the merge whenever it ends preferred (a preferred
        // permutation needs a preferred hint from every list), so the full list, which can
        // hold 2^N - 1 sets, is built only when it does not, or when the caller wants it.
        let first = if trace {
            Extent::Full
        } else {
            Extent::Preferred
        };
        let mut mm = self.memory_hints_to(pod, container, first)?;
        let (mut merged, mut admit) = merge_with(&mm);
        // A preferred-only answer without any preferred hint is already the full list.
        if !trace && !merged.preferred && has_preferred(&mm) {
            mm = self.memory_hints_to(pod, container, Extent::Full)?;
            (merged, admit) = merge_with(&mm);
        }
        let providers = if trace {
            let mut v: Vec<(String, ProviderHints)> = extra
                .iter()
                .zip(&extra_answers)
                .map(|(p, a)| (p.name.clone(), (*a).clone()))
                .collect();
            v.push(("memory".into(), mm.clone()));
            v
        } else {
            vec![]
        };
        Ok(HintCall {
            container: container.unwrap_or("").to_string(),
            scope: self.config.scope,
            providers,
            merged,
            admit,
        })
    }

    /// One topology-manager consultation: the merged hint, or `None` with `out` rejected
    /// (hint generation failed, or the policy does not admit the merged hint).
    fn consult(
        &mut self,
        pod: &Pod,
        container: Option<&str>,
        extra: &[ExtraProvider],
        trace: bool,
        out: &mut AdmitResult,
        rejection: &str,
    ) -> Option<TopologyHint> {
        let call = match self.hint_call(pod, container, extra, trace) {
            Ok(call) => call,
            Err(e) => {
                out.reject(UNEXPECTED_ADMISSION_ERROR, e.message().to_string());
                return None;
            }
        };
        let (merged, ok) = (call.merged, call.admit);
        out.hint_calls.push(call);
        if !ok {
            out.reject(TOPOLOGY_AFFINITY_ERROR, rejection.to_string());
            return None;
        }
        Some(merged)
    }

    /// Topology-manager admission of a pod, as `Admit` in the kubelet's scopes. On success the
    /// pod becomes active; a rejected pod's partial allocations stay until the next admission
    /// removes them as stale, as in the kubelet. The pod is shared, not copied.
    pub(crate) fn admit_shared(
        &mut self,
        shared: &Arc<Pod>,
        extra: &[ExtraProvider],
        trace: bool,
    ) -> AdmitResult {
        let out = self.admit_inner(shared, extra, trace);
        // Each Allocate is handed the merged hint the kubelet would store for it; what a
        // caller stored for this pod only carries to its Allocate calls (policy `none`), and
        // kept, it would grow with every pod ever admitted.
        if !self.store.is_empty() {
            self.store.remove(&shared.uid);
        }
        out
    }

    fn admit_inner(
        &mut self,
        shared: &Arc<Pod>,
        extra: &[ExtraProvider],
        trace: bool,
    ) -> AdmitResult {
        let pod: &Pod = shared;
        let mut out = AdmitResult::admitted();
        self.remove_stale_state(Some(pod));
        if self.admit_steps(pod, extra, trace, &mut out) {
            self.spec_unknown.remove(&pod.uid);
            if self
                .active
                .insert(pod.uid.clone(), Arc::clone(shared))
                .is_some()
            {
                // The pod replaced an earlier spec of itself: what only that spec had is
                // stale now.
                self.stale_possible = true;
            }
        } else {
            // A rejected pod's partial allocations stay until the next admission removes
            // them; nothing else can be stale (the scan above left nothing).
            self.stale_possible = self.state.entries.contains_key(&pod.uid);
        }
        out
    }

    /// Hints, merge, verdict and Allocate for every container, as the kubelet's scopes do
    /// them; false when the pod is rejected (`out` says why).
    fn admit_steps(
        &mut self,
        pod: &Pod,
        extra: &[ExtraProvider],
        trace: bool,
        out: &mut AdmitResult,
    ) -> bool {
        let unexpected = |e: &EngineError| {
            format!(
                "Allocate failed due to {}, which is unexpected",
                e.message()
            )
        };
        let names = || pod.all_containers().map(|c| c.name.as_str());
        if self.config.topology_policy == Policy::None {
            for c in names() {
                let hint = self.stored_hint(&pod.uid, c);
                if let Err(e) = self.record_allocation(pod, c, hint, trace, out) {
                    out.reject(UNEXPECTED_ADMISSION_ERROR, unexpected(&e));
                    return false;
                }
            }
        } else if self.config.scope == Scope::Container {
            for c in names() {
                let Some(merged) =
                    self.consult(pod, Some(c), extra, trace, out, TOPOLOGY_AFFINITY_MESSAGE)
                else {
                    return false;
                };
                if let Err(e) = self.record_allocation(pod, c, merged, trace, out) {
                    out.reject(UNEXPECTED_ADMISSION_ERROR, unexpected(&e));
                    return false;
                }
            }
        } else if self.config.pod_level_resource_managers() && pod.has_pod_level_resources() {
            // `admitUsingPodResources`: one merge, the hint stored for every container, then
            // one AllocatePod on every provider with the first container's stored hint.
            let Some(merged) =
                self.consult(pod, None, extra, trace, out, POD_LEVEL_AFFINITY_MESSAGE)
            else {
                return false;
            };
            let hint = if names().next().is_some() {
                merged
            } else {
                TopologyHint {
                    affinity: None,
                    preferred: false,
                }
            };
            if let Err(e) = self.record_pod_allocation(pod, hint, trace, out) {
                match e {
                    EngineError::EmptyPodSharedPool(m) => {
                        out.reject(EMPTY_POD_SHARED_POOL_ERROR, m)
                    }
                    e => out.reject(UNEXPECTED_ADMISSION_ERROR, unexpected(&e)),
                }
                return false;
            }
        } else {
            let Some(merged) =
                self.consult(pod, None, extra, trace, out, TOPOLOGY_AFFINITY_MESSAGE)
            else {
                return false;
            };
            for c in names() {
                if let Err(e) = self.record_allocation(pod, c, merged, trace, out) {
                    out.reject(UNEXPECTED_ADMISSION_ERROR, unexpected(&e));
                    return false;
                }
            }
        }
        true
    }

    /// Admits a pod on the nodes a caller chose (a plan, a defragmentation move) instead of the
    /// Topology Manager's merge: `targets` names each container's NUMA node ids (in pod scope
    /// the same set for every container). Each set must be one the kubelet could have reached:
    /// the memory manager's own rules allow it now (capacity, free memory, the group rules, the
    /// pod's memory tier), and under `restricted` and `single-numa-node` the merge with `extra`
    /// ends preferred on it (the memory manager and every other provider prefer that set, or
    /// have no preference). Otherwise a [`EngineError::Placement`] says why, and nothing of the
    /// pod is allocated. Stale state is removed first, as at every admission.
    pub fn admit_on(
        &mut self,
        shared: &Arc<Pod>,
        targets: &BTreeMap<String, Vec<i64>>,
        extra: &[ExtraProvider],
    ) -> Result<AdmitResult> {
        self.remove_stale_state(Some(shared));
        let (state, policy) = (self.state.clone(), self.policy.clone_box());
        let r = crate::placement::plan::admit_on(self, shared, targets, extra);
        if r.is_err() {
            self.state = state;
            self.policy = policy;
        }
        r
    }

    /// The parts [`crate::placement::plan::admit_on`] works on.
    pub(crate) fn parts(&mut self) -> (&mut State, &mut dyn MemoryPolicy) {
        (&mut self.state, self.policy.as_mut())
    }

    /// Marks a pod admitted (running) after its containers were allocated.
    pub(crate) fn mark_admitted(&mut self, shared: &Arc<Pod>) {
        self.active.insert(shared.uid.clone(), Arc::clone(shared));
        self.spec_unknown.remove(&shared.uid);
        self.stale_possible = false;
    }

    /// Whether the memory-manager policy pins this pod's memory.
    pub fn pins(&self, pod: &Pod) -> bool {
        self.policy.pins(pod)
    }

    /// pymm's placement options, `None` when all are off.
    pub fn placement(&self) -> Option<&Placement> {
        self.placement.as_deref()
    }

    /// `AddContainer`: the container started; earlier regular init containers have finished,
    /// so their memory goes back. (The kubelet's manager functions are public one by one for
    /// the vectors transcribed from its tests; drivers use [`Manager::apply`].)
    pub fn add_container(&mut self, pod: &Pod, container: &str, container_id: &str) {
        self.add_container_as(pod, container, container_id.to_string());
    }

    fn add_container_as(&mut self, pod: &Pod, container: &str, container_id: String) {
        self.container_map
            .insert(container_id, (pod.uid.clone(), container.to_string()));
        for ic in &pod.init_containers {
            if ic.name == container {
                break;
            }
            if self.config.version.has_sidecars() && ic.restartable {
                continue;
            }
            self.policy
                .remove_container(&mut self.state, &pod.uid, &ic.name);
            self.container_map
                .retain(|_, (p, c)| !(p == &pod.uid && c == &ic.name));
        }
    }

    /// [`Op::Start`](crate::lifecycle::Op::Start): every container of an admitted pod starts,
    /// in order (init containers first).
    pub(crate) fn start_pod(&mut self, pod_uid: &str) -> Result<()> {
        let pod = self
            .active
            .get(pod_uid)
            .cloned()
            .ok_or_else(|| EngineError::NotFound {
                message: format!("pod {pod_uid:?} is not admitted"),
                pod: pod_uid.to_string(),
                container: None,
            })?;
        for c in pod.all_containers() {
            self.add_container_as(&pod, &c.name, container_id(pod_uid, &c.name));
        }
        Ok(())
    }

    /// `RemoveContainer(containerID)`: an unknown id is not an error.
    pub fn remove_container_by_id(&mut self, container_id: &str) {
        if let Some((pod, c)) = self.container_map.remove(container_id) {
            self.policy.remove_container(&mut self.state, &pod, &c);
        }
    }

    /// [`Op::Stop`](crate::lifecycle::Op::Stop), the kubelet's `RemoveContainer`: a started
    /// container stops and releases its memory. One that never started (or is unknown) is
    /// not in the container map: nothing happens. Returns whether it was known.
    pub(crate) fn stop(&mut self, pod_uid: &str, container: &str) -> bool {
        let id = container_id(pod_uid, container);
        match self.container_map.remove(&id) {
            Some((pod, c)) => {
                self.policy.remove_container(&mut self.state, &pod, &c);
                true
            }
            None => false,
        }
    }

    /// [`Op::StopPod`](crate::lifecycle::Op::StopPod): every container stops as in
    /// [`Manager::stop`], and the pod is no longer active. Containers that never started keep
    /// their memory until the next admission removes it as stale. Returns whether the pod was
    /// known.
    pub(crate) fn stop_pod(&mut self, pod_uid: &str) -> bool {
        let active = self.active.remove(pod_uid);
        self.spec_unknown.remove(pod_uid);
        let mut known = active.is_some();
        match active {
            Some(p) => {
                for c in p.all_containers() {
                    known |= self.stop(pod_uid, &c.name);
                }
            }
            None => {
                for c in self.state_containers(pod_uid) {
                    known |= self.stop(pod_uid, &c);
                }
            }
        }
        // Containers that never started keep their memory until the next admission.
        if self.state.entries.contains_key(pod_uid) {
            self.stale_possible = true;
        }
        known
    }

    /// The containers the state holds blocks (or an empty entry) for, in the pod `pod_uid`.
    fn state_containers(&self, pod_uid: &str) -> Vec<String> {
        self.state
            .entries
            .get(pod_uid)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Forgets a pod's state, whether its containers started or not.
    fn release_pod(&mut self, pod_uid: &str) {
        for c in self.state_containers(pod_uid) {
            self.policy.remove_container(&mut self.state, pod_uid, &c);
        }
        self.container_map.retain(|_, (p, _)| p != pod_uid);
        self.active.remove(pod_uid);
        self.spec_unknown.remove(pod_uid);
    }

    /// Each container's blocks as the state holds them now (containers without any left out).
    pub fn placements_of(&self, pod: &Pod) -> Vec<(String, Vec<Block>)> {
        let Some(entries) = self.state.entries.get(&pod.uid) else {
            return Vec::new();
        };
        pod.all_containers()
            .filter_map(|c| {
                let blocks = entries.get(&c.name)?.as_ref()?;
                Some((c.name.clone(), blocks.clone()))
            })
            .collect()
    }

    /// `GetMemoryNUMANodes`: the union of the container's block affinities.
    pub fn container_nodes(&self, pod_uid: &str, container: &str) -> Option<Vec<i64>> {
        let ids = crate::state::block_nodes(self.state.blocks(pod_uid, container)?);
        if ids.is_empty() {
            None
        } else {
            Some(ids)
        }
    }

    /// The `cpuset.mems` value the kubelet hands to the runtime: ids joined by `,`.
    pub fn cpuset_mems(&self, pod_uid: &str, container: &str) -> Option<String> {
        self.container_nodes(pod_uid, container)
            .map(|ids| ids.iter().map(i64::to_string).collect::<Vec<_>>().join(","))
    }

    /// Replaces the state (conformance tests start from given states).
    pub fn set_state(&mut self, state: State) {
        self.stale_possible = true;
        self.state = state;
    }
    pub fn register_container(&mut self, pod_uid: &str, container: &str, container_id: &str) {
        self.container_map.insert(
            container_id.to_string(),
            (pod_uid.to_string(), container.to_string()),
        );
    }
    pub fn set_active(&mut self, pods: Vec<Pod>) {
        self.stale_possible = true;
        self.spec_unknown.clear();
        self.active = pods
            .into_iter()
            .map(|p| (p.uid.clone(), Arc::new(p)))
            .collect();
    }
}

fn has_preferred(answer: &ProviderHints) -> bool {
    answer.iter().flatten().any(|(_, hints)| {
        hints
            .as_deref()
            .is_some_and(|h| h.iter().any(|h| h.preferred))
    })
}

/// The synthetic container id pymm uses for a started container.
pub fn container_id(pod_uid: &str, container: &str) -> String {
    // Built by hand: it is made at every start and stop, and `format!` costs more than the
    // rest of a stop.
    let mut id = String::with_capacity(pod_uid.len() + 1 + container.len());
    id.push_str(pod_uid);
    id.push('/');
    id.push_str(container);
    id
}
