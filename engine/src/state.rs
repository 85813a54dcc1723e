//! The memory manager's state: per-NUMA memory tables, groups ("cells"), and the blocks
//! assigned to containers. Field names and integer types follow the kubelet's state package so
//! that the checkpoint and its checksum come out byte for byte the same.

use crate::error::{EngineError, MismatchKind, Result};
use crate::machine::Machine;
use crate::quantity::{bytes_text, hugepage_resource_name};
use crate::reserved::SystemReserved;
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct MemoryTable {
    pub total: u64,
    pub system_reserved: u64,
    pub allocatable: u64,
    pub reserved: u64,
    pub free: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct NodeState {
    pub number_of_assignments: i64,
    pub memory_map: BTreeMap<String, MemoryTable>,
    /// The group this node belongs to. `None` is Go's nil slice (it hashes differently from an
    /// empty slice, so the distinction is kept for restored files).
    pub cells: Option<Vec<i64>>,
}

impl NodeState {
    pub fn cells(&self) -> &[i64] {
        self.cells.as_deref().unwrap_or(&[])
    }
}

/// Node id -> node state.
pub type MachineState = BTreeMap<i64, NodeState>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    pub numa_affinity: Option<Vec<i64>>,
    pub resource: String,
    pub size: u64,
}

impl Block {
    pub fn affinity(&self) -> &[i64] {
        self.numa_affinity.as_deref().unwrap_or(&[])
    }
}

/// The NUMA nodes a container's blocks use (`GetMemoryNUMANodes`: the union of their
/// affinities), ascending.
pub fn block_nodes(blocks: &[Block]) -> Vec<i64> {
    let mut ids: Vec<i64> = blocks
        .iter()
        .flat_map(|b| b.affinity().iter().copied())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// A container's blocks. `None` is a nil slice, as a restored file can hold: the kubelet treats
/// it as "no assignment" but hashes and writes it differently from an empty list.
pub type Blocks = Option<Vec<Block>>;

/// Pod uid -> container name -> blocks.
pub type Assignments = BTreeMap<String, BTreeMap<String, Blocks>>;

/// A pod's own reservation under the pod-level resource managers (KEP-5526, kubelet 1.36+):
/// one entry of the state file's `podEntries`. Its containers' `entries` are slices of it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PodEntry {
    /// `None` is Go's nil slice: the kubelet omits an empty one (`{}`), and it hashes
    /// differently from an empty list in a V2 checksum.
    pub memory_blocks: Blocks,
}

/// Pod uid -> the pod's reservation.
pub type PodAssignments = BTreeMap<String, PodEntry>;

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct State {
    pub machine_state: MachineState,
    pub entries: Assignments,
    /// Kept as read and written back (checkpoint V2 and V3); a V1 file cannot hold them.
    pub pod_entries: PodAssignments,
}

impl State {
    pub fn blocks(&self, pod: &str, container: &str) -> Option<&Vec<Block>> {
        self.entries.get(pod)?.get(container)?.as_ref()
    }

    pub fn set_blocks(&mut self, pod: &str, container: &str, blocks: Vec<Block>) {
        // Looked up before the keys are copied: most calls find the pod and container.
        let ctrs = match self.entries.get_mut(pod) {
            Some(m) => m,
            None => self.entries.entry(pod.to_string()).or_default(),
        };
        match ctrs.get_mut(container) {
            Some(b) => *b = Some(blocks),
            None => {
                ctrs.insert(container.to_string(), Some(blocks));
            }
        }
    }

    /// Deletes one container's blocks, as [`State::delete`] does, when it has some (a nil
    /// list is left as it is), and returns them.
    pub fn take_blocks(&mut self, pod: &str, container: &str) -> Option<Vec<Block>> {
        let m = self.entries.get_mut(pod)?;
        if !matches!(m.get(container), Some(Some(_))) {
            return None;
        }
        let blocks = m.remove(container).flatten();
        if m.is_empty() {
            self.entries.remove(pod);
        }
        blocks
    }

    /// Deletes one container's blocks, and the pod key when it becomes empty.
    pub fn delete(&mut self, pod: &str, container: &str) {
        if let Some(m) = self.entries.get_mut(pod) {
            m.remove(container);
            if m.is_empty() {
                self.entries.remove(pod);
            }
        }
    }
}

