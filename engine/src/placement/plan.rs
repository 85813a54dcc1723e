//! Placements chosen outside the Topology Manager's merge: batch plans (`mm.plan`) and
//! defragmentation moves (`mm.defrag_plan`). The engine does two things for them:
//!
//! - [`admit_on`] (through [`Manager::admit_on`]) admits a pod on given nodes, refusing any set
//!   the kubelet's own rules would not have reached, so an applied plan is always a state the
//!   kubelet could have produced and restores;
//! - [`PlanInput`] describes the machine and the pods as the solver needs them: per node its
//!   free memory and role in the group rules, per pod the units that must each sit on one
//!   node or one group (a container, or the whole pod in pod scope), their demand, and what
//!   the topology policy and the other hint providers leave them.
//!
//! The optimisation itself (an integer program) is the Python package's (`pymm/plan.py`).

use crate::error::{EngineError, Result};
use crate::hints::{Extent, ProviderHints, TopologyHint};
use crate::manager::{AdmitResult, ExtraProvider, Manager, Scope};
use crate::nodemask::NodeMask;
use crate::quantity::{Format, Quantity};
use crate::request::{container_requested, pod_requested, Container, Pod, Requested};
use crate::topology::{provider_lists, Policy};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};

fn refused(pod: &Pod, container: Option<&str>, nodes: &[i64], why: String) -> EngineError {
    let which = match container {
        Some(c) => format!("pod {:?} container {c:?}", pod.uid),
        None => format!("pod {:?}", pod.uid),
    };
    EngineError::Placement {
        message: format!("[pymm] {which} on NUMA nodes {nodes:?}: {why}"),
        pod: pod.uid.clone(),
        container: container.map(str::to_string),
        nodes: nodes.to_vec(),
    }
}

/// Under `restricted` and `single-numa-node`: does the merge of the memory manager's and the
/// other providers' hints end preferred on `set`? It does when every list offers `set` as a
/// preferred hint or a preferred "any node", and the memory manager's list offers `set` itself.
fn merge_prefers(
    m: &Manager,
    pod: &Pod,
    container: Option<&str>,
    set: NodeMask,
    extra: &[ExtraProvider],
) -> Result<std::result::Result<(), String>> {
    let policy = m.config().topology_policy;
    if matches!(policy, Policy::None | Policy::BestEffort) {
        return Ok(Ok(()));
    }
    if policy == Policy::SingleNumaNode && set.count() != 1 {
        return Ok(Err(
            "single-numa-node places each container on one NUMA node".into(),
        ));
    }
    let memory = m.memory_hints_to(pod, container, Extent::Full)?;
    let ours = provider_lists(&[&memory]);
    let offered = |l: &[TopologyHint]| l.iter().any(|h| h.preferred && h.affinity == Some(set));
    if !ours.iter().all(|l| offered(l)) {
        return Ok(Err(format!(
            "the {} policy admits only a preferred hint, and the memory manager does not prefer this set",
            policy.as_str()
        )));
    }
    let answers: Vec<&ProviderHints> = extra
        .iter()
        .map(|p| match container {
            Some(c) => p.containers.get(c).unwrap_or(&None),
            None => &p.pod,
        })
        .collect();
    for (p, a) in extra.iter().zip(answers) {
        for l in provider_lists(&[a]) {
            let any = l.iter().any(|h| h.preferred && h.affinity.is_none());
            if !any && !offered(l) {
                return Ok(Err(format!(
                    "the {} policy admits only a preferred hint, and provider {:?} does not prefer this set",
                    policy.as_str(),
                    p.name
                )));
            }
        }
    }
    Ok(Ok(()))
}

