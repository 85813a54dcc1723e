//! Property tests of pymm's placement options on random tiered machines and pod sequences:
//! - every option keeps `reserved + free == allocatable`, groups disjoint (container scope),
//!   and a state file the kubelet (1.32+ rules) restores;
//! - `admit-when-fits` never rejects a container that some valid set of nodes can hold (by the
//!   literal transcription of the kubelet's `calculateHints`, an oracle independent of the
//!   engine's search) and never places one outside such a set;
//! - options given but off decide exactly as no options at all.

mod common;

use common::*;
use proptest::prelude::*;
use pymm_engine::lifecycle::Op as Lifecycle;
use pymm_engine::machine::{Machine, MemoryKind, Tier};
use pymm_engine::manager::{Config, Manager, Scope, Search};
use pymm_engine::policy::MemoryOptions;
use pymm_engine::quantity::{Format, Quantity};
use pymm_engine::request::{container_requested, Pod};
use pymm_engine::reserved::MemoryReservation;
use std::sync::Arc;

use pymm_engine::topology::{AllocationStrategy, Policy};
use serde_json::json;

#[derive(Debug, Clone)]
struct Options {
    admit_when_fits: bool,
    spread: bool,
    tiers: bool,
    restrict: bool,
    closest: bool,
    strategy: AllocationStrategy,
}

fn options() -> impl Strategy<Value = Options> {
    (
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop_oneof![
            Just(AllocationStrategy::None),
            Just(AllocationStrategy::MostAllocated),
            Just(AllocationStrategy::LeastAllocated),
            Just(AllocationStrategy::LeastStranded)
        ],
    )
        .prop_map(
            |(admit_when_fits, spread, tiers, restrict, closest, strategy)| Options {
                admit_when_fits,
                spread,
                tiers,
                restrict,
                closest,
                strategy,
            },
        )
}

/// Nodes with CPUs and DRAM come first; the rest are CPU-less HBM or CXL, as on the tiered
/// catalog machines. Distances grow with the gap between positions.
fn machine(s: &Spec) -> Machine {
    let n = s.nodes.len();
    let cpu_nodes = n.div_ceil(2);
    Machine {
        name: "tiered".into(),
        nodes: s
            .nodes
            .iter()
            .enumerate()
            .map(|(i, &sizes)| {
                let kind = match (i < cpu_nodes, i % 2) {
                    (true, _) => MemoryKind::Dram,
                    (false, 0) => MemoryKind::Hbm,
                    (false, _) => MemoryKind::Cxl,
                };
                node(i as u32, sizes, if i < cpu_nodes { 8 } else { 0 }, kind)
            })
            .collect(),
        distances: Some(
            (0..n)
                .map(|i| {
                    (0..n)
                        .map(|j| {
                            if i == j {
                                10
                            } else {
                                10 + 5 * i.abs_diff(j) as u64
                            }
                        })
                        .collect()
                })
                .collect(),
        ),
    }
}

fn config(s: &Spec, o: &Options) -> Config {
    let reserved = (0..s.nodes.len())
        .map(|i| MemoryReservation {
            numa_node: i as i32,
            limits: [(
                "memory".to_string(),
                (Quantity::from_bytes(GI, Format::BinarySI), "1Gi".into()),
            )]
            .into(),
        })
        .collect();
    let mut c = Config {
        topology_policy: s.policy,
        scope: s.scope,
        reserved: Some(reserved),
        search: Search::Exact,
        memory_options: MemoryOptions {
            admit_when_fits: o.admit_when_fits,
            spread_hugepages: o.spread,
            memory_tiers: o.tiers,
            strict_numa_groups: false,
            ..MemoryOptions::default()
        },
        ..Config::default()
    };
    c.topology_options.numa_allocation_strategy = o.strategy;
    c.topology_options.restrict_to_cpu_numa_nodes = o.restrict;
    c.topology_options.prefer_closest_numa_nodes = o.closest;
    c
}

fn pod(uid: &str, ctrs: &[(u64, u64, u64)], tier: Option<&str>) -> Pod {
    let cs: Vec<_> = ctrs
        .iter()
        .enumerate()
        .map(|(j, (m, h2, h1))| container(&format!("c{j}"), *m, *h2, *h1))
        .collect();
    let mut v = json!({"uid": uid, "containers": cs});
    if let Some(t) = tier {
        v["annotations"] = json!({"pymm.io/memory-tier": t});
    }
    Pod::from_value(&v).unwrap()
}

