//! The `Static` policy (kubelet `policy_static.go`, reference §4).

use super::{MemoryPolicy, ResizeVerdict, RESIZE_DEFERRED, RESIZE_INFEASIBLE};
use crate::error::{EngineError, Result};
use crate::hints::{
    calculate_hints_bounded, calculate_hints_to, find_best_hint_by, provider_answer, set_violation,
    Bounds, Extent, ProviderHints, Reusable, TopologyHint,
};
use crate::machine::Machine;
use crate::nodemask::IdMap;
use crate::nodemask::NodeMask;
use crate::placement::Placement;
use crate::quantity::Quantity;
use crate::request::{
    is_equivalent_guaranteed, pod_budget, pod_requested, requested_of, Pod, QosClass, Requested,
};
use crate::reserved::SystemReserved;
use crate::state::{
    give, least_drift_tolerance, rebase_for_drift, rebuild_state, release, reserve, take,
    validate_state, Assignments, Block, Fill, MachineState, PodEntry, State,
};
use crate::topology::{Policy, Scores};
use crate::version::{FeatureGates, KubeletVersion};
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Clone)]
pub struct StaticPolicy {
    machine: Machine,
    /// Node ids <-> the positions node sets hold, built once from the machine.
    map: IdMap,
    system_reserved: SystemReserved,
    version: KubeletVersion,
    /// `Some` in bounded-search mode.
    bounds: Option<Bounds>,
    /// Init-container memory the pod being admitted may reuse. Held in memory only, for one pod
    /// at a time, and lost on restart, as in the kubelet.
    reusable: BTreeMap<String, Reusable>,
    /// pymm's placement options; `None` when every one is off (the kubelet exactly).
    placement: Option<Arc<Placement>>,
    /// The kubelet's feature gates (1.38: pod-level resources).
    gates: FeatureGates,
}

/// What a container without eligible memory requests asks for.
static NOTHING: Requested = Requested::new();

/// What one pod-level allocation did, for the kubelet's resource-manager metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PodAllocation {
    /// The memory manager's pinning requests (`AllocatePod` counts one, and one per init
    /// container and per app container with exclusive memory).
    pub pinning_requests: u32,
    /// Containers given exclusive slices, and containers given the shared pool.
    pub exclusive: u32,
    pub shared: u32,
    /// Containers assigned (one allocation each, `source="pod"`).
    pub containers: u32,
}

fn alloc_err(msg: &str) -> EngineError {
    EngineError::Allocation(format!("[memorymanager] {msg}"))
}

impl StaticPolicy {
    pub fn new(
        machine: Machine,
        system_reserved: SystemReserved,
        version: KubeletVersion,
    ) -> Result<Self> {
        let total: u64 = system_reserved
            .values()
            .filter_map(|m| m.get("memory"))
            .fold(0u64, |a, b| a.saturating_add(*b));
        if total == 0 {
            return Err(EngineError::reserved(
                "[memorymanager] you should specify the system reserved memory",
            ));
        }
        let map = if machine.nodes.is_empty() {
            // The kubelet's own tests run the policy without a machine: node ids are then
            // the bitmask's bit numbers.
            IdMap::new((0..crate::nodemask::MAX_NODES as i64).collect())?
        } else {
            IdMap::new(machine.node_ids().map(i64::from).collect())?
        };
        Ok(StaticPolicy {
            map,
            machine,
            system_reserved,
            version,
            bounds: None,
            reusable: BTreeMap::new(),
            placement: None,
            gates: FeatureGates::defaults(version),
        })
    }

    /// Sets the kubelet's feature gates (the defaults of the version otherwise).
    pub fn with_gates(mut self, gates: FeatureGates) -> Self {
        self.gates = gates;
        self
    }

    /// Turns on pymm's placement options.
    pub fn with_placement(mut self, placement: Option<Arc<Placement>>) -> Self {
        self.placement = placement;
        self
    }

    /// Switches hint generation to the bounded search.
    pub fn with_bounds(mut self, bounds: Option<Bounds>) -> Self {
        self.bounds = bounds;
        self
    }

    /// Seeds the reusable init-container memory of a pod (restoring kubelet test fixtures).
    pub fn set_reusable(&mut self, pod_uid: &str, reusable: Reusable) {
        self.reusable.insert(pod_uid.to_string(), reusable);
    }

    /// `PodLevelResourceManagers` (a 1.38 gate): it decides how requests are read.
    fn plrm(&self) -> bool {
        self.version.is_1_38() && self.gates.pod_level_resource_managers()
    }

    /// `GetPodQOS` of the selected kubelet (1.38: from the pod's own resources when it sets
    /// them, with `PodLevelResources`).
    fn qos(&self, pod: &Pod) -> QosClass {
        pod.qos_class_for(self.version.is_1_38() && self.gates.pod_level_resources())
    }

    fn skips(&self, pod: &Pod) -> bool {
        if self.qos(pod) != QosClass::Guaranteed {
            return true;
        }
        if !pod.has_pod_level_resources() {
            return false;
        }
        if self.version.is_1_38() {
            // "pod-level resources which are not supported by the static Memory manager
            // policy", unless both gates say they are.
            !self.gates.manages_pod_level()
        } else {
            self.version.skips_pod_level_resources()
        }
    }

    /// Whether a container asks for nothing the policy manages: skipped by hints and
    /// Allocate (1.37, PR #138770).
    fn asks_nothing(&self, req: &Requested) -> bool {
        self.version.skips_containers_without_memory() && req.is_empty()
    }

    /// `getPodRequestedResources`: the pod's own budget under the pod-level resource
    /// managers, else what its containers ask for together.
    fn pod_req(&self, pod: &Pod) -> Result<Requested> {
        if self.plrm() && pod.has_pod_level_resources() {
            pod_budget(pod)
        } else {
            pod_requested(pod, self.version.has_sidecars())
        }
    }

    fn is_regular_init(&self, pod: &Pod, container: &str) -> bool {
        pod.init_containers
            .iter()
            .any(|c| c.name == container && !self.is_sidecar(c))
    }

    fn reusable_for(&self, pod: &Pod) -> Option<&Reusable> {
        self.reusable.get(&pod.uid)
    }

