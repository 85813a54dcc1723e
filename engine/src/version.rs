//! Which kubelet's behaviour to reproduce. The default is the newest (1.32+); `1.26` differs
//! in the places listed in the conformance SCENARIOS.md.

use crate::error::{EngineError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KubeletVersion {
    V1_26,
    #[default]
    Latest,
}

impl KubeletVersion {
    /// The names a front end offers: each behaviour's own, and the release whose kubelet
    /// the newest one is checked against (`parse` takes more spellings).
    pub const CHOICES: [&'static str; 3] = ["latest", "1.32", "1.26"];

    pub fn parse(s: &str) -> Result<KubeletVersion> {
        match s.trim_start_matches('v') {
            "1.26" => Ok(KubeletVersion::V1_26),
            "" | "latest" | "1.32" | "1.33" | "1.34" | "1.35" | "1.36" => Ok(KubeletVersion::Latest),
            other => Err(EngineError::config(format!(
                "unsupported kubelet version {other:?}: pymm reproduces \"1.26\" and the newest behaviour (\"latest\", 1.32 and later)"
            ))),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            KubeletVersion::V1_26 => "1.26",
            KubeletVersion::Latest => "latest",
        }
    }
    /// Allocate rejects a mask that breaks the single-vs-cross NUMA rule (PR #123443).
    pub fn checks_group_rule_at_allocate(self) -> bool {
        self == KubeletVersion::Latest
    }
    /// Start-up validation compares free/reserved as sums over a group (PR #127074).
    pub fn group_sum_validation(self) -> bool {
        self == KubeletVersion::Latest
    }
    /// Restartable init containers exist.
    pub fn has_sidecars(self) -> bool {
        self == KubeletVersion::Latest
    }
    /// `max-allowable-numa-nodes` exists.
    pub fn has_max_allowable_option(self) -> bool {
        self == KubeletVersion::Latest
    }
    /// Pods with pod-level resources are left to other managers.
    pub fn skips_pod_level_resources(self) -> bool {
        self == KubeletVersion::Latest
    }
}
