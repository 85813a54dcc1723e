//! In-place resize (`Op::Resize`): the kubelet's answer, transcribed from the allocation
//! manager's `canResizePod` and its unit tests (`TestRetryPendingResizesGuanteedQOSPods`: a
//! Guaranteed pod, alone or as a sidecar, whose memory changes is Infeasible under the Static
//! policy unless `InPlacePodVerticalScalingExclusiveMemory`; a pod that is not Guaranteed is
//! resized; with the gate the memory manager re-pins nothing), and pymm's `resize-in-place`
//! (the KEP-5294 design: grow or shrink in place, else extend the group to unused nodes),
//! whose invariants are checked on random sequences.

use proptest::prelude::*;
use pymm_engine::error::EngineError;
use pymm_engine::lifecycle::{Op, Outcome};
use pymm_engine::machine::Machine;
use pymm_engine::manager::{Config, Manager, ResizeResult};
use pymm_engine::request::Pod;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

const GI: u64 = 1 << 30;
const INFEASIBLE: &str =
    "Resize is infeasible for Guaranteed Pods alongside Memory Manager policy \"Static\"";

fn machine(gib: &[u64]) -> Machine {
    let nodes: Vec<Value> = gib
        .iter()
        .enumerate()
        .map(|(i, g)| json!({"id": i, "memory_bytes": g * GI, "hugepages": []}))
        .collect();
    Machine::from_value(&json!({"name": "t", "nodes": nodes})).unwrap()
}

fn manager(gib: &[u64], config: Value) -> Manager {
    let mut c = config;
    let reserved: Vec<String> = (0..gib.len()).map(|i| format!("{i}:memory=1Gi")).collect();
    c["reserved_memory"] = json!(reserved.join(";"));
    Manager::new(
        machine(gib),
        Config::from_value(&c).unwrap(),
        None,
        "memory_manager_state",
    )
    .unwrap()
}

fn in_place(policy: &str) -> Value {
    json!({"topology_policy": policy, "memory_policy_options": {"resize-in-place": true}})
}

/// A pod with app containers `(name, memory)` (Guaranteed: cpu 1, limits = requests).
fn pod(uid: &str, ctrs: &[(&str, &str)]) -> Arc<Pod> {
    let cs: Vec<Value> = ctrs
        .iter()
        .map(|(n, m)| {
            let r = json!({"cpu": "1", "memory": m});
            json!({"name": n, "requests": r, "limits": r})
        })
        .collect();
    Arc::new(Pod::from_value(&json!({"uid": uid, "containers": cs})).unwrap())
}

fn pod_json(v: Value) -> Arc<Pod> {
    Arc::new(Pod::from_value(&v).unwrap())
}

fn admit(m: &mut Manager, p: &Arc<Pod>) {
    let op = Op::Admit {
        pod: Arc::clone(p),
        hints: None,
        start: true,
        trace: false,
    };
    let r = m.apply(&op).unwrap().into_admission().unwrap();
    assert!(r.admit, "{:?}", r.message);
}

fn resize(m: &mut Manager, p: &Arc<Pod>) -> Result<ResizeResult, EngineError> {
    match m.apply(&Op::Resize { pod: Arc::clone(p) })? {
        Outcome::Resized(r) => Ok(*r),
        other => panic!("{other:?}"),
    }
}

/// The pod as the manager has it allocated now.
fn allocated(m: &Manager, uid: &str) -> Pod {
    m.active_pods().find(|p| p.uid == uid).unwrap().clone()
}

fn memory_of(p: &Pod, container: &str) -> String {
    p.container(container).unwrap().requests["memory"].to_string()
}

fn blocks(m: &Manager, uid: &str, c: &str) -> Vec<(Vec<i64>, u64)> {
    m.state()
        .blocks(uid, c)
        .unwrap()
        .iter()
        .map(|b| (b.affinity().to_vec(), b.size))
        .collect()
}

