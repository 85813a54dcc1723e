//! The `Static` policy (kubelet `policy_static.go`, reference §4).

use super::MemoryPolicy;
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
use crate::request::{pod_requested, requested_of, Pod, QosClass, Requested};
use crate::reserved::SystemReserved;
use crate::state::{
    least_drift_tolerance, rebase_for_drift, rebuild_state, release, reserve, validate_state,
    Assignments, Block, Fill, MachineState, State,
};
use crate::topology::{Policy, Scores};
use crate::version::KubeletVersion;
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
        })
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

    fn skips(&self, pod: &Pod) -> bool {
        pod.qos_class() != QosClass::Guaranteed
            || (self.version.skips_pod_level_resources() && pod.has_pod_level_resources())
    }

    fn is_regular_init(&self, pod: &Pod, container: &str) -> bool {
        pod.init_containers
            .iter()
            .any(|c| c.name == container && !(self.version.has_sidecars() && c.restartable))
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

    fn container_req<'p>(&self, pod: &'p Pod, container: &str) -> Result<&'p Requested> {
        let c = pod
            .container(container)
            .ok_or_else(|| EngineError::NotFound {
                message: format!("pod {:?} has no container {container:?}", pod.uid),
                pod: pod.uid.clone(),
                container: Some(container.to_string()),
            })?;
        requested_of(c)
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
        self.answer(state, pod, req, state.blocks(&pod.uid, container), extent)
    }

    fn pod_hints(&self, state: &State, pod: &Pod, extent: Extent) -> Result<ProviderHints> {
        if self.skips(pod) {
            return Ok(None);
        }
        let Ok(req) = pod_requested(pod, self.version.has_sidecars()) else {
            return Ok(None);
        };
        // The first container with an assignment decides, as in the kubelet.
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

    fn pins(&self, pod: &Pod) -> bool {
        !self.skips(pod)
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
        let Some(blocks) = state.take_blocks(pod_uid, container) else {
            return;
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
        rebase_for_drift(state, &self.machine, &self.system_reserved, tolerance)
    }

    fn least_drift_tolerance(&self, state: &State) -> Option<u64> {
        least_drift_tolerance(state, &self.machine, &self.system_reserved)
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