/// `getDefaultMachineState`: every node with its hugepage pools and `memory`, hugepage bytes
/// taken out of `memory`. Where the kubelet's uint64 subtractions would wrap (a reservation
/// larger than what its node has), the configuration is refused instead, naming the node.
pub fn default_machine_state(machine: &Machine, reserved: &SystemReserved) -> Result<MachineState> {
    let mut ms = MachineState::new();
    for node in &machine.nodes {
        let id = i64::from(node.id);
        let res = reserved.get(&id);
        let sr = |name: &str| res.and_then(|r| r.get(name)).copied().unwrap_or(0);
        let too_much = |name: &str, want: u64, have: u64| EngineError::ReservedMemory {
            message: format!(
                "NUMA node {id}: the reserved {name} ({}) is more than the node has for it ({})",
                bytes_text(want),
                bytes_text(have)
            ),
            node: Some(id),
        };
        let mut map = BTreeMap::new();
        for pool in &node.hugepages {
            let size = pool.page_size_kib * 1024;
            let name = hugepage_resource_name(size);
            let total = pool.bytes();
            let system_reserved = sr(&name);
            let alloc = total
                .checked_sub(system_reserved)
                .ok_or_else(|| too_much(&name, system_reserved, total))?;
            map.insert(
                name,
                MemoryTable {
                    total,
                    system_reserved,
                    allocatable: alloc,
                    reserved: 0,
                    free: alloc,
                },
            );
        }
        let system_reserved = sr("memory");
        let regular = node.memory_bytes - node.hugepage_bytes().min(node.memory_bytes);
        let alloc = regular
            .checked_sub(system_reserved)
            .ok_or_else(|| too_much("memory", system_reserved, regular))?;
        map.insert(
            "memory".into(),
            MemoryTable {
                total: node.memory_bytes,
                system_reserved,
                allocatable: alloc,
                reserved: 0,
                free: alloc,
            },
        );
        ms.insert(
            id,
            NodeState {
                number_of_assignments: 0,
                memory_map: map,
                cells: Some(vec![id]),
            },
        );
    }
    Ok(ms)
}

fn wide_bytes_text(v: u128) -> String {
    u64::try_from(v).map_or_else(|_| format!("{v} bytes"), bytes_text)
}

fn sorted(v: &[i64]) -> Vec<i64> {
    let mut s = v.to_vec();
    s.sort_unstable();
    s
}

/// `areMachineStatesEqual`. With `group_sums` (kubelet 1.32+) free and reserved are compared
/// as sums over the stored node's group; before that, per node.
pub fn machine_states_equal(ms1: &MachineState, ms2: &MachineState, group_sums: bool) -> bool {
    machine_state_differences(ms1, ms2, group_sums).is_empty()
}