#[test]
fn a_guaranteed_memory_resize_is_infeasible_under_the_static_policy() {
    let mut m = manager(&[16, 16], json!({}));
    admit(&mut m, &pod("p", &[("c", "1Gi")]));
    let before = m.checkpoint_json();
    let r = resize(&mut m, &pod("p", &[("c", "2Gi")])).unwrap();
    assert_eq!(
        (r.admit, r.reason.as_deref(), r.message.as_deref()),
        (false, Some("Infeasible"), Some(INFEASIBLE))
    );
    // Not admitted: the allocation and the state stay as they were.
    assert_eq!(memory_of(&allocated(&m, "p"), "c"), "1Gi");
    assert_eq!(m.checkpoint_json(), before);
}

#[test]
fn a_sidecars_memory_resize_is_infeasible_too() {
    let mut m = manager(&[16, 16], json!({}));
    let with = |mem: &str| {
        let r = json!({"cpu": "1", "memory": mem});
        pod_json(json!({"uid": "p", "initContainers": [
            {"name": "s", "restartPolicy": "Always", "requests": r, "limits": r}],
            "containers": [{"name": "c", "requests": {"cpu": "1", "memory": "1Gi"},
                            "limits": {"cpu": "1", "memory": "1Gi"}}]}))
    };
    admit(&mut m, &with("1Gi"));
    let r = resize(&mut m, &with("2Gi")).unwrap();
    assert_eq!(r.message.as_deref(), Some(INFEASIBLE));
}

#[test]
fn with_the_gate_the_resize_is_admitted_and_nothing_is_re_pinned() {
    let mut m = manager(
        &[16, 16],
        json!({"feature_gates": {"InPlacePodVerticalScalingExclusiveMemory": true}}),
    );
    admit(&mut m, &pod("p", &[("c", "1Gi")]));
    let before = m.checkpoint_json();
    let r = resize(&mut m, &pod("p", &[("c", "3Gi")])).unwrap();
    assert!(r.admit && r.reason.is_none() && r.changed.is_empty());
    assert_eq!(memory_of(&allocated(&m, "p"), "c"), "3Gi");
    // The Static policy does nothing on a resize: the blocks still hold 1Gi.
    assert_eq!(m.checkpoint_json(), before);
    assert_eq!(blocks(&m, "p", "c"), vec![(vec![0], GI)]);
}

#[test]
fn a_pod_that_is_not_guaranteed_or_keeps_its_memory_is_resized() {
    let mut m = manager(&[16, 16], json!({}));
    let burstable = |lim: &str| {
        pod_json(json!({"uid": "b", "containers": [{"name": "c",
            "requests": {"cpu": "500m", "memory": "500Mi"},
            "limits": {"cpu": "1", "memory": lim}}]}))
    };
    admit(&mut m, &burstable("1Gi"));
    assert!(resize(&mut m, &burstable("2Gi")).unwrap().admit);
    // A Guaranteed pod whose cpu alone changes: the memory manager has nothing to refuse.
    admit(&mut m, &pod("g", &[("c", "1Gi")]));
    let cpu = pod_json(json!({"uid": "g", "containers": [{"name": "c",
        "requests": {"cpu": "2", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "1Gi"}}]}));
    assert!(resize(&mut m, &cpu).unwrap().admit);
    assert_eq!(
        allocated(&m, "g").container("c").unwrap().requests["cpu"].to_string(),
        "2"
    );
    // The None policy pins nothing, so refuses nothing.
    let mut none = manager(&[16, 16], json!({"memory_policy": "None"}));
    admit(&mut none, &pod("p", &[("c", "1Gi")]));
    assert!(resize(&mut none, &pod("p", &[("c", "2Gi")])).unwrap().admit);
}

