//! Which kubelet's behaviour to reproduce. The default is `latest` (1.32 to 1.36); `1.26`
//! differs in the places listed in the conformance SCENARIOS.md, and `1.38` (1.37 and later)
//! in its state file, checkpoint V3 (see [`crate::checkpoint`]).

use crate::error::{EngineError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KubeletVersion {
    V1_26,
    /// 1.32 (and 1.33 to 1.36 are taken for it). Its state file is V1's; a real 1.36 writes
    /// V2, which `V1_38` reads and `pymm state convert --to v2` writes.
    #[default]
    Latest,
    /// 1.37 and 1.38: checkpoint V3 (PR #139626).
    /// Every other behaviour is, for now, `Latest`'s.
    V1_38,
}

/// The state-file layout a kubelet writes (reference §3 and [`crate::checkpoint`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointFormat {
    /// `policyName`, `machineState`, `entries`, `checksum`: every kubelet up to 1.35.
    V1,
    /// V1 plus top-level `podEntries`, the checksum over all of it: kubelet 1.36.
    V2,
    /// V1 (its checksum kept for rollback) plus `data` and `dataChecksum`: 1.37 and later.
    V3,
}

impl CheckpointFormat {
    pub fn parse(s: &str) -> Result<CheckpointFormat> {
        match s.to_ascii_lowercase().as_str() {
            "v1" | "1" => Ok(CheckpointFormat::V1),
            "v2" | "2" => Ok(CheckpointFormat::V2),
            "v3" | "3" => Ok(CheckpointFormat::V3),
            _ => Err(EngineError::Config {
                message: format!(
                    "unknown checkpoint format {s:?}: pymm writes \"v1\", \"v2\" and \"v3\""
                ),
                key: Some("format".into()),
                suggestion: None,
            }),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            CheckpointFormat::V1 => "v1",
            CheckpointFormat::V2 => "v2",
            CheckpointFormat::V3 => "v3",
        }
    }
}

impl KubeletVersion {
    /// The names a front end offers: each behaviour's own, and the release whose kubelet
    /// the newest one is checked against (`parse` takes more spellings).
    pub const CHOICES: [&'static str; 4] = ["latest", "1.38", "1.32", "1.26"];

    pub fn parse(s: &str) -> Result<KubeletVersion> {
        match s.trim_start_matches('v') {
            "1.26" => Ok(KubeletVersion::V1_26),
            "" | "latest" | "1.32" | "1.33" | "1.34" | "1.35" | "1.36" => Ok(KubeletVersion::Latest),
            "1.37" | "1.38" => Ok(KubeletVersion::V1_38),
            other => Err(EngineError::config(format!(
                "unsupported kubelet version {other:?}: pymm reproduces \"1.26\", \"latest\" (1.32 to 1.36) and \"1.38\" (1.37 and later)"
            ))),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            KubeletVersion::V1_26 => "1.26",
            KubeletVersion::Latest => "latest",
            KubeletVersion::V1_38 => "1.38",
        }
    }
    /// Allocate rejects a mask that breaks the single-vs-cross NUMA rule (PR #123443).
    pub fn checks_group_rule_at_allocate(self) -> bool {
        self != KubeletVersion::V1_26
    }
    /// Start-up validation compares free/reserved as sums over a group (PR #127074).
    pub fn group_sum_validation(self) -> bool {
        self != KubeletVersion::V1_26
    }
    /// Restartable init containers exist.
    pub fn has_sidecars(self) -> bool {
        self != KubeletVersion::V1_26
    }
    /// `max-allowable-numa-nodes` exists.
    pub fn has_max_allowable_option(self) -> bool {
        self != KubeletVersion::V1_26
    }
    /// Pods with pod-level resources are left to other managers.
    pub fn skips_pod_level_resources(self) -> bool {
        self != KubeletVersion::V1_26
    }
    /// The state file this kubelet writes. It reads what it writes and, from V3 on, the
    /// older formats too (V3, else V2, else V1); the older kubelets read the V1 fields of
    /// any file and ignore the rest.
    pub fn checkpoint_format(self) -> CheckpointFormat {
        match self {
            KubeletVersion::V1_26 | KubeletVersion::Latest => CheckpointFormat::V1,
            KubeletVersion::V1_38 => CheckpointFormat::V3,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_name_themselves() {
        for (text, v) in [
            ("1.26", KubeletVersion::V1_26),
            ("v1.26", KubeletVersion::V1_26),
            ("latest", KubeletVersion::Latest),
            ("1.32", KubeletVersion::Latest),
            ("1.36", KubeletVersion::Latest),
            ("1.37", KubeletVersion::V1_38),
            ("1.38", KubeletVersion::V1_38),
            ("v1.38", KubeletVersion::V1_38),
        ] {
            assert_eq!(KubeletVersion::parse(text).unwrap(), v, "{text}");
        }
        assert_eq!(KubeletVersion::default(), KubeletVersion::Latest);
        assert_eq!(KubeletVersion::V1_38.as_str(), "1.38");
        let e = KubeletVersion::parse("1.39").unwrap_err();
        assert!(e.message().contains("\"1.38\""), "{}", e.message());
    }

    #[test]
    fn only_the_checkpoint_sets_1_38_apart_from_latest() {
        let (l, n) = (KubeletVersion::Latest, KubeletVersion::V1_38);
        assert_eq!(
            l.checks_group_rule_at_allocate(),
            n.checks_group_rule_at_allocate()
        );
        assert_eq!(l.group_sum_validation(), n.group_sum_validation());
        assert_eq!(l.has_sidecars(), n.has_sidecars());
        assert_eq!(l.has_max_allowable_option(), n.has_max_allowable_option());
        assert_eq!(l.skips_pod_level_resources(), n.skips_pod_level_resources());
        assert!(n.has_sidecars() && !KubeletVersion::V1_26.has_sidecars());
        assert_eq!(l.checkpoint_format(), CheckpointFormat::V1);
        assert_eq!(
            KubeletVersion::V1_26.checkpoint_format(),
            CheckpointFormat::V1
        );
        assert_eq!(n.checkpoint_format(), CheckpointFormat::V3);
    }
}