/// What `areMachineStatesEqual` finds different between the restored state (`file`) and the
/// one its assignments imply (`expected`), one line per differing field, the fields in the
/// order the kubelet compares them. The kubelet stops at the first difference and says only
/// that there is one; an operator deciding whether to delete the file needs all of them.
pub fn machine_state_differences(
    file: &MachineState,
    expected: &MachineState,
    group_sums: bool,
) -> Vec<String> {
    let mut out = Vec::new();
    for id in expected.keys().filter(|id| !file.contains_key(id)) {
        out.push(format!("node {id}: on this machine, not in the file"));
    }
    for (id, n1) in file {
        let Some(n2) = expected.get(id) else {
            out.push(format!("node {id}: in the file, not on this machine"));
            continue;
        };
        if n1.number_of_assignments != n2.number_of_assignments {
            out.push(format!(
                "node {id} numberOfAssignments: file {}, expected {}",
                n1.number_of_assignments, n2.number_of_assignments
            ));
        }
        if sorted(n1.cells()) != sorted(n2.cells()) {
            out.push(format!(
                "node {id} cells: file {:?}, expected {:?}",
                sorted(n1.cells()),
                sorted(n2.cells())
            ));
        }
        for name in n2.memory_map.keys() {
            if !n1.memory_map.contains_key(name) {
                out.push(format!(
                    "node {id} {name}: on this machine, not in the file"
                ));
            }
        }
        for (name, t1) in &n1.memory_map {
            let Some(t2) = n2.memory_map.get(name) else {
                out.push(format!(
                    "node {id} {name}: in the file, not on this machine"
                ));
                continue;
            };
            // Group sums of a damaged file can pass 2^64; they are compared exactly.
            let mut field = |what: &str, a: u128, b: u128| {
                if a != b {
                    out.push(format!(
                        "node {id} {name} {what}: file {}, expected {}",
                        wide_bytes_text(a),
                        wide_bytes_text(b)
                    ));
                }
            };
            field("total", t1.total.into(), t2.total.into());
            field(
                "systemReserved",
                t1.system_reserved.into(),
                t2.system_reserved.into(),
            );
            field("allocatable", t1.allocatable.into(), t2.allocatable.into());
            if !group_sums {
                field("reserved", t1.reserved.into(), t2.reserved.into());
                field("free", t1.free.into(), t2.free.into());
                continue;
            }
            let (mut f1, mut r1, mut f2, mut r2) = (0u128, 0u128, 0u128, 0u128);
            for cell in n1.cells() {
                let get = |ms: &MachineState| {
                    ms.get(cell)
                        .and_then(|n| n.memory_map.get(name))
                        .map_or((0, 0), |t| (u128::from(t.free), u128::from(t.reserved)))
                };
                let (a, b) = get(file);
                let (c, d) = get(expected);
                f1 += a;
                r1 += b;
                f2 += c;
                r2 += d;
            }
            let group = sorted(n1.cells());
            field(&format!("reserved (sum over group {group:?})"), r1, r2);
            field(&format!("free (sum over group {group:?})"), f1, f2);
        }
    }
    out
}

/// How a block's bytes are spread over the nodes of its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// The kubelet's: lowest node id first.
    Greedy,
    /// Evenly, in whole pages of this many bytes (`spread-hugepages`).
    Even { page: u64 },
}

/// Reserves one block: every node of `nodes` counts one more assignment and joins the group
/// `nodes`, and `bytes` of `resource` come off the nodes' free memory as `fill` says. Returns
/// what no node could hold (the kubelet leaves it unaccounted). The one place memory is taken.
pub fn reserve(
    ms: &mut MachineState,
    nodes: &[i64],
    resource: &str,
    bytes: u64,
    fill: Fill,
) -> u64 {
    for id in nodes {
        if let Some(ns) = ms.get_mut(id) {
            ns.number_of_assignments += 1;
            if ns.cells.as_deref() != Some(nodes) {
                ns.cells = Some(nodes.to_vec());
            }
        }
    }
    take(ms, nodes, resource, bytes, fill)
}

/// `bytes` of `resource` off the free memory of `nodes` (as `fill` says), without a new
/// assignment: a block that grows. Returns what no node could hold.
pub fn take(ms: &mut MachineState, nodes: &[i64], resource: &str, bytes: u64, fill: Fill) -> u64 {
    let amounts = match fill {
        Fill::Greedy => None,
        Fill::Even { page } => {
            let free: Vec<u64> = nodes
                .iter()
                .map(|id| table(ms, *id, resource).map_or(0, |t| t.free))
                .collect();
            Some(crate::placement::spread::even_split(&free, bytes, page))
        }
    };
    let mut left = bytes;
    for (i, id) in nodes.iter().enumerate() {
        let Some(t) = ms
            .get_mut(id)
            .and_then(|ns| ns.memory_map.get_mut(resource))
        else {
            continue;
        };
        let amount = match &amounts {
            None => t.free.min(left),
            Some(a) => a[i].min(t.free).min(left),
        };
        t.reserved += amount;
        t.free -= amount;
        left -= amount;
    }
    left
}

/// Releases one block, the inverse of [`reserve`]: a node whose last assignment goes returns
/// to serving single-node allocations, and `bytes` go back to the nodes' free memory.
pub fn release(ms: &mut MachineState, nodes: &[i64], resource: &str, bytes: u64, fill: Fill) {
    for id in nodes {
        if let Some(ns) = ms.get_mut(id) {
            ns.number_of_assignments -= 1;
            if ns.number_of_assignments == 0 && ns.cells.as_deref() != Some(&[*id]) {
                ns.cells = Some(vec![*id]);
            }
        }
    }
    give(ms, nodes, resource, bytes, fill);
}

