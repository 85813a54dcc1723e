//! Shared by the property tests: random machines and pod sequences, and the kubelet's
//! `calculateHints` transcribed literally as an independent oracle.
#![allow(dead_code)]

use proptest::prelude::*;
use pymm_engine::lifecycle::Op as Lifecycle;
use pymm_engine::machine::{HugePagePool, Machine, MemoryKind, NumaNode};
use pymm_engine::manager::{AdmitResult, Config, Manager, Scope, Search};
use pymm_engine::quantity::{Format, Quantity};
use pymm_engine::request::Pod;
use pymm_engine::reserved::MemoryReservation;
use pymm_engine::state::State;
use pymm_engine::topology::Policy;
use pymm_engine::version::KubeletVersion;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The lifecycle operations the property tests drive, applied through `Manager::apply` as
/// every driver applies them.
pub fn admit(m: &mut Manager, pod: &Pod, trace: bool) -> AdmitResult {
    let op = Lifecycle::Admit {
        pod: Arc::new(pod.clone()),
        hints: None,
        start: false,
        trace,
    };
    m.apply(&op)
        .expect("admit")
        .into_admission()
        .expect("an admission")
}

pub fn start(m: &mut Manager, uid: &str) {
    m.apply(&Lifecycle::Start {
        pod_uid: uid.to_string(),
    })
    .expect("start");
}

/// The operator's release of a whole pod, started or not.
pub fn release(m: &mut Manager, uid: &str) {
    m.apply(&Lifecycle::Release {
        pod_uid: uid.to_string(),
        container: None,
        missing_ok: true,
    })
    .expect("release");
}

/// The kubelet's RemoveContainer.
pub fn stop(m: &mut Manager, uid: &str, container: &str) {
    m.apply(&Lifecycle::Stop {
        pod_uid: uid.to_string(),
        container: container.to_string(),
    })
    .expect("stop");
}

pub const GI: u64 = 1 << 30;
pub const MI: u64 = 1 << 20;

#[derive(Debug, Clone)]
pub struct Spec {
    pub nodes: Vec<(u64, u64, u64)>, // memory GiB, 2Mi pages, 1Gi pages
    pub policy: Policy,
    pub scope: Scope,
    pub version: KubeletVersion,
    /// Node ids are `i * stride`: 1 for the kubelet's dense ids, 83 for sparse ids up to 996.
    pub stride: i64,
    pub ops: Vec<Op>,
}

#[derive(Debug, Clone)]
pub enum Op {
    Admit {
        ctrs: Vec<(u64, u64, u64)>,
        init: Option<(u64, u64)>,
        start: bool,
    }, // memory MiB, 2Mi MiB, 1Gi GiB
    Remove(usize),
    RemoveContainer(usize),
}

pub fn spec() -> impl Strategy<Value = Spec> {
    spec_n(1..6)
}

pub fn spec_n(nodes: std::ops::Range<usize>) -> impl Strategy<Value = Spec> {
    let node = (4u64..40, 0u64..600, 0u64..4);
    let ctr = (
        prop_oneof![64u64..2048, 2048u64..40000],
        prop_oneof![Just(0u64), 2u64..800],
        prop_oneof![Just(0u64), 1u64..3],
    );
    let op = prop_oneof![
        6 => (prop::collection::vec(ctr, 1..3), prop::option::of((64u64..20000, 0u64..200)), prop::bool::weighted(0.85))
            .prop_map(|(ctrs, init, start)| Op::Admit { ctrs, init, start }),
        2 => (0usize..20).prop_map(Op::Remove),
        1 => (0usize..20).prop_map(Op::RemoveContainer),
    ];
    (
        prop::collection::vec(node, nodes),
        prop_oneof![
            Just(Policy::None),
            Just(Policy::BestEffort),
            Just(Policy::Restricted),
            Just(Policy::SingleNumaNode)
        ],
        prop_oneof![Just(Scope::Container), Just(Scope::Pod)],
        prop_oneof![Just(KubeletVersion::V1_32), Just(KubeletVersion::V1_26)],
        prop::collection::vec(op, 1..25),
        prop_oneof![Just(1i64), Just(83i64)],
    )
        .prop_map(|(nodes, policy, scope, version, ops, stride)| Spec {
            nodes,
            policy,
            scope,
            version,
            stride,
            ops,
        })
}

/// A node with `gib` GiB of regular memory and the given 2Mi and 1Gi page counts, plus room
/// for the 1Gi reservation and the pools, so allocatable never wraps.
pub fn node(id: u32, (gib, p2m, p1g): (u64, u64, u64), cpus: u32, kind: MemoryKind) -> NumaNode {
    NumaNode {
        id,
        memory_bytes: gib * GI + p2m * 2 * MI + p1g * GI + GI,
        hugepages: vec![
            HugePagePool {
                page_size_kib: 2048,
                num_pages: p2m,
            },
            HugePagePool {
                page_size_kib: 1 << 20,
                num_pages: p1g,
            },
        ],
        cpus,
        kind,
    }
}