/// [`Manager::admit_on`]'s work; the manager undoes the state when this fails.
pub(crate) fn admit_on(
    m: &mut Manager,
    shared: &Arc<Pod>,
    targets: &BTreeMap<String, Vec<i64>>,
    extra: &[ExtraProvider],
) -> Result<AdmitResult> {
    let pod: &Pod = shared;
    let names: Vec<String> = pod.all_containers().map(|c| c.name.clone()).collect();
    if !m.pins(pod) {
        return Err(refused(
            pod,
            None,
            &[],
            "the memory manager pins no memory for this pod: admit it as usual".into(),
        ));
    }
    for t in targets.keys() {
        if !names.contains(t) {
            return Err(refused(
                pod,
                Some(t),
                &targets[t],
                "no such container".into(),
            ));
        }
    }
    let mut sets = Vec::with_capacity(names.len());
    for c in &names {
        let Some(ids) = targets.get(c) else {
            return Err(refused(pod, Some(c), &[], "no NUMA nodes given".into()));
        };
        let mut ids = ids.clone();
        ids.sort_unstable();
        ids.dedup();
        let mask = m
            .id_map()
            .mask(&ids)
            .map_err(|e| refused(pod, Some(c), &ids, e.message().to_string()))?;
        sets.push((c, ids, mask));
    }
    let scope = m.config().scope;
    if scope == Scope::Pod {
        let (_, first, mask) = &sets[0];
        if let Some((c, ids, _)) = sets.iter().find(|(_, ids, _)| ids != first) {
            return Err(refused(
                pod,
                Some(c),
                ids,
                format!("in pod scope every container of a pod sits on the same nodes ({first:?})"),
            ));
        }
        if let Err(why) = merge_prefers(m, pod, None, *mask, extra)? {
            return Err(refused(pod, None, first, why));
        }
    }
    let mut out = AdmitResult::admitted();
    for (c, ids, mask) in &sets {
        if scope == Scope::Container {
            if let Err(why) = merge_prefers(m, pod, Some(c), *mask, extra)? {
                return Err(refused(pod, Some(c), ids, why));
            }
        }
        let (state, policy) = m.parts();
        policy.allocate_on(state, pod, c, ids)?;
        out.allocate_calls += 1;
    }
    m.mark_admitted(shared);
    Ok(out)
}

/// A node as the solver sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanNode {
    pub id: i64,
    /// Free bytes per resource.
    pub free: BTreeMap<String, u64>,
    pub allocatable: BTreeMap<String, u64>,
    /// It has assignments and serves single-node allocations.
    pub serves_single: bool,
    /// The multi-node group it serves, when it has assignments in one.
    pub group: Option<Vec<i64>>,
    /// Without assignments but still marked as part of a group (a restored file): it may
    /// only join a multi-node set.
    pub group_only: bool,
}