/// `bytes` of `resource` back to the free memory of `nodes`, the assignments kept: a block
/// that shrinks. The inverse of [`take`].
pub fn give(ms: &mut MachineState, nodes: &[i64], resource: &str, bytes: u64, fill: Fill) {
    let amounts = match fill {
        Fill::Greedy => None,
        Fill::Even { page } => {
            let held: Vec<u64> = nodes
                .iter()
                .map(|id| table(ms, *id, resource).map_or(0, |t| t.reserved))
                .collect();
            Some(crate::placement::spread::even_split(&held, bytes, page))
        }
    };
    let mut left = bytes;
    for (i, id) in nodes.iter().enumerate() {
        let Some(t) = ms
            .get_mut(id)
            .and_then(|ns| ns.memory_map.get_mut(resource))
        else {
            continue;
        };
        let amount = match &amounts {
            None => t.reserved.min(left),
            Some(a) => a[i].min(t.reserved).min(left),
        };
        t.reserved -= amount;
        t.free += amount;
        left -= amount;
    }
}

fn table<'a>(ms: &'a MachineState, id: i64, resource: &str) -> Option<&'a MemoryTable> {
    ms.get(&id)?.memory_map.get(resource)
}

/// The machine state that `entries` imply on `machine`: the default state with every block
/// placed greedily, as `validateState` computes it. Errors name the first block that refers
/// to an unknown node or resource.
pub fn expected_machine_state(
    entries: &Assignments,
    machine: &Machine,
    reserved: &SystemReserved,
) -> Result<MachineState> {
    place(entries, None, machine, reserved).map(|(ms, _)| ms)
}

/// [`expected_machine_state`], and a description of every block that did not fit. With
/// `pod_entries` (the pod-level resource managers on), a pod that has its own reservation
/// counts once, by that reservation, and not by its containers' slices of it.
fn place(
    entries: &Assignments,
    pod_entries: Option<&PodAssignments>,
    machine: &Machine,
    reserved: &SystemReserved,
) -> Result<(MachineState, Vec<String>)> {
    let mut expected = default_machine_state(machine, reserved)?;
    let mut unplaced = Vec::new();
    for (pod, own_containers) in entries {
        let pod_blocks = pod_entries
            .and_then(|p| p.get(pod))
            .and_then(|e| e.memory_blocks.as_ref())
            .filter(|b| !b.is_empty())
            .map(|b| BTreeMap::from([(String::new(), Some(b.clone()))]));
        let containers = pod_blocks.as_ref().unwrap_or(own_containers);
        for (container, blocks) in containers {
            for b in blocks.iter().flatten() {
                // The kubelet stops at the first node it cannot find, or that lacks the
                // resource, in affinity order.
                for node in b.affinity() {
                    let Some(ns) = expected.get(node) else {
                        return Err(EngineError::mismatch(MismatchKind::UnknownNode, format!(
                            "[memorymanager] (pod: {pod}, container: {container}) the memory assignment uses the NUMA that does not exist"
                        )));
                    };
                    if !ns.memory_map.contains_key(&b.resource) {
                        return Err(EngineError::mismatch(MismatchKind::UnknownResource, format!(
                            "[memorymanager] (pod: {pod}, container: {container}) the memory assignment uses memory resource that does not exist"
                        )));
                    }
                }
                let remaining = reserve(
                    &mut expected,
                    b.affinity(),
                    &b.resource,
                    b.size,
                    Fill::Greedy,
                );
                if remaining > 0 {
                    unplaced.push(format!(
                        "pod {pod} container {container}: {remaining} bytes of {} on NUMA {:?} do not fit",
                        b.resource,
                        b.affinity()
                    ));
                }
            }
        }
    }
    Ok((expected, unplaced))
}

/// Rebuilds the machine state from the running containers' assignments (for a lost state
/// file): the assignments must refer to existing nodes and resources and fit.
pub fn rebuild_state(
    entries: Assignments,
    machine: &Machine,
    reserved: &SystemReserved,
) -> Result<State> {
    let (ms, missing) = place(&entries, None, machine, reserved)?;
    if let Some(first) = missing.first() {
        return Err(EngineError::mismatch(
            MismatchKind::Unfit,
            format!("[pymm] the memory assignments do not fit this machine: {first}"),
        ));
    }
    Ok(State {
        machine_state: ms,
        entries,
        pod_entries: PodAssignments::new(),
    })
}