    fn hints(
        &self,
        ms: &MachineState,
        pod: &Pod,
        req: &Requested,
        extent: Extent,
    ) -> Result<Vec<TopologyHint>> {
        match self.placement.as_ref().and_then(|p| p.allowed(pod)) {
            Some((allowed, _)) => {
                let view = self.only(ms, allowed);
                self.hints_over(&view, pod, req, extent)
            }
            None => self.hints_over(ms, pod, req, extent),
        }
    }

    /// The machine state restricted to some nodes (a pod's memory tier): hints over it name
    /// only those nodes, and the preferred size is the smallest among them.
    fn only(&self, ms: &MachineState, allowed: NodeMask) -> MachineState {
        ms.iter()
            .filter(|(id, _)| {
                self.map
                    .position(**id)
                    .is_some_and(|p| allowed.has(p as u32))
            })
            .map(|(id, n)| (*id, n.clone()))
            .collect()
    }

    fn hints_over(
        &self,
        ms: &MachineState,
        pod: &Pod,
        req: &Requested,
        extent: Extent,
    ) -> Result<Vec<TopologyHint>> {
        match &self.bounds {
            None => calculate_hints_to(ms, req, self.reusable_for(pod), extent, &self.map),
            Some(b) => {
                calculate_hints_bounded(ms, req, self.reusable_for(pod), extent, b, &self.map)
            }
        }
    }

    /// `findBestHint` over the hints that pass `keep`: the preferred ones decide when any
    /// passes, so the full list is computed only when none does.
    fn best_hint(
        &self,
        state: &State,
        pod: &Pod,
        req: &Requested,
        keep: impl Fn(&TopologyHint) -> bool,
    ) -> Result<Option<TopologyHint>> {
        let ms = &state.machine_state;
        let preferred = self.hints(ms, pod, req, Extent::Preferred)?;
        let scores = self.scores(state, req);
        let tie = |m: NodeMask| {
            self.placement
                .as_ref()
                .map_or(0, |p| p.tie(scores.as_ref(), m))
        };
        if let Some(h) =
            find_best_hint_by(preferred.iter().filter(|h| h.preferred && keep(h)), &tie)
        {
            return Ok(Some(h));
        }
        // Without any preferred hint, the preferred-only list is already the full one.
        let all = if preferred.iter().any(|h| h.preferred) {
            self.hints(ms, pod, req, Extent::Full)?
        } else {
            preferred
        };
        Ok(find_best_hint_by(all.iter().filter(|h| keep(h)), &tie))
    }

    /// Utilisation scores, when an allocation strategy needs them.
    fn scores(&self, state: &State, req: &Requested) -> Option<Scores> {
        let p = self.placement.as_ref().filter(|p| p.uses_scores())?;
        Some(p.scores(state, req))
    }

    /// `admit-when-fits`: where the kubelet's Allocate fails, the best of every valid set of
    /// nodes that can hold the request (the memory manager's own full hint list), if any.
    fn fallback(
        &self,
        state: &State,
        pod: &Pod,
        req: &Requested,
        merged: TopologyHint,
    ) -> Result<Option<NodeMask>> {
        let Some(p) = self.placement.as_ref().filter(|p| p.memory.admit_when_fits) else {
            return Ok(None);
        };
        let ms = &state.machine_state;
        let scores = self.scores(state, req);
        let hints = self.hints(ms, pod, req, Extent::Full)?;
        if let Some(m) = p.fallback(&hints, merged.affinity, scores.as_ref()) {
            return Ok(Some(m));
        }
        // A default tier (no annotation) is a preference: when it is full, any node will do.
        match p.allowed(pod) {
            Some((_, false)) => {
                let anywhere = self.hints_over(ms, pod, req, Extent::Full)?;
                Ok(p.fallback(&anywhere, merged.affinity, scores.as_ref()))
            }
            _ => Ok(None),
        }
    }

    /// The provider answer for `req`: regenerated from existing blocks (after a restart), or
    /// computed from the machine state.
    fn answer(
        &self,
        state: &State,
        pod: &Pod,
        req: &Requested,
        blocks: Option<&Vec<Block>>,
        extent: Extent,
    ) -> Result<ProviderHints> {
        if let Some(blocks) = blocks {
            return Ok(regenerate_hints(blocks, req, &self.map));
        }
        let hints = self.hints(&state.machine_state, pod, req, extent)?;
        if hints.is_empty() && self.strict() {
            // The kubelet answers "no node set can hold this" with an empty map, which the
            // Topology Manager reads as "no preference": a pod that fits nowhere is admitted
            // and spread (its second group bug). An empty list per resource says what it means.
            return Ok(Some(
                req.keys()
                    .map(|r| (r.clone(), Some(Arc::new(Vec::new()))))
                    .collect(),
            ));
        }
        Ok(provider_answer(req.keys(), hints))
    }

    fn strict(&self) -> bool {
        self.placement
            .as_ref()
            .is_some_and(|p| p.memory.strict_numa_groups)
    }

    /// `strict-numa-groups` at Allocate: a set that would overlap a group, or span nodes under
    /// `single-numa-node`, is widened to the narrowest valid set that holds it (as the kubelet
    /// widens a set short of free memory), or refused with the reason.
    fn strictly(
        &self,
        state: &State,
        pod: &Pod,
        req: &Requested,
        mask: NodeMask,
        preferred: bool,
    ) -> Result<NodeMask> {
        let single = self
            .placement
            .as_ref()
            .is_some_and(|p| p.topology_policy == Policy::SingleNumaNode);
        let why = match group_conflict(&state.machine_state, &self.map.ids(mask)) {
            Some(why) => why,
            None if single && mask.count() > 1 => {
                return Err(alloc_err(&format!(
                    "strict-numa-groups: under the single-numa-node policy a container may not span NUMA nodes {:?}",
                    self.map.ids(mask)
                )))
            }
            None => return Ok(mask),
        };
        let wider = if single {
            None
        } else {
            self.best_hint(state, pod, req, |h| {
                h.affinity.is_some_and(|a| mask.is_subset_of(a))
            })?
        };
        match wider {
            Some(h) if h.preferred || !preferred => Ok(h.affinity.unwrap_or(mask)),
            _ => Err(alloc_err(&format!(
                "strict-numa-groups: {why}, and no valid set of NUMA nodes containing {:?} can hold the container",
                self.map.ids(mask)
            ))),
        }
    }