/// Something that must sit on one node or one group: a container, or a whole pod.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanUnit {
    pub containers: Vec<String>,
    pub demand: Requested,
    /// The only nodes it may use (its memory tier), `None` for all.
    pub allowed: Option<Vec<i64>>,
    /// The number of nodes its set must have (`single-numa-node`: 1; `restricted`: the
    /// preferred size), `None` for any.
    pub size: Option<u32>,
    /// The only sets it may take (what the other providers prefer, under `restricted` and
    /// `single-numa-node`), `None` for any; empty when nothing can satisfy the policy.
    pub sets: Option<Vec<Vec<i64>>>,
    /// Where it sits now (defragmentation).
    pub current: Option<Vec<i64>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlanPod {
    pub uid: String,
    /// The memory manager pins it (else it holds no NUMA memory and only the kubelet's
    /// admission decides).
    pub pinned: bool,
    pub units: Vec<PlanUnit>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlanInput {
    pub policy: Policy,
    pub scope: Scope,
    pub nodes: Vec<PlanNode>,
    pub pods: Vec<PlanPod>,
}

fn requested_value(r: &Requested) -> Value {
    Value::Object(r.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
}

impl PlanInput {
    pub fn to_value(&self) -> Value {
        json!({
            "policy": self.policy.as_str(),
            "scope": self.scope.as_str(),
            "nodes": self.nodes.iter().map(|n| json!({
                "id": n.id,
                "free": requested_value(&n.free),
                "allocatable": requested_value(&n.allocatable),
                "servesSingle": n.serves_single,
                "group": n.group,
                "groupOnly": n.group_only,
            })).collect::<Vec<_>>(),
            "pods": self.pods.iter().map(|p| json!({
                "uid": p.uid,
                "pinned": p.pinned,
                "units": p.units.iter().map(|u| json!({
                    "containers": u.containers,
                    "demand": requested_value(&u.demand),
                    "allowed": u.allowed,
                    "size": u.size,
                    "sets": u.sets,
                    "current": u.current,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })
    }
}

fn nodes_of(m: &Manager) -> Vec<PlanNode> {
    m.state()
        .machine_state
        .iter()
        .map(|(id, n)| {
            let cells = n.cells();
            let used = n.number_of_assignments > 0;
            let mut group: Vec<i64> = cells.to_vec();
            group.sort_unstable();
            PlanNode {
                id: *id,
                free: n
                    .memory_map
                    .iter()
                    .map(|(r, t)| (r.clone(), t.free))
                    .collect(),
                allocatable: n
                    .memory_map
                    .iter()
                    .map(|(r, t)| (r.clone(), t.allocatable))
                    .collect(),
                serves_single: used && cells.len() <= 1,
                group: (used && cells.len() > 1).then_some(group),
                group_only: !used && cells.len() > 1,
            }
        })
        .collect()
}

/// The sets every other provider's preferred hints allow (`None`: any), for a container or
/// (`None`) the pod.
fn provider_sets(extra: &[ExtraProvider], container: Option<&str>) -> Option<BTreeSet<NodeMask>> {
    let mut out: Option<BTreeSet<NodeMask>> = None;
    for p in extra {
        let a = match container {
            Some(c) => p.containers.get(c).unwrap_or(&None),
            None => &p.pod,
        };
        for l in provider_lists(&[a]) {
            if l.iter().any(|h| h.preferred && h.affinity.is_none()) {
                continue;
            }
            let here: BTreeSet<NodeMask> = l
                .iter()
                .filter(|h| h.preferred)
                .filter_map(|h| h.affinity)
                .collect();
            out = Some(match out {
                None => here,
                Some(o) => o.intersection(&here).copied().collect(),
            });
        }
    }
    out
}

impl Manager {
    /// The smallest number of nodes whose allocatable memory could hold `demand` (the
    /// preferred size of a hint), among `allowed` nodes; `None` when not even all can. Where
    /// several resources would need more than 100,000 sets tried (machines the engine searches
    /// in bounded time), the smallest size that holds each resource on its own.
    fn preferred_size(&self, demand: &Requested, allowed: Option<&[i64]>) -> Option<u32> {
        let ms = &self.state().machine_state;
        let ids: Vec<i64> = ms
            .keys()
            .copied()
            .filter(|id| allowed.is_none_or(|a| a.contains(id)))
            .collect();
        let alloc = |id: &i64, r: &str| {
            ms.get(id)
                .and_then(|n| n.memory_map.get(r))
                .map_or(0, |t| t.allocatable)
        };
        for k in 1..=ids.len() {
            // Each resource alone: its k largest nodes. Exact for one resource; with several,
            // the sets are enumerated while they are few enough.
            let each = demand.iter().all(|(r, want)| {
                let mut a: Vec<u64> = ids.iter().map(|id| alloc(id, r)).collect();
                a.sort_unstable_by(|x, y| y.cmp(x));
                a.iter().take(k).fold(0u64, |s, v| s.saturating_add(*v)) >= *want
            });
            if !each {
                continue;
            }
            if demand.len() <= 1 || crate::nodemask::binomial(ids.len(), k) > 100_000 {
                return Some(k as u32);
            }
            let mut found = false;
            crate::nodemask::for_each_combination_of_size(ids.len(), k, &mut |m| {
                found = demand.iter().all(|(r, want)| {
                    let mut x = m;
                    let mut sum = 0u64;
                    while x != 0 {
                        sum = sum.saturating_add(alloc(&ids[x.trailing_zeros() as usize], r));
                        x &= x - 1;
                    }
                    sum >= *want
                });
                !found
            });
            if found {
                return Some(k as u32);
            }
        }
        None
    }

    fn plan_unit(
        &self,
        pod: &Pod,
        containers: Vec<String>,
        demand: Requested,
        extra: &[ExtraProvider],
    ) -> PlanUnit {
        let allowed = self.placement().and_then(|p| {
            let (mask, strict) = p.allowed(pod)?;
            (strict || !p.memory.admit_when_fits).then(|| self.id_map().ids(mask))
        });
        let policy = self.config().topology_policy;
        let constrained = matches!(policy, Policy::Restricted | Policy::SingleNumaNode);
        let size = match policy {
            Policy::SingleNumaNode => Some(1),
            Policy::Restricted => self.preferred_size(&demand, allowed.as_deref()),
            _ => None,
        };
        let mut sets = None;
        if constrained {
            let pod_level = self.config().scope == Scope::Pod;
            let mut acc: Option<BTreeSet<NodeMask>> = None;
            let keys: Vec<Option<&str>> = if pod_level {
                vec![None]
            } else {
                containers.iter().map(|c| Some(c.as_str())).collect()
            };
            for k in keys {
                if let Some(s) = provider_sets(extra, k) {
                    acc = Some(match acc {
                        None => s,
                        Some(a) => a.intersection(&s).copied().collect(),
                    });
                }
            }
            sets = acc.map(|s| s.into_iter().map(|m| self.id_map().ids(m)).collect());
            if size.is_none() && policy == Policy::Restricted {
                sets = Some(vec![]);
            }
        }
        PlanUnit {
            containers,
            demand,
            allowed,
            size,
            sets,
            current: None,
        }
    }

    /// The units of a pod the memory manager pins: one per container in container scope,
    /// the whole pod in pod scope, and the whole pod too when it has init containers (their
    /// memory is reused by the app containers only on the same nodes).
    fn plan_units(&self, pod: &Pod, extra: &[ExtraProvider]) -> Result<Vec<PlanUnit>> {
        let sidecars = self.config().version.has_sidecars();
        let whole = self.config().scope == Scope::Pod || !pod.init_containers.is_empty();
        if whole {
            let names = pod.all_containers().map(|c| c.name.clone()).collect();
            let mut u = self.plan_unit(pod, names, pod_requested(pod, sidecars)?, extra);
            if self.config().scope == Scope::Container
                && self.config().topology_policy == Policy::Restricted
            {
                // Each container is checked against its own preferred size.
                let sizes: BTreeSet<Option<u32>> = pod
                    .all_containers()
                    .map(|c| {
                        container_requested(c)
                            .ok()
                            .and_then(|r| self.preferred_size(&r, u.allowed.as_deref()))
                    })
                    .collect();
                if sizes.len() != 1 {
                    u.sets = Some(vec![]);
                }
                u.size = sizes.into_iter().next().flatten();
            }
            return Ok(vec![u]);
        }
        pod.containers
            .iter()
            .map(|c| Ok(self.plan_unit(pod, vec![c.name.clone()], container_requested(c)?, extra)))
            .collect()
    }

    /// What the solver needs to place `pods` (each with its other providers' hints) on top of
    /// what runs now.
    pub fn plan_input(&self, pods: &[(Arc<Pod>, Vec<ExtraProvider>)]) -> Result<PlanInput> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::with_capacity(pods.len());
        for (pod, extra) in pods {
            if !seen.insert(pod.uid.as_str()) {
                return Err(EngineError::pod(
                    None,
                    format!("pod uid {:?} appears twice in the batch", pod.uid),
                ));
            }
            if self.state().entries.contains_key(&pod.uid) {
                return Err(EngineError::pod(
                    None,
                    format!("pod {:?} already holds memory on this machine", pod.uid),
                ));
            }
            let pinned = self.pins(pod);
            let units = if pinned {
                self.plan_units(pod, extra)?
            } else {
                vec![]
            };
            out.push(PlanPod {
                uid: pod.uid.clone(),
                pinned,
                units,
            });
        }
        Ok(PlanInput {
            policy: self.config().topology_policy,
            scope: self.config().scope,
            nodes: nodes_of(self),
            pods: out,
        })
    }

    /// A running pod as a pod the memory manager pins, rebuilt from its blocks when the
    /// manager knows no spec with requests (pods restored from a state file): one Guaranteed
    /// container per entry, asking for exactly what it holds. `None` when it holds nothing
    /// that such a pod could ask for again.
    pub fn running_pod(&self, uid: &str) -> Option<Arc<Pod>> {
        if let Some(p) = self.active_pods().find(|p| p.uid == uid) {
            if self.pins(p) {
                return Some(Arc::new(p.clone()));
            }
        }
        let entries = self.state().entries.get(uid)?;
        let mut containers = Vec::new();
        for (name, blocks) in entries {
            let mut requests = BTreeMap::new();
            requests.insert(
                "cpu".to_string(),
                Quantity::from_bytes(1, Format::DecimalSI),
            );
            for b in blocks.iter().flatten().filter(|b| b.size > 0) {
                requests.insert(
                    b.resource.clone(),
                    Quantity::from_bytes(b.size, Format::BinarySI),
                );
            }
            if !requests.contains_key("memory") {
                return None;
            }
            containers.push(Container {
                name: name.clone(),
                requests: requests.clone(),
                limits: requests,
                restartable: false,
                requested: OnceLock::new(),
            });
        }
        let pod = Pod {
            uid: uid.to_string(),
            name: uid.to_string(),
            namespace: String::new(),
            containers: containers.into(),
            init_containers: Default::default(),
            resources: Default::default(),
            annotations: BTreeMap::new(),
            tier: None,
            qos: OnceLock::new(),
            index: OnceLock::new(),
        };
        self.pins(&pod).then(|| Arc::new(pod))
    }

    /// Each running pod's containers and the nodes each sits on.
    pub fn placements(&self) -> BTreeMap<String, BTreeMap<String, Vec<i64>>> {
        self.state()
            .entries
            .keys()
            .map(|uid| {
                let ctrs = self.state().entries[uid]
                    .keys()
                    .filter_map(|c| Some((c.clone(), self.container_nodes(uid, c)?)))
                    .collect();
                (uid.clone(), ctrs)
            })
            .collect()
    }
}

/// What the solver needs to defragment: the machine as it would be without the running pods
/// that can move, and those pods (each unit with the nodes it holds now), then `pending`.
pub struct DefragInput {
    pub input: PlanInput,
    /// The running pods that can move, as they would be admitted again.
    pub movable: Vec<Arc<Pod>>,
}

impl Manager {
    pub fn defrag_input(
        &self,
        pending: Option<(&Arc<Pod>, &[ExtraProvider])>,
    ) -> Result<DefragInput> {
        let placed = self.placements();
        let mut base = self.clone();
        let mut movable = Vec::new();
        let mut units_of = Vec::new();
        for (uid, ctrs) in &placed {
            let Some(pod) = self.running_pod(uid) else {
                continue;
            };
            // The pod as it would be admitted again; its units as the plan would make them.
            let units = self.plan_units(&pod, &[])?;
            let mut all = Vec::new();
            let mut ok = true;
            for u in units {
                let sets: BTreeSet<&Vec<i64>> =
                    u.containers.iter().filter_map(|c| ctrs.get(c)).collect();
                match sets.into_iter().collect::<Vec<_>>()[..] {
                    [one] => all.push(PlanUnit {
                        current: Some(one.clone()),
                        ..u
                    }),
                    _ => ok = false,
                }
            }
            if ok {
                base.release(uid, None, true)?;
                movable.push(Arc::clone(&pod));
                units_of.push(PlanPod {
                    uid: uid.clone(),
                    pinned: true,
                    units: all,
                });
            }
        }
        let mut input = base.plan_input(&[])?;
        // Sizes and provider sets of the moving pods as the base machine sees them.
        for p in &mut units_of {
            let pod = movable.iter().find(|m| m.uid == p.uid).map(Arc::clone);
            if let Some(pod) = pod {
                let fresh = base.plan_units(&pod, &[])?;
                for (u, f) in p.units.iter_mut().zip(fresh) {
                    u.size = f.size;
                    u.sets = f.sets;
                    u.allowed = f.allowed;
                }
            }
        }
        input.pods = units_of;
        if let Some((pod, extra)) = pending {
            if self.state().entries.contains_key(&pod.uid) {
                return Err(EngineError::pod(
                    None,
                    format!("pod {:?} already holds memory on this machine", pod.uid),
                ));
            }
            let pinned = base.pins(pod);
            input.pods.push(PlanPod {
                uid: pod.uid.clone(),
                pinned,
                units: if pinned {
                    base.plan_units(pod, extra)?
                } else {
                    vec![]
                },
            });
        }
        Ok(DefragInput { input, movable })
    }
}