pub fn build(s: &Spec) -> Manager {
    build_with(s, Search::Exact)
}

pub fn build_with(s: &Spec, search: Search) -> Manager {
    let machine = Machine {
        name: "prop".into(),
        nodes: s
            .nodes
            .iter()
            .enumerate()
            .map(|(i, &sizes)| node((i as i64 * s.stride) as u32, sizes, 1, MemoryKind::Unknown))
            .collect(),
        distances: None,
    };
    let reserved = (0..s.nodes.len())
        .map(|i| MemoryReservation {
            numa_node: (i as i64 * s.stride) as i32,
            limits: [(
                "memory".to_string(),
                (
                    Quantity::from_bytes(GI, Format::BinarySI),
                    "1Gi".to_string(),
                ),
            )]
            .into(),
        })
        .collect();
    let mut config = Config {
        topology_policy: s.policy,
        scope: s.scope,
        version: s.version,
        reserved: Some(reserved),
        search,
        ..Config::default()
    };
    // Machines above 8 nodes need the option (1.32+) for the exhaustive search to run.
    if s.nodes.len() > 8 {
        config.topology_options.max_allowable_numa_nodes = 16;
    }
    Manager::new(machine, config, None, "memory_manager_state").unwrap()
}

pub fn container(name: &str, mem_mi: u64, hp2_mi: u64, hp1_gi: u64) -> serde_json::Value {
    let mut r = serde_json::Map::new();
    r.insert("cpu".into(), json!("1"));
    r.insert("memory".into(), json!(format!("{mem_mi}Mi")));
    if hp2_mi > 0 {
        r.insert("hugepages-2Mi".into(), json!(format!("{}Mi", hp2_mi * 2)));
    }
    if hp1_gi > 0 {
        r.insert("hugepages-1Gi".into(), json!(format!("{hp1_gi}Gi")));
    }
    json!({"name": name, "requests": r, "limits": r})
}

/// The kubelet's `calculateHints`, transcribed literally (reference §4.3): every mask, sums by
/// looping over bits, no pruning. The engine's walk must give exactly this list.
pub fn kubelet_hints(st: &State, req: &BTreeMap<String, u64>) -> Vec<(Vec<i64>, bool)> {
    let nodes: Vec<i64> = st.machine_state.keys().copied().collect();
    let n = nodes.len();
    let mut min_size = n;
    let mut out: Vec<Vec<i64>> = vec![];
    let mut masks: Vec<Vec<i64>> = vec![];
    for size in 1..=n {
        let mut idx: Vec<usize> = (0..size).collect();
        loop {
            masks.push(idx.iter().map(|&i| nodes[i]).collect());
            let Some(i) = (0..size).rev().find(|&i| idx[i] < n - size + i) else {
                break;
            };
            idx[i] += 1;
            for j in i + 1..size {
                idx[j] = idx[j - 1] + 1;
            }
        }
    }
    'mask: for bits in masks {
        let ms = &st.machine_state;
        let sum = |r: &str, free: bool| -> u64 {
            bits.iter()
                .map(|b| {
                    ms[b]
                        .memory_map
                        .get(r)
                        .map_or(0, |t| if free { t.free } else { t.allocatable })
                })
                .sum()
        };
        if req.iter().any(|(r, w)| sum(r, false) < *w) {
            continue;
        }
        min_size = min_size.min(bits.len());
        if bits.len() == 1 && ms[&bits[0]].cells().len() > 1 {
            continue;
        }
        if bits.len() > 1 {
            for b in &bits {
                let node = &ms[b];
                if node.number_of_assignments > 0 {
                    let mut cells = node.cells().to_vec();
                    cells.sort_unstable();
                    if node.cells().len() == 1 || cells != bits {
                        continue 'mask;
                    }
                }
            }
        }
        if req.iter().any(|(r, w)| sum(r, true) < *w) {
            continue;
        }
        out.push(bits);
    }
    out.into_iter()
        .map(|b| {
            let l = b.len();
            (b, l == min_size)
        })
        .collect()
}

pub fn check_invariants(st: &State, groups_disjoint: bool) -> Result<(), TestCaseError> {
    for (id, n) in &st.machine_state {
        for (r, t) in &n.memory_map {
            prop_assert_eq!(t.reserved + t.free, t.allocatable, "node {} {}", id, r);
        }
        if groups_disjoint && n.number_of_assignments > 0 {
            prop_assert!(
                n.cells().contains(id),
                "node {} is outside its own group",
                id
            );
            for (id2, n2) in &st.machine_state {
                if n2.number_of_assignments > 0 {
                    let (a, b) = (n.cells(), n2.cells());
                    let mut sa = a.to_vec();
                    sa.sort_unstable();
                    let mut sb = b.to_vec();
                    sb.sort_unstable();
                    let overlap = sa.iter().any(|x| sb.contains(x));
                    prop_assert!(sa == sb || !overlap, "groups of {} and {} overlap", id, id2);
                }
            }
        }
    }
    Ok(())
}