    /// The kubelet's choice of nodes for a container (`Allocate` up to the reservation), with
    /// its error texts where it gives up.
    fn choose(
        &self,
        state: &State,
        pod: &Pod,
        req: &Requested,
        hint: TopologyHint,
    ) -> Result<NodeMask> {
        let ms = &state.machine_state;
        let mut best = hint;
        if hint.affinity.is_none() {
            // Only the regular-memory list is consulted; without a memory request there is none.
            let d = if req.contains_key("memory") {
                self.best_hint(state, pod, req, |_| true)?
            } else if self.hints(ms, pod, req, Extent::Preferred)?.is_empty()
                && self.hints(ms, pod, req, Extent::Full)?.is_empty()
            {
                None
            } else {
                Some(TopologyHint {
                    affinity: None,
                    preferred: false,
                })
            };
            let Some(d) = d else {
                return Err(alloc_err(
                    "failed to get the default NUMA affinity, no NUMA nodes with enough memory is available",
                ));
            };
            if !d.preferred && hint.preferred {
                return Err(alloc_err("failed to find the default preferred hint"));
            }
            best = d;
        }
        let Some(mut mask) = best.affinity else {
            return Err(alloc_err(
                "failed to get the default NUMA affinity, no NUMA nodes with enough memory is available",
            ));
        };
        if !free_satisfies(ms, &self.map.ids(mask), req) {
            let e = if req.contains_key("memory") {
                self.best_hint(state, pod, req, |h| {
                    h.affinity.is_some_and(|a| mask.is_subset_of(a))
                })?
            } else {
                None
            };
            let Some(e) = e else {
                return Err(alloc_err(
                    "failed to find NUMA nodes to extend the current topology hint",
                ));
            };
            if !e.preferred && best.preferred {
                return Err(alloc_err("failed to find the extended preferred hint"));
            }
            mask = e.affinity.unwrap_or(mask);
        }
        if self.strict() {
            return self.strictly(state, pod, req, mask, best.preferred);
        }
        let bits = self.map.ids(mask);
        let violates = if self.placement.is_some() {
            violates_group_rule_strictly(ms, &bits)
        } else {
            self.version.checks_group_rule_at_allocate() && violates_group_rule(ms, &bits)
        };
        if violates {
            return Err(alloc_err("preferred hint violates NUMA node allocation"));
        }
        Ok(mask)
    }

    /// Reserves `req` for a container on `mask` (the end of Allocate, once the set is chosen).
    fn reserve_blocks(
        &mut self,
        state: &mut State,
        pod: &Pod,
        container: &str,
        req: &Requested,
        mask: NodeMask,
    ) -> Result<()> {
        let bits = self.map.ids(mask);
        let reuse = self
            .reusable
            .get(&pod.uid)
            .and_then(|r| r.get(&mask))
            .cloned();
        let spread = self
            .placement
            .as_ref()
            .is_some_and(|p| p.memory.spread_hugepages);
        let mut blocks = Vec::with_capacity(req.len());
        for (name, size) in req {
            blocks.push(Block {
                numa_affinity: Some(bits.clone()),
                resource: name.clone(),
                size: *size,
            });
            let reusable = reuse
                .as_ref()
                .and_then(|r| r.get(name))
                .copied()
                .unwrap_or(0);
            // What no node could take stays unaccounted, as in the kubelet.
            reserve(
                &mut state.machine_state,
                &bits,
                name,
                size.saturating_sub(reusable),
                fill(spread, name, bits.len()),
            );
        }
        self.update_reusable(pod, container, &blocks)?;
        // Only earlier init containers' blocks change there, not this container's.
        self.update_init_blocks(state, pod, container, &blocks);
        state.set_blocks(&pod.uid, container, blocks);
        Ok(())
    }