/// Tolerating reboot drift (the idea of KEP-6232): the restored state differs from the one its
/// assignments imply on this machine only in node totals, each by at most `tolerance` bytes,
/// and every assignment still fits. Returns the rebased machine state, or `None` when the
/// difference is of another kind.
pub fn rebase_for_drift(
    state: &State,
    machine: &Machine,
    reserved: &SystemReserved,
    tolerance: u64,
    pod_level: bool,
) -> Option<MachineState> {
    let pods = pod_level.then_some(&state.pod_entries);
    let (expected, missing) = place(&state.entries, pods, machine, reserved).ok()?;
    if expected.len() != state.machine_state.len() || !missing.is_empty() {
        return None;
    }
    for (id, old) in &state.machine_state {
        let new = expected.get(id)?;
        if old.number_of_assignments != new.number_of_assignments
            || sorted(old.cells()) != sorted(new.cells())
            || old.memory_map.len() != new.memory_map.len()
        {
            return None;
        }
        for (name, t_old) in &old.memory_map {
            let t_new = new.memory_map.get(name)?;
            if t_old.system_reserved != t_new.system_reserved
                || t_old.total.abs_diff(t_new.total) > tolerance
                || t_new.allocatable < t_new.reserved
            {
                return None;
            }
        }
    }
    Some(expected)
}

/// The least drift tolerance with which [`rebase_for_drift`] accepts `state`: the largest
/// difference between a node total in the file and on this machine, if that rebase succeeds.
pub fn least_drift_tolerance(
    state: &State,
    machine: &Machine,
    reserved: &SystemReserved,
    pod_level: bool,
) -> Option<u64> {
    let current = default_machine_state(machine, reserved).ok()?;
    let drift = state
        .machine_state
        .iter()
        .filter_map(|(id, node)| Some((node, current.get(id)?)))
        .flat_map(|(old, new)| {
            old.memory_map
                .iter()
                .filter_map(|(name, t)| Some(t.total.abs_diff(new.memory_map.get(name)?.total)))
        })
        .max()?;
    (drift > 0 && rebase_for_drift(state, machine, reserved, drift, pod_level).is_some())
        .then_some(drift)
}

