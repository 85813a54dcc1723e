//! `Manager::admit_on` (a pod on nodes a planner chose): it accepts exactly the sets the
//! kubelet's `calculateHints` (transcribed literally in `common`) offers for the container, and
//! a refused set changes nothing.

mod common;

use common::*;
use proptest::prelude::*;
use pymm_engine::error::EngineError;
use pymm_engine::request::{container_requested, Pod};
use pymm_engine::version::KubeletVersion;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

    #[test]
    fn admit_on_accepts_exactly_the_sets_the_kubelet_offers(
        s in spec_n(1..6),
        ctr in (64u64..30000, 0u64..400, 0u64..3),
        pick in any::<u16>(),
    ) {
        let s = Spec {
            version: KubeletVersion::V1_32,
            policy: pymm_engine::topology::Policy::BestEffort,
            scope: pymm_engine::manager::Scope::Container,
            ..s
        };
        let mut mgr = build(&s);
        for (i, op) in s.ops.iter().enumerate() {
            if let Op::Admit { ctrs, .. } = op {
                let cs: Vec<_> = ctrs.iter().enumerate()
                    .map(|(j, (m, a, b))| container(&format!("c{j}"), *m, *a, *b)).collect();
                let p = Pod::from_value(&json!({"uid": format!("p{i}"), "containers": cs})).unwrap();
                if admit(&mut mgr, &p, false).admit {
                    start(&mut mgr, &p.uid);
                }
            }
        }
        let pod = Arc::new(Pod::from_value(&json!({"uid": "new", "containers": [
            container("c", ctr.0, ctr.1, ctr.2)]})).unwrap());
        // Stale state goes at every admission, this one too: what may not change is the rest.
        mgr.remove_stale_state(Some(&pod));
        let req = container_requested(&pod.containers[0]).unwrap();
        let offered: Vec<Vec<i64>> = kubelet_hints(mgr.state(), &req).into_iter().map(|(b, _)| b).collect();
        // Every non-empty set of the machine's nodes, one picked at random.
        let ids: Vec<i64> = mgr.state().machine_state.keys().copied().collect();
        let n = ids.len();
        let bits = (u32::from(pick) % ((1u32 << n) - 1)) + 1;
        let set: Vec<i64> = (0..n).filter(|i| bits & (1 << i) != 0).map(|i| ids[i]).collect();
        let before = mgr.checkpoint_json();
        let targets = BTreeMap::from([("c".to_string(), set.clone())]);
        let op = pymm_engine::lifecycle::Op::AdmitOn {
            pod: Arc::clone(&pod),
            targets,
            hints: None,
            start: false,
        };
        match mgr.apply(&op).map(|o| o.into_admission()) {
            Ok(r) => {
                prop_assert!(r.is_some_and(|r| r.admit));
                prop_assert!(offered.contains(&set), "{:?} accepted, not offered: {:?}", set, offered);
                prop_assert_eq!(mgr.container_nodes("new", "c"), Some(set));
                check_invariants(mgr.state(), true)?;
            }
            Err(EngineError::Placement { nodes, .. }) => {
                prop_assert!(!offered.contains(&set), "{:?} refused, but offered", set);
                prop_assert_eq!(nodes, set);
                prop_assert_eq!(mgr.checkpoint_json(), before);
            }
            Err(e) => prop_assert!(false, "unexpected error {e:?}"),
        }
    }
}