    /// `getContainerRequestedResources`: under the pod-level resource managers, a container
    /// of a pod with pod-level resources asks for exclusive memory only when it is
    /// Guaranteed on its own (cpu and memory requests equal to their limits).
    fn container_req<'p>(&self, pod: &'p Pod, container: &str) -> Result<&'p Requested> {
        let c = pod
            .container(container)
            .ok_or_else(|| EngineError::NotFound {
                message: format!("pod {:?} has no container {container:?}", pod.uid),
                pod: pod.uid.clone(),
                container: Some(container.to_string()),
            })?;
        if self.plrm() && pod.has_pod_level_resources() && !is_equivalent_guaranteed(c) {
            return Ok(&NOTHING);
        }
        requested_of(c)
    }

    fn is_sidecar(&self, c: &crate::request::Container) -> bool {
        self.version.has_sidecars() && c.restartable
    }

    /// `validatePodScopeResources`: the pod's budget must leave a shared pool for the
    /// containers that need one (app containers and sidecars without exclusive memory, and
    /// regular init containers without, beside the sidecars started before them).
    fn validate_pod_scope(&self, pod: &Pod, budget: &Requested) -> Result<()> {
        let empty = |m: String| Err(EngineError::EmptyPodSharedPool(m));
        let mut shared_long_running = false;
        let mut long_running: Requested = Requested::new();
        for c in &pod.init_containers {
            let reqs = self.container_req(pod, &c.name)?;
            if !self.is_sidecar(c) {
                // A regular init container with exclusive memory has its own slice, even one
                // beyond the budget (the 1.38 reference admits it); one without needs the
                // pool that the sidecars before it leave.
                if reqs.is_empty() {
                    for (name, pool) in budget {
                        if long_running.get(name).copied().unwrap_or(0) >= *pool {
                            return empty(format!(
                                "pod rejected, pod has shared init containers but no {name} available for them"
                            ));
                        }
                    }
                }
                continue;
            }
            if reqs.is_empty() {
                shared_long_running = true;
                continue;
            }
            for (name, v) in reqs {
                let e = long_running.entry(name.clone()).or_insert(0);
                *e = e.wrapping_add(*v);
            }
        }
        for c in &pod.containers {
            let reqs = self.container_req(pod, &c.name)?;
            if reqs.is_empty() {
                shared_long_running = true;
                continue;
            }
            for (name, v) in reqs {
                let e = long_running.entry(name.clone()).or_insert(0);
                *e = e.wrapping_add(*v);
            }
        }
        if shared_long_running {
            for (name, total) in budget {
                if long_running.get(name).copied().unwrap_or(0) >= *total {
                    return empty(format!(
                        "pod rejected, sum of exclusive container {name} requests equals pod budget, leaving no memory for shared containers"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Pod-scope hints after a restart (1.38, PR #141070): from the pod's own reservation
    /// when it has one, else each container's blocks against its own request, the stored
    /// affinities offered again as preferred. `None` when nothing is stored yet.
    fn regenerate_pod_hints(
        &self,
        state: &State,
        pod: &Pod,
        req: &Requested,
    ) -> Option<ProviderHints> {
        if self.plrm() && pod.has_pod_level_resources() {
            if let Some(blocks) = state
                .pod_entries
                .get(&pod.uid)
                .and_then(|e| e.memory_blocks.as_ref())
            {
                return Some(regenerate_hints(blocks, req, &self.map));
            }
        }
        let mut found = false;
        let mut out: BTreeMap<String, Vec<TopologyHint>> = BTreeMap::new();
        for c in pod.all_containers() {
            let Some(blocks) = state.blocks(&pod.uid, &c.name) else {
                continue;
            };
            found = true;
            let Ok(own) = self.container_req(pod, &c.name) else {
                return Some(None);
            };
            let Some(hints) = regenerate_hints(blocks, own, &self.map) else {
                return Some(None);
            };
            for (name, list) in hints {
                let into = out.entry(name).or_default();
                for h in list.iter().flat_map(|l| l.iter()) {
                    if !into.contains(h) {
                        into.push(*h);
                    }
                }
            }
        }
        found.then(|| {
            Some(
                out.into_iter()
                    .map(|(k, v)| (k, Some(Arc::new(v))))
                    .collect(),
            )
        })
    }

    fn update_reusable(&mut self, pod: &Pod, container: &str, blocks: &[Block]) -> Result<()> {
        self.reusable.retain(|uid, _| *uid == pod.uid);
        let regular_init = self.is_regular_init(pod, container);
        if !regular_init && !self.reusable.contains_key(&pod.uid) {
            // Nothing to reuse, nothing to record: an empty entry reads as no entry.
            for b in blocks {
                self.map.mask(b.affinity())?;
            }
            return Ok(());
        }
        let entry = self.reusable.entry(pod.uid.clone()).or_default();
        for b in blocks {
            let m = self.map.mask(b.affinity())?;
            if regular_init {
                let e = entry
                    .entry(m)
                    .or_default()
                    .entry(b.resource.clone())
                    .or_insert(0);
                *e = (*e).max(b.size);
            } else if let Some(r) = entry.get_mut(&m).and_then(|x| x.get_mut(&b.resource)) {
                *r = r.saturating_sub(b.size);
            }
        }
        Ok(())
    }

    /// Shrinks earlier regular init containers' blocks by what this container reuses, so that
    /// a pod's blocks add up to the memory really reserved for it.
    fn update_init_blocks(&self, state: &mut State, pod: &Pod, container: &str, blocks: &[Block]) {
        for cb in blocks {
            let mut left = cb.size;
            for ic in &pod.init_containers {
                if ic.name == container || left == 0 {
                    break;
                }
                if self.version.has_sidecars() && ic.restartable {
                    continue;
                }
                let Some(mut ibs) = state.blocks(&pod.uid, &ic.name).cloned() else {
                    continue;
                };
                if ibs.is_empty() {
                    continue;
                }
                for ib in ibs.iter_mut() {
                    if ib.size == 0
                        || ib.resource != cb.resource
                        || !same_set(ib.affinity(), cb.affinity())
                    {
                        continue;
                    }
                    let d = ib.size.min(left);
                    ib.size -= d;
                    left -= d;
                }
                state.set_blocks(&pod.uid, &ic.name, ibs);
            }
        }
    }
}

/// How a block comes off its nodes: evenly for hugepages of a multi-node group with
/// `spread-hugepages`, else the kubelet's lowest-first.
fn fill(spread: bool, resource: &str, nodes: usize) -> Fill {
    if !spread || nodes < 2 {
        return Fill::Greedy;
    }
    let page = resource
        .strip_prefix("hugepages-")
        .and_then(|s| Quantity::parse(s).ok())
        .and_then(|q| q.bytes().ok());
    match page {
        Some(page) if spread && nodes > 1 && page > 0 => Fill::Even { page },
        _ => Fill::Greedy,
    }
}

fn same_set(a: &[i64], b: &[i64]) -> bool {
    let (mut x, mut y) = (a.to_vec(), b.to_vec());
    x.sort_unstable();
    y.sort_unstable();
    x == y
}

/// `regenerateHints`: after a restart, the stored affinity is the only preferred hint.
fn regenerate_hints(blocks: &[Block], req: &Requested, ids: &IdMap) -> ProviderHints {
    if blocks.len() != req.len() {
        return None;
    }
    let mut out: BTreeMap<String, Vec<TopologyHint>> =
        req.keys().map(|k| (k.clone(), vec![])).collect();
    for b in blocks {
        if req.get(&b.resource) != Some(&b.size) {
            return None;
        }
        let m = ids.mask(b.affinity()).ok()?;
        out.get_mut(&b.resource)?.push(TopologyHint::new(m, true));
    }
    Some(
        out.into_iter()
            .map(|(k, v)| (k, Some(Arc::new(v))))
            .collect(),
    )
}

fn free_satisfies(ms: &MachineState, ids: &[i64], req: &Requested) -> bool {
    req.iter().all(|(name, want)| {
        let free = ids
            .iter()
            .filter_map(|id| ms.get(id))
            .filter_map(|n| n.memory_map.get(name))
            .fold(0u64, |a, t| a.saturating_add(t.free));
        free >= *want
    })
}

/// `isAffinityViolatingNUMAAllocations`: a multi-node mask may only cover unused nodes or
/// exactly one existing group.
fn violates_group_rule(ms: &MachineState, bits: &[i64]) -> bool {
    if bits.len() <= 1 {
        return false;
    }
    shares_a_group(ms, bits)
}

/// The group rule for any mask, single nodes included: a single node that serves a
/// multi-node group may not also serve a single-node allocation. The kubelet checks this only
/// when it lists hints, and a merged hint that no list offered (another provider's single
/// node, or pymm's narrowed default affinity) can slip past its Allocate; with pymm's options
/// on, Allocate checks it too, so that groups never overlap.
fn violates_group_rule_strictly(ms: &MachineState, bits: &[i64]) -> bool {
    match bits {
        [one] => ms
            .get(one)
            .is_some_and(|n| n.number_of_assignments != 0 && n.cells().len() > 1),
        _ => shares_a_group(ms, bits),
    }
}

/// Why a set breaks the group rule (single nodes included), in words; `None` when it does not.
fn group_conflict(ms: &MachineState, bits: &[i64]) -> Option<String> {
    let mut sorted_bits = bits.to_vec();
    sorted_bits.sort_unstable();
    for id in bits {
        let Some(n) = ms.get(id) else { continue };
        if n.number_of_assignments == 0 {
            continue;
        }
        let mut cells = n.cells().to_vec();
        cells.sort_unstable();
        match (bits.len(), cells.len()) {
            (1, c) if c > 1 => {
                return Some(format!(
                    "NUMA node {id} serves the multi-node group {cells:?}, which a single-node allocation there would overlap"
                ))
            }
            (b, 1) if b > 1 => {
                return Some(format!(
                    "NUMA node {id} serves single-node allocations, so it cannot join the group {sorted_bits:?}"
                ))
            }
            (b, _) if b > 1 && cells != sorted_bits => {
                return Some(format!(
                    "NUMA node {id} serves the group {cells:?}, which the group {sorted_bits:?} would overlap"
                ))
            }
            _ => {}
        }
    }
    None
}

fn shares_a_group(ms: &MachineState, bits: &[i64]) -> bool {
    bits.iter().filter_map(|id| ms.get(id)).any(|n| {
        n.number_of_assignments != 0 && (n.cells().len() == 1 || !same_set(n.cells(), bits))
    })
}

/// Every block (container entries and pod entries alike) whose NUMA affinity is the set
/// `group`, moved to `wider`: the group grows for everything in it, and each added node
/// counts the moved blocks as its assignments.
fn extend_group(state: &mut State, group: &[i64], wider: &[i64]) {
    let mut moved = 0i64;
    let mut widen = |b: &mut Block| {
        if same_set(b.affinity(), group) {
            b.numa_affinity = Some(wider.to_vec());
            moved += 1;
        }
    };
    for containers in state.entries.values_mut() {
        for blocks in containers.values_mut().flatten() {
            blocks.iter_mut().for_each(&mut widen);
        }
    }
    for entry in state.pod_entries.values_mut() {
        if let Some(blocks) = entry.memory_blocks.as_mut() {
            blocks.iter_mut().for_each(&mut widen);
        }
    }
    for id in wider {
        if let Some(n) = state.machine_state.get_mut(id) {
            if !group.contains(id) {
                n.number_of_assignments += moved;
            }
            n.cells = Some(wider.to_vec());
        }
    }
}

/// Free bytes of `resource` over `nodes`.
fn free_over(ms: &MachineState, nodes: &[i64], resource: &str) -> u64 {
    nodes
        .iter()
        .filter_map(|id| ms.get(id)?.memory_map.get(resource))
        .fold(0u64, |a, t| a.saturating_add(t.free))
}

impl StaticPolicy {
    /// The narrowest set of unused nodes whose free memory, with the group's, holds `more`
    /// (resource -> bytes still missing); among sets of one size, the closest to the group
    /// (by distance, when the machine has them), then the lowest ids. Up to 16 unused nodes
    /// every set is tried; beyond, nodes are added most-free first.
    fn extension(&self, ms: &MachineState, group: &[i64], more: &Requested) -> Option<Vec<i64>> {
        let unused: Vec<i64> = ms
            .iter()
            .filter(|(id, n)| n.number_of_assignments == 0 && !group.contains(id))
            .map(|(id, _)| *id)
            .collect();
        let fits = |extra: &[i64]| {
            more.iter().all(|(r, need)| {
                let have: u64 = extra
                    .iter()
                    .filter_map(|id| ms.get(id)?.memory_map.get(r))
                    .fold(0u64, |a, t| a.saturating_add(t.free));
                have >= *need
            })
        };
        let distance = |extra: &[i64]| -> u64 {
            let Some(d) = self.machine.distances.as_ref() else {
                return 0;
            };
            let pos = |id: &i64| self.map.position(*id);
            extra
                .iter()
                .flat_map(|e| group.iter().map(move |g| (e, g)))
                .filter_map(|(e, g)| d.get(pos(g)?)?.get(pos(e)?).copied())
                .sum()
        };
        if unused.len() > 16 {
            let mut by_free = unused.clone();
            let free_of = |id: &i64| {
                more.keys()
                    .filter_map(|r| ms.get(id)?.memory_map.get(r))
                    .map(|t| t.free)
                    .sum::<u64>()
            };
            by_free.sort_by_key(|id| (std::cmp::Reverse(free_of(id)), *id));
            let mut chosen = Vec::new();
            for id in by_free {
                chosen.push(id);
                if fits(&chosen) {
                    chosen.sort_unstable();
                    return Some(chosen);
                }
            }
            return None;
        }
        for size in 1..=unused.len() {
            let mut best: Option<(u64, Vec<i64>)> = None;
            for combo in combinations(&unused, size) {
                if fits(&combo) {
                    let key = distance(&combo);
                    if best.as_ref().is_none_or(|(k, c)| (key, &combo) < (*k, c)) {
                        best = Some((key, combo));
                    }
                }
            }
            if let Some((_, c)) = best {
                return Some(c);
            }
        }
        None
    }

    /// One container's reservation to `want` (resource -> bytes), on `state`.
    fn resize_container(
        &self,
        state: &mut State,
        pod_uid: &str,
        container: &str,
        want: &Requested,
        single_numa_node: bool,
        changed: &mut Vec<(String, String)>,
    ) -> std::result::Result<(), (&'static str, String)> {
        let Some(blocks) = state.blocks(pod_uid, container).cloned() else {
            // Nothing pinned for it (not Guaranteed, or asking for nothing): nothing to move.
            return Ok(());
        };
        let same = blocks
            .iter()
            .all(|b| want.get(&b.resource).copied().unwrap_or(0) == b.size)
            && want.keys().all(|r| blocks.iter().any(|b| &b.resource == r));
        if same {
            return Ok(());
        }
        let who = format!("[pymm] resize of pod {pod_uid:?} container {container:?}");
        let group = blocks
            .first()
            .map(|b| b.affinity().to_vec())
            .unwrap_or_default();
        if group.is_empty() || blocks.iter().any(|b| !same_set(b.affinity(), &group)) {
            return Err((
                RESIZE_INFEASIBLE,
                format!("{who}: its blocks do not share one set of NUMA nodes"),
            ));
        }
        let mut sorted_group = group.clone();
        sorted_group.sort_unstable();
        let broken = sorted_group.iter().any(|id| {
            state.machine_state.get(id).is_none_or(|n| {
                let mut cells = n.cells().to_vec();
                cells.sort_unstable();
                cells != sorted_group
            })
        });
        if broken {
            return Err((
                RESIZE_INFEASIBLE,
                format!(
                    "{who}: the nodes {sorted_group:?} do not form one group (another allocation overlaps it)"
                ),
            ));
        }
        for r in want.keys() {
            if !blocks.iter().any(|b| &b.resource == r) {
                return Err((
                    RESIZE_INFEASIBLE,
                    format!("{who}: it holds no {r}, and a resize does not add a resource"),
                ));
            }
        }
        let spread = self
            .placement
            .as_ref()
            .is_some_and(|p| p.memory.spread_hugepages);
        let mut more = Requested::new();
        let mut resized = blocks.clone();
        for b in resized.iter_mut() {
            let to = want.get(&b.resource).copied().unwrap_or(0);
            if to < b.size {
                give(
                    &mut state.machine_state,
                    &group,
                    &b.resource,
                    b.size - to,
                    fill(spread, &b.resource, group.len()),
                );
            } else if to > b.size {
                more.insert(b.resource.clone(), to - b.size);
            }
            b.size = to;
        }
        let ms = &state.machine_state;
        let short: Requested = more
            .iter()
            .filter_map(|(r, need)| {
                let free = free_over(ms, &group, r);
                (free < *need).then(|| (r.clone(), need - free))
            })
            .collect();
        let mut nodes = group.clone();
        if !short.is_empty() {
            let lacking = short
                .iter()
                .map(|(r, b)| format!("{} of {r}", crate::quantity::bytes_text(*b)))
                .collect::<Vec<_>>()
                .join(", ");
            if single_numa_node {
                return Err((
                    RESIZE_DEFERRED,
                    format!(
                        "{who}: NUMA nodes {sorted_group:?} lack {lacking}, and under the single-numa-node policy a container may not span more nodes"
                    ),
                ));
            }
            let Some(extra) = self.extension(ms, &group, &short) else {
                return Err((
                    RESIZE_DEFERRED,
                    format!(
                        "{who}: NUMA nodes {sorted_group:?} lack {lacking}, and no set of unused NUMA nodes can make it up"
                    ),
                ));
            };
            nodes.extend(extra);
            nodes.sort_unstable();
            for (uid, containers) in &state.entries {
                for (name, bl) in containers {
                    let moved = bl.iter().flatten().any(|b| same_set(b.affinity(), &group));
                    if moved && !(uid == pod_uid && name == container) {
                        changed.push((uid.clone(), name.clone()));
                    }
                }
            }
            extend_group(state, &group, &nodes);
            for b in resized.iter_mut() {
                b.numa_affinity = Some(nodes.clone());
            }
        }
        for (r, need) in &more {
            take(
                &mut state.machine_state,
                &nodes,
                r,
                *need,
                fill(spread, r, nodes.len()),
            );
        }
        state.set_blocks(pod_uid, container, resized);
        changed.push((pod_uid.to_string(), container.to_string()));
        Ok(())
    }
}

/// The `k`-element subsets of `items`, in lexicographic order.
fn combinations(items: &[i64], k: usize) -> Vec<Vec<i64>> {
    let mut out = Vec::new();
    let mut idx: Vec<usize> = (0..k).collect();
    if k == 0 || k > items.len() {
        return out;
    }
    loop {
        out.push(idx.iter().map(|&i| items[i]).collect());
        let mut i = k;
        while i > 0 && idx[i - 1] == items.len() - k + i - 1 {
            i -= 1;
        }
        if i == 0 {
            return out;
        }
        idx[i - 1] += 1;
        for j in i..k {
            idx[j] = idx[j - 1] + 1;
        }
    }
}

impl MemoryPolicy for StaticPolicy {
    fn name(&self) -> &'static str {
        "Static"
    }

    fn clone_box(&self) -> Box<dyn MemoryPolicy> {
        Box::new(self.clone())
    }

    fn start(&mut self, state: &mut State) -> Result<()> {
        validate_state(
            state,
            &self.machine,
            &self.system_reserved,
            self.version.group_sum_validation(),
            self.plrm(),
        )
    }

    fn container_hints(
        &self,
        state: &State,
        pod: &Pod,
        container: &str,
        extent: Extent,
    ) -> Result<ProviderHints> {
        if self.skips(pod) {
            return Ok(None);
        }
        let Ok(req) = self.container_req(pod, container) else {
            return Ok(None);
        };
        if self.asks_nothing(req) {
            return Ok(None);
        }
        self.answer(state, pod, req, state.blocks(&pod.uid, container), extent)
    }

    fn pod_hints(&self, state: &State, pod: &Pod, extent: Extent) -> Result<ProviderHints> {
        if self.skips(pod) {
            return Ok(None);
        }
        let Ok(req) = self.pod_req(pod) else {
            return Ok(None);
        };
        if self.plrm()
            && pod.has_pod_level_resources()
            && self.validate_pod_scope(pod, &req).is_err()
        {
            // No node set for any resource: the Topology Manager rejects the pod.
            return Ok(Some(
                req.keys()
                    .map(|r| (r.clone(), Some(Arc::new(Vec::new()))))
                    .collect(),
            ));
        }
        if self.asks_nothing(&req) {
            return Ok(None);
        }
        if self.version.regenerates_pod_hints_per_container() {
            if let Some(h) = self.regenerate_pod_hints(state, pod, &req) {
                return Ok(h);
            }
            return self.answer(state, pod, &req, None, extent);
        }
        // The first container with an assignment decides, as in the kubelet up to 1.37.
        let blocks = pod
            .all_containers()
            .find_map(|c| state.blocks(&pod.uid, &c.name));
        self.answer(state, pod, &req, blocks, extent)
    }

    fn allocate(
        &mut self,
        state: &mut State,
        pod: &Pod,
        container: &str,
        hint: TopologyHint,
    ) -> Result<()> {
        if self.skips(pod) {
            return Ok(());
        }
        if let Some(blocks) = state.blocks(&pod.uid, container).cloned() {
            return self.update_reusable(pod, container, &blocks);
        }
        let req = self.container_req(pod, container)?;
        if self.asks_nothing(req) {
            return Ok(());
        }
        let mask = match self.choose(state, pod, req, hint) {
            Ok(m) => m,
            Err(e @ EngineError::Allocation(_)) => match self.fallback(state, pod, req, hint)? {
                Some(m) => m,
                None => return Err(e),
            },
            Err(e) => return Err(e),
        };
        self.reserve_blocks(state, pod, container, req, mask)
    }

    /// `AllocatePod` (KEP-5526): one NUMA affinity for the pod's budget, found as Allocate
    /// finds a container's; inside it, exclusive slices for the containers that ask (regular
    /// init containers without a request get the whole pool less the sidecars before them),
    /// the rest of the budget a pool the other containers share. The pod's reservation is
    /// kept in the pod entries and taken from the machine once.
    fn allocate_pod(
        &mut self,
        state: &mut State,
        pod: &Pod,
        hint: TopologyHint,
    ) -> Result<PodAllocation> {
        let mut out = PodAllocation::default();
        if self.qos(pod) != QosClass::Guaranteed {
            return Ok(out);
        }
        let Ok(budget) = pod_budget(pod) else {
            return Ok(out);
        };
        out.pinning_requests = 1;
        if state
            .pod_entries
            .get(&pod.uid)
            .is_some_and(|e| e.memory_blocks.is_some())
        {
            // Restored from the state file (or admitted before): kept as it is (PR #141077).
            return Ok(out);
        }
        self.validate_pod_scope(pod, &budget)?;
        let mask = self.choose(state, pod, &budget, hint)?;
        let bits = self.map.ids(mask);
        let block = |name: &str, size: u64| Block {
            numa_affinity: Some(bits.clone()),
            resource: name.to_string(),
            size,
        };
        let mut exclusive: BTreeMap<&str, Vec<Block>> = BTreeMap::new();
        let mut sidecars = Requested::new();
        for c in &pod.init_containers {
            let reqs = self.container_req(pod, &c.name)?;
            out.pinning_requests += 1;
            if reqs.is_empty() {
                if self.is_sidecar(c) {
                    continue;
                }
                // A regular init container runs alone: the pool less the sidecars so far.
                let blocks = budget
                    .iter()
                    .map(|(name, total)| {
                        (
                            name,
                            total.wrapping_sub(sidecars.get(name).copied().unwrap_or(0)),
                        )
                    })
                    .filter(|(_, size)| *size > 0)
                    .map(|(name, size)| block(name, size))
                    .collect();
                exclusive.insert(&c.name, blocks);
                out.shared += 1;
                continue;
            }
            let blocks = reqs
                .iter()
                .filter(|(_, size)| **size > 0)
                .map(|(name, size)| block(name, *size))
                .collect();
            exclusive.insert(&c.name, blocks);
            out.exclusive += 1;
            if self.is_sidecar(c) {
                for (name, size) in reqs {
                    let e = sidecars.entry(name.clone()).or_insert(0);
                    *e = e.wrapping_add(*size);
                }
            }
        }
        let mut pool: Requested = budget
            .iter()
            .map(|(name, total)| {
                (
                    name.clone(),
                    total.wrapping_sub(sidecars.get(name).copied().unwrap_or(0)),
                )
            })
            .collect();
        for c in &pod.containers {
            let reqs = self.container_req(pod, &c.name)?;
            if reqs.is_empty() {
                continue;
            }
            out.pinning_requests += 1;
            let mut blocks = Vec::new();
            for (name, size) in reqs.iter().filter(|(_, size)| **size > 0) {
                blocks.push(block(name, *size));
                let e = pool.entry(name.clone()).or_insert(0);
                *e = e.wrapping_sub(*size);
            }
            exclusive.insert(&c.name, blocks);
            out.exclusive += 1;
        }
        let shared: Vec<Block> = pool
            .iter()
            .filter(|(_, size)| **size > 0)
            .map(|(name, size)| block(name, *size))
            .collect();
        let reservation: Vec<Block> = budget.iter().map(|(n, s)| block(n, *s)).collect();
        state.pod_entries.insert(
            pod.uid.clone(),
            PodEntry {
                memory_blocks: Some(reservation),
            },
        );
        let spread = self
            .placement
            .as_ref()
            .is_some_and(|p| p.memory.spread_hugepages);
        for (name, size) in &budget {
            reserve(
                &mut state.machine_state,
                &bits,
                name,
                *size,
                fill(spread, name, bits.len()),
            );
        }
        for c in pod.all_containers() {
            match exclusive.remove(c.name.as_str()) {
                Some(blocks) => state.set_blocks(&pod.uid, &c.name, blocks),
                None => {
                    state.set_blocks(&pod.uid, &c.name, shared.clone());
                    out.shared += 1;
                }
            }
            out.containers += 1;
        }
        Ok(out)
    }

    fn pins(&self, pod: &Pod) -> bool {
        !self.skips(pod)
    }

    fn resize(
        &mut self,
        state: &mut State,
        old: &Pod,
        new: &Pod,
        single_numa_node: bool,
    ) -> Result<ResizeVerdict> {
        if self.skips(new) {
            return Ok(ResizeVerdict::Done(Vec::new()));
        }
        if state.pod_entries.contains_key(&new.uid) {
            let asks_otherwise = pod_budget(old).ok() != pod_budget(new).ok()
                || new.all_containers().any(|c| {
                    self.container_req(old, &c.name).ok() != self.container_req(new, &c.name).ok()
                });
            if !asks_otherwise {
                return Ok(ResizeVerdict::Done(Vec::new()));
            }
            return Ok(ResizeVerdict::Refused {
                reason: RESIZE_INFEASIBLE,
                message: format!(
                    "[pymm] resize of pod {:?}: its pod-level reservation is not resized in place",
                    new.uid
                ),
            });
        }
        let mut next = state.clone();
        let mut changed = Vec::new();
        for c in new.all_containers() {
            let (Ok(before), Ok(after)) = (
                self.container_req(old, &c.name),
                self.container_req(new, &c.name),
            ) else {
                continue;
            };
            if before == after {
                continue;
            }
            let after = after.clone();
            if let Err((reason, message)) = self.resize_container(
                &mut next,
                &new.uid,
                &c.name,
                &after,
                single_numa_node,
                &mut changed,
            ) {
                return Ok(ResizeVerdict::Refused { reason, message });
            }
        }
        *state = next;
        let mut seen = std::collections::BTreeSet::new();
        let out = changed
            .into_iter()
            .filter(|k| seen.insert(k.clone()))
            .filter_map(|(p, c)| {
                let b = state.blocks(&p, &c)?.clone();
                Some((p, c, b))
            })
            .collect();
        Ok(ResizeVerdict::Done(out))
    }

    fn allocate_on(
        &mut self,
        state: &mut State,
        pod: &Pod,
        container: &str,
        nodes: &[i64],
    ) -> Result<()> {
        let mut ids = nodes.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let refuse = |why: String| EngineError::Placement {
            message: format!(
                "[pymm] pod {:?} container {container:?} on NUMA nodes {ids:?}: {why}",
                pod.uid
            ),
            pod: pod.uid.clone(),
            container: Some(container.to_string()),
            nodes: ids.clone(),
        };
        if self.skips(pod) {
            return Err(refuse(
                "the Static policy pins memory only for Guaranteed pods".into(),
            ));
        }
        if pod.has_pod_level_resources() {
            return Err(refuse(
                "a pod with pod-level resources is allocated as a whole (AllocatePod), not on nodes chosen per container".into(),
            ));
        }
        let mask = self
            .map
            .mask(&ids)
            .map_err(|e| refuse(e.message().to_string()))?;
        if ids.is_empty() {
            return Err(refuse("no NUMA node given".into()));
        }
        if let Some(blocks) = state.blocks(&pod.uid, container).cloned() {
            // Idempotent, as Allocate is: the same set again changes nothing.
            let same = blocks.iter().all(|b| same_set(b.affinity(), &ids));
            if !same {
                return Err(refuse(
                    "the container already holds memory elsewhere".into(),
                ));
            }
            return self.update_reusable(pod, container, &blocks);
        }
        let req = self.container_req(pod, container)?;
        if let Some(p) = self.placement.as_ref() {
            if let Some((allowed, strict)) = p.allowed(pod) {
                let spill = !strict && p.memory.admit_when_fits;
                if !mask.is_subset_of(allowed) && !spill {
                    return Err(refuse(format!(
                        "the pod may use only NUMA nodes {:?} (its memory tier)",
                        self.map.ids(allowed)
                    )));
                }
            }
        }
        if let Some(why) = set_violation(
            &state.machine_state,
            req,
            self.reusable_for(pod),
            mask,
            &self.map,
        )? {
            return Err(refuse(why));
        }
        if self.strict()
            && self
                .placement
                .as_ref()
                .is_some_and(|p| p.topology_policy == Policy::SingleNumaNode)
            && ids.len() > 1
        {
            return Err(refuse(
                "strict-numa-groups: under the single-numa-node policy a container may not span NUMA nodes".into(),
            ));
        }
        self.reserve_blocks(state, pod, container, req, mask)
    }

    fn remove_container(&mut self, state: &mut State, pod_uid: &str, container: &str) {
        let pod_blocks = if self.plrm() {
            state
                .pod_entries
                .get(pod_uid)
                .and_then(|e| e.memory_blocks.clone())
        } else {
            None
        };
        let blocks = match pod_blocks {
            // A container of a pod with a pod-level reservation holds a slice of it: the
            // reservation goes back only with the pod's last container.
            Some(pod_blocks) => {
                state.delete(pod_uid, container);
                if state.entries.contains_key(pod_uid) {
                    return;
                }
                state.pod_entries.remove(pod_uid);
                pod_blocks
            }
            None => {
                let Some(blocks) = state.take_blocks(pod_uid, container) else {
                    return;
                };
                blocks
            }
        };
        let spread = self
            .placement
            .as_ref()
            .is_some_and(|p| p.memory.spread_hugepages);
        for b in &blocks {
            let nodes = b.affinity();
            release(
                &mut state.machine_state,
                nodes,
                &b.resource,
                b.size,
                fill(spread, &b.resource, nodes.len()),
            );
        }
    }

    fn tolerate_drift(&self, state: &State, tolerance: u64) -> Option<MachineState> {
        rebase_for_drift(
            state,
            &self.machine,
            &self.system_reserved,
            tolerance,
            self.plrm(),
        )
    }

    fn least_drift_tolerance(&self, state: &State) -> Option<u64> {
        least_drift_tolerance(state, &self.machine, &self.system_reserved, self.plrm())
    }

    fn rebuild(&self, entries: Assignments) -> Result<State> {
        rebuild_state(entries, &self.machine, &self.system_reserved)
    }

    fn allocatable_memory(&self, state: &State) -> Vec<Block> {
        let mut out = Vec::new();
        for (id, n) in &state.machine_state {
            for (name, t) in &n.memory_map {
                if t.allocatable > 0 {
                    out.push(Block {
                        numa_affinity: Some(vec![*id]),
                        resource: name.clone(),
                        size: t.allocatable,
                    });
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::NodeState;

    fn node(assignments: i64, cells: &[i64]) -> NodeState {
        NodeState {
            number_of_assignments: assignments,
            memory_map: BTreeMap::new(),
            cells: Some(cells.to_vec()),
        }
    }

    #[test]
    fn group_conflicts_name_the_node_and_the_groups() {
        // 0 and 1 form a group; 2 serves single-node allocations; 3 is unused.
        let ms: MachineState = [
            (0, node(1, &[0, 1])),
            (1, node(1, &[1, 0])),
            (2, node(2, &[2])),
            (3, node(0, &[3])),
        ]
        .into();
        assert_eq!(group_conflict(&ms, &[0, 1]), None);
        assert_eq!(group_conflict(&ms, &[3]), None);
        assert_eq!(group_conflict(&ms, &[2]), None);
        assert_eq!(
            group_conflict(&ms, &[1]).as_deref(),
            Some("NUMA node 1 serves the multi-node group [0, 1], which a single-node allocation there would overlap")
        );
        assert_eq!(
            group_conflict(&ms, &[3, 2]).as_deref(),
            Some("NUMA node 2 serves single-node allocations, so it cannot join the group [2, 3]")
        );
        assert_eq!(
            group_conflict(&ms, &[1, 3]).as_deref(),
            Some("NUMA node 1 serves the group [0, 1], which the group [1, 3] would overlap")
        );
    }
}