/// The static policy's `validateState`: rebuild the expected machine state from the
/// assignments and compare it with the restored one. An empty machine state without
/// assignments is replaced by the default state. With `pod_level` (the pod-level resource
/// managers), a pod with its own reservation counts once per pod.
pub fn validate_state(
    state: &mut State,
    machine: &Machine,
    reserved: &SystemReserved,
    group_sums: bool,
    pod_level: bool,
) -> Result<()> {
    if state.machine_state.is_empty() {
        if !state.entries.is_empty() {
            return Err(EngineError::mismatch(
                MismatchKind::EmptyMachineState,
                "[memorymanager] machine state can not be empty when it has memory assignments",
            ));
        }
        state.machine_state = default_machine_state(machine, reserved)?;
        return Ok(());
    }
    let pods = pod_level.then_some(&state.pod_entries);
    let (expected, _) = place(&state.entries, pods, machine, reserved)?;
    let differences = machine_state_differences(&state.machine_state, &expected, group_sums);
    if !differences.is_empty() {
        return Err(EngineError::StateMismatch {
            message: "[memorymanager] the expected machine state is different from the real one"
                .into(),
            kind: MismatchKind::MachineState,
            details: differences,
            least_drift: None,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::NumaNode;

    const GI: u64 = 1 << 30;
    const MI: u64 = 1 << 20;

    fn machine(memory: &[u64]) -> Machine {
        Machine {
            name: String::new(),
            nodes: memory
                .iter()
                .zip(0u32..)
                .map(|(&memory_bytes, id)| NumaNode {
                    id,
                    memory_bytes,
                    hugepages: vec![],
                    cpus: 1,
                    kind: crate::machine::MemoryKind::Dram,
                })
                .collect(),
            distances: None,
        }
    }

    fn one_gi_each(n: i64) -> SystemReserved {
        (0..n)
            .map(|id| (id, BTreeMap::from([("memory".to_string(), GI)])))
            .collect()
    }

    /// Two 16Gi nodes, 1Gi reserved on each; a 20Gi pod across both (group [0, 1]).
    fn wide_pod_state() -> State {
        let m = machine(&[16 * GI, 16 * GI]);
        let mut entries = Assignments::new();
        entries.entry("wide".into()).or_default().insert(
            "c".into(),
            Some(vec![Block {
                numa_affinity: Some(vec![0, 1]),
                resource: "memory".into(),
                size: 20 * GI,
            }]),
        );
        let machine_state = expected_machine_state(&entries, &m, &one_gi_each(2)).unwrap();
        State {
            machine_state,
            entries,
            pod_entries: PodAssignments::new(),
        }
    }

    #[test]
    fn equal_states_have_no_differences() {
        let s = wide_pod_state();
        assert!(machine_state_differences(&s.machine_state, &s.machine_state, true).is_empty());
        assert!(machine_states_equal(
            &s.machine_state,
            &s.machine_state,
            false
        ));
    }

    #[test]
    fn every_differing_field_is_listed_in_the_kubelets_order() {
        let s = wide_pod_state();
        let mut file = s.machine_state.clone();
        let node0 = file.get_mut(&0).unwrap();
        node0.number_of_assignments = 7;
        let t = node0.memory_map.get_mut("memory").unwrap();
        t.total += GI;
        t.system_reserved = 0;
        file.get_mut(&1).unwrap().cells = Some(vec![1]);
        file.insert(5, NodeState::default());
        assert_eq!(
            machine_state_differences(&file, &s.machine_state, true),
            vec![
                "node 0 numberOfAssignments: file 7, expected 1",
                "node 0 memory total: file 17Gi, expected 16Gi",
                "node 0 memory systemReserved: file 0, expected 1Gi",
                "node 1 cells: file [1], expected [0, 1]",
                "node 5: in the file, not on this machine",
            ]
        );
        file.remove(&1);
        let d = machine_state_differences(&file, &s.machine_state, true);
        assert_eq!(d[0], "node 1: on this machine, not in the file");
    }

    #[test]
    fn free_and_reserved_compare_per_group_from_1_32_and_per_node_before() {
        // The same 20Gi spread differently over the group: equal as group sums only.
        let s = wide_pod_state();
        let mut file = s.machine_state.clone();
        for (id, delta) in [(0i64, true), (1, false)] {
            let t = file
                .get_mut(&id)
                .unwrap()
                .memory_map
                .get_mut("memory")
                .unwrap();
            if delta {
                t.reserved -= GI;
                t.free += GI;
            } else {
                t.reserved += GI;
                t.free -= GI;
            }
        }
        assert!(machine_state_differences(&file, &s.machine_state, true).is_empty());
        assert_eq!(
            machine_state_differences(&file, &s.machine_state, false),
            vec![
                "node 0 memory reserved: file 14Gi, expected 15Gi",
                "node 0 memory free: file 1Gi, expected 0",
                "node 1 memory reserved: file 6Gi, expected 5Gi",
                "node 1 memory free: file 9Gi, expected 10Gi",
            ]
        );
    }

    #[test]
    fn least_drift_tolerance_is_the_largest_total_change_that_still_fits() {
        let s = wide_pod_state();
        let reserved = one_gi_each(2);
        // Node 0 lost 48Mi and node 1 gained 16Mi: 48Mi keeps both.
        let drifted = machine(&[16 * GI - 48 * MI, 16 * GI + 16 * MI]);
        assert_eq!(
            least_drift_tolerance(&s, &drifted, &reserved, false),
            Some(48 * MI)
        );
        assert!(rebase_for_drift(&s, &drifted, &reserved, 47 * MI, false).is_none());
        // No drift, nothing to tolerate.
        assert_eq!(
            least_drift_tolerance(&s, &machine(&[16 * GI, 16 * GI]), &reserved, false),
            None
        );
        // 20Gi no longer fits in 2 x (10Gi - 1Gi): no tolerance keeps it.
        assert_eq!(
            least_drift_tolerance(&s, &machine(&[10 * GI, 10 * GI]), &reserved, false),
            None
        );
    }
}
