//! Every reference set in `tests/conformance/` (the real kubelet's results) replayed on the
//! engine directly and compared under SCENARIOS.md's rules: a Rust-only change is checked
//! against the kubelet without Python. A reference file is `NAME.json` (or `.json.gz`) beside
//! its scenarios `NAME.scenarios.json[.gz]`, or a results file whose results embed their
//! scenario; the kubelet version it was produced by comes from its own `meta`.

use flate2::read::GzDecoder;
use pymm_engine::scenario::{replay_each, scenarios_from, InMemory, Reference};
use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/conformance")
}

fn read_text(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if path.extension().is_some_and(|e| e == "gz") {
        let mut s = String::new();
        GzDecoder::new(&bytes[..])
            .read_to_string(&mut s)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        s
    } else {
        String::from_utf8(bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&read_text(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The kubelet version a reference file was produced by, from its `meta.kubernetes`.
fn version_of(reference: &Reference, name: &str) -> &'static str {
    let k = reference.meta["kubernetes"].as_str().unwrap_or_default();
    if k.starts_with("v1.26") {
        "1.26"
    } else if k.starts_with("v1.32") {
        "1.32"
    } else if k.contains("v1.38") {
        "1.38"
    } else {
        panic!("{name}: meta.kubernetes {k:?} names no kubelet version pymm reproduces")
    }
}

/// `(name, reference path, scenarios path or None when embedded)`.
fn reference_sets() -> Vec<(String, PathBuf, Option<PathBuf>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir()).expect("tests/conformance") {
        let path = entry.expect("entry").path();
        let file = path
            .file_name()
            .and_then(|f| f.to_str())
            .unwrap_or_default();
        let Some(stem) = file
            .strip_suffix(".json.gz")
            .or_else(|| file.strip_suffix(".json"))
        else {
            continue;
        };
        if !stem.starts_with("kubelet-")
            || stem.ends_with(".scenarios")
            || stem == "kubelet-vectors"
        {
            continue;
        }
        let scenarios = [".scenarios.json", ".scenarios.json.gz"]
            .iter()
            .map(|s| dir().join(format!("{stem}{s}")))
            .find(|p| p.exists());
        out.push((stem.to_string(), path, scenarios));
    }
    out.sort();
    out
}

#[test]
fn every_reference_set_matches_the_kubelet() {
    let sets = reference_sets();
    assert!(
        sets.iter()
            .any(|(n, _, _)| n == "kubelet-oracle-latest-lifecycle"),
        "the lifecycle set must be among the reference sets: {sets:?}"
    );
    let mut failures = Vec::new();
    for (name, ref_path, scenarios_path) in &sets {
        let reference =
            Reference::parse(&read_text(ref_path), name).unwrap_or_else(|e| panic!("{e}"));
        let source = read_json(scenarios_path.as_deref().unwrap_or(ref_path));
        let scenarios = scenarios_from(&source).unwrap_or_else(|e| panic!("{name}: {e}"));
        let version = version_of(&reference, name);
        assert_eq!(
            scenarios.len(),
            reference.len(),
            "{name}: scenarios and results differ in number"
        );
        let mut diffs = Vec::new();
        let mut seen = Vec::new();
        replay_each(&scenarios, Some(version), &mut InMemory, &mut |_, got| {
            diffs.extend(reference.compare_one(&got));
            seen.push(got["name"].as_str().unwrap_or_default().to_string());
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        diffs.extend(reference.missing(seen.iter().map(String::as_str)));
        eprintln!(
            "{name} (kubelet {version}): {} scenarios, {} differences",
            scenarios.len(),
            diffs.len()
        );
        for d in diffs.iter().take(20) {
            eprintln!("  {d}");
        }
        if !diffs.is_empty() {
            failures.push(format!("{name}: {} differences", diffs.len()));
        }
    }
    assert!(failures.is_empty(), "{failures:?}");
}