/// The node ids a tier may use on [`machine`] (None: any).
fn tier_nodes(m: &Machine, tier: Option<Tier>) -> Option<Vec<i64>> {
    let t = tier?;
    Some(
        m.nodes
            .iter()
            .filter(|n| t.admits(n.kind))
            .map(|n| i64::from(n.id))
            .collect(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

    #[test]
    fn options_keep_the_state_valid_and_admit_what_fits(
        s in spec_n(1..7),
        o in options(),
        tiers in prop::collection::vec(prop_oneof![Just(None), Just(Some("dram")), Just(Some("hbm")), Just(Some("any"))], 25),
    ) {
        let s = Spec { version: pymm_engine::version::KubeletVersion::V1_32, ..s };
        let m = machine(&s);
        let c = config(&s, &o);
        let mut mgr = Manager::new(m.clone(), c.clone(), None, "state").unwrap();
        let mut uids: Vec<String> = vec![];
        for (i, op) in s.ops.iter().enumerate() {
            match op {
                Op::Admit { ctrs, start, .. } => {
                    let uid = format!("pod-{i}");
                    let tier = if o.tiers || o.restrict { tiers[i % tiers.len()] } else { None };
                    let p = pod(&uid, &ctrs[..1], tier);
                    let req = container_requested(&p.containers[0]).unwrap();
                    // Every valid set of nodes that can hold the container, before it comes.
                    let mut valid = kubelet_hints(mgr.state(), &req);
                    if let Some(allowed) = tier_nodes(&m, p.tier) {
                        valid.retain(|(nodes, _)| nodes.iter().all(|n| allowed.contains(n)));
                    }
                    let a = admit(&mut mgr, &p, false);
                    let awf = o.admit_when_fits
                        && s.policy == Policy::BestEffort
                        && s.scope == Scope::Container;
                    if awf {
                        if a.admit {
                            let nodes = mgr.container_nodes(&uid, "c0");
                            if let Some(nodes) = nodes {
                                prop_assert!(valid.iter().any(|(v, _)| *v == nodes),
                                    "placed on {:?}, not a valid set {:?}", nodes, valid);
                            }
                        } else {
                            prop_assert!(valid.is_empty(),
                                "rejected ({:?}) although {:?} can hold it", a.message, valid);
                        }
                    }
                    if a.admit && *start {
                        common::start(&mut mgr, &uid);
                    }
                    uids.push(uid);
                }
                Op::Remove(k) if !uids.is_empty() => {
                    let uid = uids.remove(k % uids.len());
                    release(&mut mgr, &uid);
                }
                Op::RemoveContainer(k) if !uids.is_empty() => {
                    let uid = &uids[k % uids.len()];
                    stop(&mut mgr, uid, "c0");
                }
                _ => {}
            }
            check_invariants(mgr.state(), s.scope == Scope::Container)?;
            // The kubelet (1.32+ rules, no pymm option) restores what the options wrote.
            let plain = Config { memory_options: MemoryOptions::default(), ..config(&s, &Options {
                admit_when_fits: false, spread: false, tiers: false, restrict: false,
                closest: false, strategy: AllocationStrategy::None,
            }) };
            let text = mgr.checkpoint_json();
            let restored = Manager::new(m.clone(), plain, Some(&text), "state");
            prop_assert!(restored.is_ok(), "the kubelet would refuse the state: {:?}", restored.err());
        }
    }

    #[test]
    fn options_given_but_off_are_the_kubelet(s in spec_n(1..6)) {
        let s = Spec { version: pymm_engine::version::KubeletVersion::V1_32, ..s };
        let base = json!({"topology_policy": s.policy.as_str(), "scope": s.scope.as_str(),
                          "search": "exact"});
        let mut with_off = base.clone();
        with_off["memory_policy_options"] = json!({"admit-when-fits": "false",
            "spread-hugepages": "false", "memory-tiers": "false"});
        with_off["policy_options"] = json!({"numa-allocation-strategy": "none",
            "restrict-to-cpu-numa-nodes": "false"});
        let decode = |v: &serde_json::Value| Config::from_value(v).unwrap();
        let mut kubelet = Manager::new(machine(&s), decode(&base), None, "state").unwrap();
        let mut given = Manager::new(machine(&s), decode(&with_off), None, "state").unwrap();
        for (i, op) in s.ops.iter().enumerate() {
            if let Op::Admit { ctrs, .. } = op {
                let p = pod(&format!("pod-{i}"), ctrs, None);
                let a = admit(&mut kubelet, &p, false);
                let b = admit(&mut given, &p, false);
                prop_assert_eq!((a.admit, &a.message), (b.admit, &b.message));
                prop_assert_eq!(kubelet.checkpoint_json(), given.checkpoint_json());
            }
        }
    }
}

/// A CPU manager's answer for one container or pod: no preference, or a few node sets
/// (mostly single nodes, as exclusive CPUs give), each preferred or not.
fn cpu_answer(n: usize, picks: &[(u8, bool)]) -> serde_json::Value {
    if picks.is_empty() {
        return serde_json::Value::Null;
    }
    let hints: Vec<_> = picks
        .iter()
        .map(|(bits, preferred)| {
            let raw = u32::from(*bits) & ((1u32 << n) - 1);
            let raw = if raw == 0 { 1 } else { raw };
            let ids: Vec<u32> = (0..n as u32).filter(|i| raw & (1 << i) != 0).collect();
            json!({"affinity": ids, "preferred": preferred})
        })
        .collect();
    json!({ "cpu": hints })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    /// `strict-numa-groups`: whatever the CPU manager hints, in container and pod scope, groups
    /// are disjoint or identical after every operation, no container spans nodes under
    /// single-numa-node, and the kubelet restores the state.
    #[test]
    fn strict_groups_never_overlap_nor_span_under_single_numa_node(
        s in spec_n(1..6),
        cpu in prop::collection::vec(prop::collection::vec((1u8..32, any::<bool>()), 0..3), 25),
        awf in any::<bool>(),
    ) {
        let s = Spec { version: pymm_engine::version::KubeletVersion::V1_32, ..s };
        let m = machine(&s);
        let mut c = config(&s, &Options {
            admit_when_fits: awf, spread: false, tiers: false, restrict: false, closest: false,
            strategy: AllocationStrategy::None,
        });
        c.memory_options.strict_numa_groups = true;
        let mut mgr = Manager::new(m.clone(), c, None, "state").unwrap();
        let n = s.nodes.len();
        let mut uids: Vec<String> = vec![];
        for (i, op) in s.ops.iter().enumerate() {
            match op {
                Op::Admit { ctrs, start, .. } => {
                    let uid = format!("pod-{i}");
                    let p = pod(&uid, ctrs, None);
                    let picks = &cpu[i % cpu.len()];
                    let containers: serde_json::Map<String, serde_json::Value> = p.containers
                        .iter()
                        .enumerate()
                        .map(|(j, c)| (c.name.clone(), cpu_answer(n, &cpu[(i + j) % cpu.len()])))
                        .collect();
                    let extra = json!([{"name": "cpu", "containers": containers,
                                        "pod": cpu_answer(n, picks)}]);
                    let a = mgr
                        .apply(&Lifecycle::Admit {
                            pod: Arc::new(p.clone()),
                            hints: Some(extra),
                            start: false,
                            trace: false,
                        })
                        .unwrap()
                        .into_admission()
                        .unwrap();
                    if a.admit && *start {
                        common::start(&mut mgr, &uid);
                    }
                    if s.policy == Policy::SingleNumaNode {
                        for c in &p.containers {
                            let nodes = mgr.container_nodes(&uid, &c.name).unwrap_or_default();
                            prop_assert!(nodes.len() <= 1,
                                "{} spans {:?} under single-numa-node", c.name, nodes);
                        }
                    }
                    uids.push(uid);
                }
                Op::Remove(k) if !uids.is_empty() => {
                    let uid = uids.remove(k % uids.len());
                    release(&mut mgr, &uid);
                }
                Op::RemoveContainer(k) if !uids.is_empty() => {
                    let uid = &uids[k % uids.len()];
                    stop(&mut mgr, uid, "c0");
                }
                _ => {}
            }
            // Pod scope and partial (rejected) pods included: strict groups hold everywhere.
            check_invariants(mgr.state(), true)?;
            let plain = config(&s, &Options {
                admit_when_fits: false, spread: false, tiers: false, restrict: false,
                closest: false, strategy: AllocationStrategy::None,
            });
            let restored = Manager::new(m.clone(), plain, Some(&mgr.checkpoint_json()), "state");
            prop_assert!(restored.is_ok(), "the kubelet would refuse the state: {:?}", restored.err());
        }
    }
}
