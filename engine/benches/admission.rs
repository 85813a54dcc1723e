//! Engine-level micro-benchmarks (no Python): one admission on machines of 8 to 128 NUMA
//! nodes, the kubelet's full hint list, and the merge of two long hint lists.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use pymm_engine::hints::{calculate_hints, provider_answer};
use pymm_engine::lifecycle::{Op, Outcome};
use pymm_engine::machine::Machine;
use pymm_engine::manager::{Config, Manager, Search};
use pymm_engine::nodemask::NodeMask;
use pymm_engine::request::{container_requested, Pod};
use pymm_engine::topology::{policy_merge, MergeContext, Policy};
use serde_json::json;
use std::hint::black_box;
use std::sync::Arc;

fn machine(n: usize) -> Machine {
    let nodes: Vec<_> = (0..n)
        .map(|i| {
            json!({"id": i, "memory_bytes": 64u64 << 30,
                        "hugepages": [{"page_size_kib": 2048, "num_pages": 2048}]})
        })
        .collect();
    Machine::from_value(&json!({"name": format!("n{n}"), "nodes": nodes})).expect("machine")
}

fn manager(n: usize, search: Search) -> Manager {
    let mut config = Config {
        topology_policy: Policy::BestEffort,
        search,
        ..Config::default()
    };
    if search == Search::Exact && n > 8 {
        config.topology_options.max_allowable_numa_nodes = n;
    }
    let mut m = Manager::new(machine(n), config, None, "bench").expect("manager");
    for (i, mem) in ["100Gi", "2Gi", "2Gi", "2Gi"].iter().enumerate() {
        let p = pod(&format!("placed-{i}"), mem);
        assert!(admitted(m.apply(&admit(&p)).expect("admit")));
    }
    m
}

fn admit(p: &Pod) -> Op {
    Op::Admit {
        pod: Arc::new(p.clone()),
        hints: None,
        start: true,
        trace: false,
    }
}

fn admitted(o: Outcome) -> bool {
    o.admission().is_some_and(|a| a.admit)
}

fn pod(uid: &str, memory: &str) -> Pod {
    let r = json!({"cpu": "1", "memory": memory, "hugepages-2Mi": "64Mi"});
    Pod::from_value(&json!({"uid": uid, "containers": [{"name": "c", "requests": r, "limits": r}]}))
        .expect("pod")
}

fn admission(c: &mut Criterion) {
    let mut g = c.benchmark_group("admit memory+hugepages");
    for (n, search) in [
        (8, Search::Exact),
        (16, Search::Exact),
        (64, Search::Bounded),
        (128, Search::Bounded),
    ] {
        let mut m = manager(n, search);
        let p = admit(&pod("bench", "1Gi"));
        let release = Op::Release {
            pod_uid: "bench".into(),
            container: None,
            missing_ok: false,
        };
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                assert!(admitted(m.apply(black_box(&p)).expect("admit")));
                m.apply(&release).expect("release");
            })
        });
    }
    g.finish();
}

fn hint_lists(c: &mut Criterion) {
    let mut g = c.benchmark_group("full kubelet hint list");
    for n in [8usize, 12, 16] {
        let m = manager(n, Search::Exact);
        let p = pod("bench", "1Gi");
        let req = container_requested(&p.containers[0]).expect("req");
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                calculate_hints(&m.state().machine_state, black_box(&req), None, m.id_map())
                    .expect("hints")
            })
        });
        let hints =
            calculate_hints(&m.state().machine_state, &req, None, m.id_map()).expect("hints");
        let answer = provider_answer(&["hugepages-2Mi".into(), "memory".into()], hints);
        let ctx = MergeContext::plain(NodeMask::from_positions(0..n as i64).expect("mask"), None);
        g.bench_with_input(BenchmarkId::new("merge of two lists", n), &n, |b, _| {
            b.iter(|| policy_merge(Policy::BestEffort, &[black_box(&answer)], &ctx))
        });
    }
    g.finish();
}

/// The worst case for the exhaustive list: an empty machine, where every set is accepted.
fn hint_lists_empty_machine(c: &mut Criterion) {
    let mut g = c.benchmark_group("full kubelet hint list, empty machine");
    for n in [8usize, 16] {
        let mut m = manager(n, Search::Exact);
        for i in 0..4 {
            let release = Op::Release {
                pod_uid: format!("placed-{i}"),
                container: None,
                missing_ok: false,
            };
            m.apply(&release).expect("release");
        }
        let p = pod("bench", "1Gi");
        let req = container_requested(&p.containers[0]).expect("req");
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                calculate_hints(&m.state().machine_state, black_box(&req), None, m.id_map())
                    .expect("hints")
            })
        });
    }
    g.finish();
}

criterion_group!(benches, admission, hint_lists, hint_lists_empty_machine);
criterion_main!(benches);