#[test]
fn what_the_api_server_refuses_is_an_error_that_changes_nothing() {
    let mut m = manager(&[16, 16], in_place("none"));
    admit(&mut m, &pod("p", &[("c", "1Gi")]));
    let before = m.checkpoint_json();
    let err = |m: &mut Manager, p: Value| resize(m, &pod_json(p)).unwrap_err().to_string();
    let hp = json!({"cpu": "1", "memory": "1Gi", "hugepages-2Mi": "2Mi"});
    let e = err(
        &mut m,
        json!({"uid": "p", "containers": [{"name": "c", "requests": hp, "limits": hp}]}),
    );
    assert!(
        e.contains("only cpu and memory resources are mutable"),
        "{e}"
    );
    let e = err(
        &mut m,
        json!({"uid": "p", "containers": [{"name": "d", "requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}]}),
    );
    assert!(e.contains("may not add, remove, rename or reorder"), "{e}");
    let e = err(
        &mut m,
        json!({"uid": "p", "containers": [{"name": "c", "requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}}]}),
    );
    assert!(e.contains("Pod QOS Class may not change"), "{e}");
    match resize(&mut m, &pod("nobody", &[("c", "1Gi")])).unwrap_err() {
        EngineError::NotFound { pod, .. } => assert_eq!(pod, "nobody"),
        other => panic!("{other:?}"),
    }
    assert_eq!(m.checkpoint_json(), before);
    assert_eq!(memory_of(&allocated(&m, "p"), "c"), "1Gi");
}

#[test]
fn older_kubelets_resize_only_with_the_option() {
    let mut m = manager(&[16], json!({"kubelet_version": "1.32"}));
    admit(&mut m, &pod("p", &[("c", "1Gi")]));
    let e = resize(&mut m, &pod("p", &[("c", "2Gi")])).unwrap_err();
    assert!(e.message().contains("resize-in-place"), "{}", e.message());
    let mut m = manager(
        &[16],
        json!({"kubelet_version": "1.32", "memory_policy_options": {"resize-in-place": true}}),
    );
    admit(&mut m, &pod("p", &[("c", "1Gi")]));
    assert!(resize(&mut m, &pod("p", &[("c", "2Gi")])).unwrap().admit);
    // 1.26 would refuse the resized state at its next start: the option is refused there.
    let c = json!({"kubelet_version": "1.26", "memory_policy_options": {"resize-in-place": true}});
    assert!(Config::from_value(&c)
        .unwrap_err()
        .message()
        .contains("resize-in-place needs"));
}

#[test]
fn in_place_grows_and_shrinks_where_the_container_is() {
    let mut m = manager(&[16, 16], in_place("none"));
    admit(&mut m, &pod("p", &[("c", "2Gi")]));
    let r = resize(&mut m, &pod("p", &[("c", "6Gi")])).unwrap();
    assert!(r.admit, "{:?}", r.message);
    assert_eq!(blocks(&m, "p", "c"), vec![(vec![0], 6 * GI)]);
    let node0 = &m.state().machine_state[&0].memory_map["memory"];
    assert_eq!((node0.reserved, node0.free), (6 * GI, 9 * GI));
    assert_eq!(memory_of(&allocated(&m, "p"), "c"), "6Gi");
    let r = resize(&mut m, &pod("p", &[("c", "1Gi")])).unwrap();
    assert!(r.admit);
    assert_eq!(r.changed.len(), 1);
    let node0 = &m.state().machine_state[&0].memory_map["memory"];
    assert_eq!((node0.reserved, node0.free), (GI, 14 * GI));
}

#[test]
fn in_place_extends_the_group_to_unused_nodes_when_it_lacks_room() {
    // Node 0 holds p and q (single-node group [0]); node 1 is unused, node 2 is used.
    let mut m = manager(&[8, 8, 8], in_place("none"));
    admit(&mut m, &pod("p", &[("c", "4Gi")]));
    admit(&mut m, &pod("q", &[("c", "2Gi")]));
    // Grows p past node 0's 7Gi: the group [0] becomes [0, 1], for q too.
    let r = resize(&mut m, &pod("p", &[("c", "8Gi")])).unwrap();
    assert!(r.admit, "{:?}", r.message);
    assert_eq!(blocks(&m, "p", "c"), vec![(vec![0, 1], 8 * GI)]);
    assert_eq!(blocks(&m, "q", "c"), vec![(vec![0, 1], 2 * GI)]);
    let moved: Vec<&str> = r.changed.iter().map(|(p, _, _)| p.as_str()).collect();
    assert_eq!(moved, vec!["q", "p"]);
    for id in [0, 1] {
        let n = &m.state().machine_state[&id];
        assert_eq!((n.number_of_assignments, n.cells()), (2, &[0, 1][..]));
    }
    // The state restarts as the kubelet validates it (group sums).
    Manager::new(
        m.machine().clone(),
        m.config().clone(),
        Some(&m.checkpoint_json()),
        "memory_manager_state",
    )
    .unwrap();
}

#[test]
fn in_place_refuses_without_changing_anything() {
    let mut m = manager(&[8, 8], in_place("single-numa-node"));
    admit(&mut m, &pod("p", &[("c", "4Gi")]));
    let before = m.checkpoint_json();
    let r = resize(&mut m, &pod("p", &[("c", "9Gi")])).unwrap();
    assert_eq!(r.reason.as_deref(), Some("Deferred"));
    assert!(
        r.message.as_deref().unwrap().contains("single-numa-node"),
        "{:?}",
        r.message
    );
    assert_eq!(m.checkpoint_json(), before);
    assert_eq!(memory_of(&allocated(&m, "p"), "c"), "4Gi");
    // Without the policy's limit but with every other node in use: Deferred as well.
    let mut m = manager(&[8, 8], in_place("none"));
    admit(&mut m, &pod("p", &[("c", "4Gi")]));
    admit(&mut m, &pod("q", &[("c", "6Gi")]));
    let before = m.checkpoint_json();
    let r = resize(&mut m, &pod("p", &[("c", "8Gi")])).unwrap();
    assert_eq!(r.reason.as_deref(), Some("Deferred"), "{:?}", r.message);
    assert!(r.message.unwrap().contains("no set of unused NUMA nodes"));
    assert_eq!(m.checkpoint_json(), before);
}

#[test]
fn a_pod_level_reservation_is_not_resized_in_place() {
    let mut m = manager(
        &[16, 16],
        json!({"topology_policy": "single-numa-node", "scope": "pod",
               "feature_gates": {"PodLevelResourceManagers": true},
               "memory_policy_options": {"resize-in-place": true}}),
    );
    let with = |cpu: &str, mem: &str| {
        let own = json!({"cpu": "1", "memory": "2Gi"});
        pod_json(json!({"uid": "p",
            "resources": {"requests": {"cpu": cpu, "memory": mem}, "limits": {"cpu": cpu, "memory": mem}},
            "containers": [{"name": "own", "requests": own, "limits": own}, {"name": "shared"}]}))
    };
    admit(&mut m, &with("2", "6Gi"));
    let before = m.checkpoint_json();
    let r = resize(&mut m, &with("2", "8Gi")).unwrap();
    assert_eq!(r.reason.as_deref(), Some("Infeasible"));
    assert!(r.message.unwrap().contains("pod-level reservation"));
    assert_eq!(m.checkpoint_json(), before);
    // A resize that leaves every reservation as it is goes through.
    assert!(resize(&mut m, &with("3", "6Gi")).unwrap().admit);
    assert_eq!(m.checkpoint_json(), before);
}

// -- properties ----------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Step {
    Admit(u64),
    Resize(usize, u64),
    Remove(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (1u64..12).prop_map(Step::Admit),
        4 => (0usize..8, 1u64..24).prop_map(|(i, g)| Step::Resize(i, g)),
        1 => (0usize..8).prop_map(Step::Remove),
    ]
}

/// reserved + free == allocatable everywhere; every node of a group names the same group;
/// each node counts one assignment per block on it; each group's blocks add up to what its
/// nodes hold reserved.
fn check_invariants(m: &Manager) {
    let st = m.state();
    let mut count: BTreeMap<i64, i64> = BTreeMap::new();
    let mut held: BTreeMap<(Vec<i64>, String), u64> = BTreeMap::new();
    for containers in st.entries.values() {
        for b in containers.values().flatten().flatten() {
            let mut g = b.affinity().to_vec();
            g.sort_unstable();
            for id in &g {
                *count.entry(*id).or_default() += 1;
            }
            *held.entry((g, b.resource.clone())).or_default() += b.size;
        }
    }
    for (id, n) in &st.machine_state {
        for t in n.memory_map.values() {
            assert_eq!(t.reserved + t.free, t.allocatable, "node {id}");
        }
        assert_eq!(n.number_of_assignments, count.get(id).copied().unwrap_or(0));
        let mut cells = n.cells().to_vec();
        cells.sort_unstable();
        for other in &cells {
            let mut theirs = st.machine_state[other].cells().to_vec();
            theirs.sort_unstable();
            assert_eq!(
                theirs, cells,
                "nodes {id} and {other} disagree on their group"
            );
        }
    }
    for ((g, r), size) in held {
        let reserved: u64 = g
            .iter()
            .map(|id| st.machine_state[id].memory_map[&r].reserved)
            .sum();
        assert_eq!(reserved, size, "group {g:?} {r}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn resize_in_place_keeps_the_books_and_the_groups(
        nodes in prop::collection::vec(4u64..16, 1..5),
        policy in prop_oneof![Just("none"), Just("best-effort"), Just("single-numa-node")],
        steps in prop::collection::vec(step(), 1..30),
    ) {
        let mut m = manager(&nodes, in_place(policy));
        let mut pods: Vec<String> = Vec::new();
        for (i, s) in steps.iter().enumerate() {
            match s {
                Step::Admit(g) => {
                    let uid = format!("p{i}");
                    let p = pod(&uid, &[("c", &format!("{g}Gi"))]);
                    let op = Op::Admit { pod: p, hints: None, start: true, trace: false };
                    let r = m.apply(&op).unwrap().into_admission().unwrap();
                    if r.admit {
                        pods.push(uid);
                    } else {
                        // A rejected pod's partial allocations are the next admission's.
                        m.remove_stale_state(None);
                    }
                }
                Step::Resize(k, g) if !pods.is_empty() => {
                    let uid = pods[k % pods.len()].clone();
                    let before = m.checkpoint_json();
                    let was = memory_of(&allocated(&m, &uid), "c");
                    let r = resize(&mut m, &pod(&uid, &[("c", &format!("{g}Gi"))])).unwrap();
                    if r.admit {
                        prop_assert_eq!(memory_of(&allocated(&m, &uid), "c"), format!("{g}Gi"));
                        let total: u64 = blocks(&m, &uid, "c").iter().map(|(_, s)| s).sum();
                        prop_assert_eq!(total, g * GI);
                    } else {
                        prop_assert_eq!(m.checkpoint_json(), before);
                        prop_assert_eq!(memory_of(&allocated(&m, &uid), "c"), was);
                    }
                }
                Step::Remove(k) if !pods.is_empty() => {
                    let uid = pods.remove(k % pods.len());
                    m.apply(&Op::StopPod { pod_uid: uid }).unwrap();
                }
                _ => {}
            }
            check_invariants(&m);
            // What pymm wrote restarts under the kubelet's validation.
            let again = Manager::new(
                m.machine().clone(),
                m.config().clone(),
                Some(&m.checkpoint_json()),
                "memory_manager_state",
            );
            prop_assert!(again.is_ok(), "{:?}", again.err());
        }
    }
}
