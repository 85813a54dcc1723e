//! The memory manager's state: per-NUMA memory tables, groups ("cells"), and the blocks
//! assigned to containers. Field names and integer types follow the kubelet's state package so
//! that the checkpoint and its checksum come out byte for byte the same.

use crate::error::{EngineError, Result};
use crate::machine::Machine;
use crate::quantity::hugepage_resource_name;
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

/// A container's blocks. `None` is a nil slice, as a restored file can hold: the kubelet treats
/// it as "no assignment" but hashes and writes it differently from an empty list.
pub type Blocks = Option<Vec<Block>>;

/// Pod uid -> container name -> blocks.
pub type Assignments = BTreeMap<String, BTreeMap<String, Blocks>>;

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct State {
    pub machine_state: MachineState,
    pub entries: Assignments,
}

impl State {
    pub fn blocks(&self, pod: &str, container: &str) -> Option<&Vec<Block>> {
        self.entries.get(pod)?.get(container)?.as_ref()
    }

    pub fn set_blocks(&mut self, pod: &str, container: &str, blocks: Vec<Block>) {
        self.entries
            .entry(pod.to_string())
            .or_default()
            .insert(container.to_string(), Some(blocks));
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
/// taken out of `memory`. Subtractions wrap like Go's uint64.
pub fn default_machine_state(machine: &Machine, reserved: &SystemReserved) -> MachineState {
    let mut ms = MachineState::new();
    for node in &machine.nodes {
        let id = i64::from(node.id);
        let res = reserved.get(&id);
        let sr = |name: &str| res.and_then(|r| r.get(name)).copied().unwrap_or(0);
        let mut map = BTreeMap::new();
        let mut hp_bytes = 0u64;
        for pool in &node.hugepages {
            let size = pool.page_size_kib * 1024;
            let name = hugepage_resource_name(size);
            let total = pool.num_pages.wrapping_mul(size);
            let system_reserved = sr(&name);
            let alloc = total.wrapping_sub(system_reserved);
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
            hp_bytes = hp_bytes.wrapping_add(total);
        }
        let system_reserved = sr("memory");
        let alloc = node
            .memory_bytes
            .wrapping_sub(system_reserved)
            .wrapping_sub(hp_bytes);
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
    ms
}

fn sorted(v: &[i64]) -> Vec<i64> {
    let mut s = v.to_vec();
    s.sort_unstable();
    s
}

/// `areMachineStatesEqual`. With `group_sums` (kubelet 1.32+) free and reserved are compared
/// as sums over the stored node's group; before that, per node.
pub fn machine_states_equal(ms1: &MachineState, ms2: &MachineState, group_sums: bool) -> bool {
    if ms1.len() != ms2.len() {
        return false;
    }
    for (id, n1) in ms1 {
        let Some(n2) = ms2.get(id) else {
            return false;
        };
        if n1.number_of_assignments != n2.number_of_assignments
            || sorted(n1.cells()) != sorted(n2.cells())
            || n1.memory_map.len() != n2.memory_map.len()
        {
            return false;
        }
        for (name, t1) in &n1.memory_map {
            let Some(t2) = n2.memory_map.get(name) else {
                return false;
            };
            if t1.total != t2.total
                || t1.system_reserved != t2.system_reserved
                || t1.allocatable != t2.allocatable
            {
                return false;
            }
            if !group_sums {
                if t1.reserved != t2.reserved || t1.free != t2.free {
                    return false;
                }
                continue;
            }
            let (mut f1, mut r1, mut f2, mut r2) = (0u64, 0u64, 0u64, 0u64);
            for cell in n1.cells() {
                let get = |ms: &MachineState| {
                    ms.get(cell)
                        .and_then(|n| n.memory_map.get(name))
                        .map_or((0, 0), |t| (t.free, t.reserved))
                };
                let (a, b) = get(ms1);
                let (c, d) = get(ms2);
                f1 = f1.wrapping_add(a);
                r1 = r1.wrapping_add(b);
                f2 = f2.wrapping_add(c);
                r2 = r2.wrapping_add(d);
            }
            if f1 != f2 || r1 != r2 {
                return false;
            }
        }
    }
    true
}

/// The machine state that `entries` imply on `machine`: the default state with every block
/// placed greedily, as `validateState` computes it. Errors name the first block that refers
/// to an unknown node or resource.
pub fn expected_machine_state(
    entries: &Assignments,
    machine: &Machine,
    reserved: &SystemReserved,
) -> Result<MachineState> {
    place(entries, machine, reserved).map(|(ms, _)| ms)
}

/// [`expected_machine_state`], and a description of every block that did not fit.
fn place(
    entries: &Assignments,
    machine: &Machine,
    reserved: &SystemReserved,
) -> Result<(MachineState, Vec<String>)> {
    let mut expected = default_machine_state(machine, reserved);
    let mut unplaced = Vec::new();
    for (pod, containers) in entries {
        for (container, blocks) in containers {
            for b in blocks.iter().flatten() {
                let mut remaining = b.size;
                for node in b.affinity() {
                    let Some(ns) = expected.get_mut(node) else {
                        return Err(EngineError::StateMismatch(format!(
                            "[memorymanager] (pod: {pod}, container: {container}) the memory assignment uses the NUMA that does not exist"
                        )));
                    };
                    ns.number_of_assignments += 1;
                    ns.cells = b.numa_affinity.clone();
                    let Some(t) = ns.memory_map.get_mut(&b.resource) else {
                        return Err(EngineError::StateMismatch(format!(
                            "[memorymanager] (pod: {pod}, container: {container}) the memory assignment uses memory resource that does not exist"
                        )));
                    };
                    if remaining == 0 || t.free == 0 {
                        continue;
                    }
                    let take = t.free.min(remaining);
                    t.reserved += take;
                    t.free -= take;
                    remaining -= take;
                }
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
    let (ms, missing) = place(&entries, machine, reserved)?;
    if let Some(first) = missing.first() {
        return Err(EngineError::StateMismatch(format!(
            "[pymm] the memory assignments do not fit this machine: {first}"
        )));
    }
    Ok(State {
        machine_state: ms,
        entries,
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
) -> Option<MachineState> {
    let (expected, missing) = place(&state.entries, machine, reserved).ok()?;
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

/// The static policy's `validateState`: rebuild the expected machine state from the
/// assignments and compare it with the restored one. An empty machine state without
/// assignments is replaced by the default state.
pub fn validate_state(
    state: &mut State,
    machine: &Machine,
    reserved: &SystemReserved,
    group_sums: bool,
) -> Result<()> {
    if state.machine_state.is_empty() {
        if !state.entries.is_empty() {
            return Err(EngineError::StateMismatch(
                "[memorymanager] machine state can not be empty when it has memory assignments"
                    .into(),
            ));
        }
        state.machine_state = default_machine_state(machine, reserved);
        return Ok(());
    }
    let expected = expected_machine_state(&state.entries, machine, reserved)?;
    if !machine_states_equal(&state.machine_state, &expected, group_sums) {
        return Err(EngineError::StateMismatch(
            "[memorymanager] the expected machine state is different from the real one".into(),
        ));
    }
    Ok(())
}
