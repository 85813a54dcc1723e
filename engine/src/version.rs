//! Which kubelet's behaviour to reproduce, and the feature gates of that kubelet that pymm
//! models. Three behaviours, each named by the release it is checked against:
//!
//! | pymm | kubelet releases | differs from the one above it in |
//! |---|---|---|
//! | `1.38` (the default; `latest` names it, `1.37` is taken for it) | 1.37 and later | checkpoint V3 ([`crate::checkpoint`]); pod-level resources (skipped by default, the KEP-5526 allocation with `PodLevelResourceManagers`); containers requesting no memory skipped; the lifecycle operation (a resize is not an add); pod-scope hints regenerated per container after a restart; `max-allowable-numa-nodes` GA; feature gates |
//! | `1.32` (`1.33` to `1.36` are taken for it) | 1.32 to 1.36 | the group rule checked at Allocate, group-sum restart validation, sidecars, `max-allowable-numa-nodes` |
//! | `1.26` | 1.26 | (the oldest) |
//!
//! `latest` is an alias of the newest behaviour: it follows pymm as it learns newer kubelets.
//! A configuration recorded before 1.38 became the newest said `latest` for 1.32; whoever reads
//! such a record reads it as `1.32` ([`KubeletVersion::parse_recorded`]).

use crate::error::{closest, EngineError, Result};
use crate::topology::parse_go_bool;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord)]
pub enum KubeletVersion {
    V1_26,
    /// 1.32 (and 1.33 to 1.36 are taken for it). Its state file is V1's; a real 1.36 writes
    /// V2, which `V1_38` reads and `pymm state convert --to v2` writes.
    V1_32,
    /// 1.37 and 1.38 (master, about v1.38.0-alpha.2).
    #[default]
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

/// How far a Topology Manager policy option has come in a kubelet release: an alpha or beta
/// option needs its feature gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Maturity {
    Alpha,
    Beta,
    Stable,
}

impl KubeletVersion {
    /// The names a front end offers: each behaviour's own, and `latest` for the newest
    /// (`parse` takes more spellings).
    pub const CHOICES: [&'static str; 4] = ["1.38", "1.32", "1.26", "latest"];

    /// The newest behaviour pymm reproduces: what `latest` names.
    pub const NEWEST: KubeletVersion = KubeletVersion::V1_38;

    pub fn parse(s: &str) -> Result<KubeletVersion> {
        match s.trim_start_matches('v') {
            "1.26" => Ok(KubeletVersion::V1_26),
            "1.32" | "1.33" | "1.34" | "1.35" | "1.36" => Ok(KubeletVersion::V1_32),
            "" | "latest" | "1.37" | "1.38" => Ok(KubeletVersion::NEWEST),
            other => Err(EngineError::config(format!(
                "unsupported kubelet version {other:?}: pymm reproduces \"1.38\" (1.37 and later; also \"latest\"), \"1.32\" (1.32 to 1.36) and \"1.26\""
            ))),
        }
    }

    /// A version recorded by an earlier pymm (a state directory's configuration): there,
    /// `latest` (and an empty text) meant 1.32, the newest behaviour of its day.
    pub fn parse_recorded(s: &str) -> Result<KubeletVersion> {
        match s.trim_start_matches('v') {
            "" | "latest" => Ok(KubeletVersion::V1_32),
            _ => KubeletVersion::parse(s),
        }
    }

    /// The concrete name, as a configuration records it (never `latest`).
    pub fn as_str(self) -> &'static str {
        match self {
            KubeletVersion::V1_26 => "1.26",
            KubeletVersion::V1_32 => "1.32",
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
    /// Pods with pod-level resources are left to other managers (unless the 1.38 gates say
    /// otherwise, [`FeatureGates::manages_pod_level`]).
    pub fn skips_pod_level_resources(self) -> bool {
        self != KubeletVersion::V1_26
    }
    /// Pod-level resources, the lifecycle operation, checkpoint V3 and the rest of the table
    /// above: the 1.37+ code.
    pub fn is_1_38(self) -> bool {
        self == KubeletVersion::V1_38
    }
    /// Containers that request no memory or hugepages get no hints and no Allocate (PR #138770).
    pub fn skips_containers_without_memory(self) -> bool {
        self.is_1_38()
    }
    /// Pod-scope hints after a restart: each container's blocks against its own request
    /// (PR #141070); before, the first container's blocks against the pod's total.
    pub fn regenerates_pod_hints_per_container(self) -> bool {
        self.is_1_38()
    }
    /// The state file this kubelet writes. It reads what it writes and, from V3 on, the
    /// older formats too (V3, else V2, else V1); the older kubelets read the V1 fields of
    /// any file and ignore the rest.
    pub fn checkpoint_format(self) -> CheckpointFormat {
        match self {
            KubeletVersion::V1_26 | KubeletVersion::V1_32 => CheckpointFormat::V1,
            KubeletVersion::V1_38 => CheckpointFormat::V3,
        }
    }
    /// How far a Topology Manager option has come in this release (`policy_options.go`);
    /// `None` for the options only pymm has, which no gate governs.
    pub fn option_maturity(self, option: &str) -> Option<Maturity> {
        match (self, option) {
            (_, "prefer-closest-numa-nodes") => Some(Maturity::Stable),
            // Beta from 1.31 to 1.34, GA in 1.35.
            (KubeletVersion::V1_32, "max-allowable-numa-nodes") => Some(Maturity::Beta),
            (KubeletVersion::V1_38, "max-allowable-numa-nodes") => Some(Maturity::Stable),
            _ => None,
        }
    }
    /// `CheckPolicyOptionAvailable`'s refusal of an option whose gate is off, in this
    /// release's words (lowercased in 1.35).
    pub fn option_gate_error(self, maturity: Maturity, option: &str) -> Option<String> {
        let level = match maturity {
            Maturity::Alpha => "Alpha",
            Maturity::Beta => "Beta",
            Maturity::Stable => return None,
        };
        Some(if self.is_1_38() {
            format!(
                "topology manager policy {}-level options not enabled, but option {option:?} provided",
                level.to_lowercase()
            )
        } else {
            format!(
                "Topology Manager Policy {level}-level Options not enabled, but option {option:?} provided"
            )
        })
    }
}

/// A feature gate pymm models: its name, the first release pymm models it for, and its
/// default there and after.
struct Gate {
    name: &'static str,
    since: KubeletVersion,
    default: bool,
}

pub const POD_LEVEL_RESOURCES: &str = "PodLevelResources";
pub const POD_LEVEL_RESOURCE_MANAGERS: &str = "PodLevelResourceManagers";
pub const IN_PLACE_EXCLUSIVE_MEMORY: &str = "InPlacePodVerticalScalingExclusiveMemory";
pub const TOPOLOGY_BETA_OPTIONS: &str = "TopologyManagerPolicyBetaOptions";
pub const TOPOLOGY_ALPHA_OPTIONS: &str = "TopologyManagerPolicyAlphaOptions";

const GATES: [Gate; 5] = [
    Gate {
        name: POD_LEVEL_RESOURCES,
        since: KubeletVersion::V1_38,
        default: true,
    },
    Gate {
        name: POD_LEVEL_RESOURCE_MANAGERS,
        since: KubeletVersion::V1_38,
        default: false,
    },
    Gate {
        name: IN_PLACE_EXCLUSIVE_MEMORY,
        since: KubeletVersion::V1_38,
        default: false,
    },
    Gate {
        name: TOPOLOGY_BETA_OPTIONS,
        since: KubeletVersion::V1_32,
        default: true,
    },
    Gate {
        name: TOPOLOGY_ALPHA_OPTIONS,
        since: KubeletVersion::V1_32,
        default: false,
    },
];

/// The feature gates that change what the Memory and Topology Managers do, as the kubelet's
/// `--feature-gates` (or `featureGates` in its configuration) sets them; each one not given
/// keeps its default in the selected release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureGates {
    on: BTreeMap<&'static str, bool>,
}

impl Default for FeatureGates {
    fn default() -> Self {
        FeatureGates::defaults(KubeletVersion::default())
    }
}

impl FeatureGates {
    /// Every gate pymm models for `version`, at its default.
    pub fn defaults(version: KubeletVersion) -> FeatureGates {
        FeatureGates {
            on: GATES
                .iter()
                .filter(|g| version >= g.since)
                .map(|g| (g.name, g.default))
                .collect(),
        }
    }

    /// The gates of `version`, with `given` (name -> on) applied. A gate the release does not
    /// have (or pymm does not model for it) is refused, as the kubelet refuses an
    /// unrecognized one.
    pub fn parse(given: &BTreeMap<String, bool>, version: KubeletVersion) -> Result<FeatureGates> {
        let mut gates = FeatureGates::defaults(version);
        for (name, on) in given {
            match gates.on.get_mut(name.as_str()) {
                Some(slot) => *slot = *on,
                None => return Err(unrecognized(name, version)),
            }
        }
        Ok(gates)
    }

    /// Whether a gate is on (false for one the release does not have).
    pub fn enabled(&self, name: &str) -> bool {
        self.on.get(name).copied().unwrap_or(false)
    }

    /// The names of the gates `version` has, for messages and help.
    pub fn names(version: KubeletVersion) -> Vec<&'static str> {
        FeatureGates::defaults(version).on.into_keys().collect()
    }

    /// `PodLevelResources`: QoS from the pod's own resources.
    pub fn pod_level_resources(&self) -> bool {
        self.enabled(POD_LEVEL_RESOURCES)
    }
    /// `PodLevelResourceManagers` (KEP-5526).
    pub fn pod_level_resource_managers(&self) -> bool {
        self.enabled(POD_LEVEL_RESOURCE_MANAGERS)
    }
    /// Both gates the Static policy asks before it manages a pod with pod-level resources.
    pub fn manages_pod_level(&self) -> bool {
        self.pod_level_resources() && self.pod_level_resource_managers()
    }
    /// `InPlacePodVerticalScalingExclusiveMemory` (KEP-5294).
    pub fn in_place_exclusive_memory(&self) -> bool {
        self.enabled(IN_PLACE_EXCLUSIVE_MEMORY)
    }
}

fn unrecognized(name: &str, version: KubeletVersion) -> EngineError {
    let known = FeatureGates::names(version);
    let elsewhere = GATES.iter().any(|g| g.name == name);
    let message = if elsewhere {
        let has: Vec<&str> = [
            KubeletVersion::V1_26,
            KubeletVersion::V1_32,
            KubeletVersion::V1_38,
        ]
        .into_iter()
        .filter(|v| FeatureGates::names(*v).contains(&name))
        .map(KubeletVersion::as_str)
        .collect();
        format!(
            "unrecognized feature gate: {name} (pymm models it for kubelet {}, not {})",
            has.join(" and "),
            version.as_str()
        )
    } else if known.is_empty() {
        format!(
            "unrecognized feature gate: {name} (pymm models no feature gate of kubelet {})",
            version.as_str()
        )
    } else {
        format!(
            "unrecognized feature gate: {name} (kubelet {}: {})",
            version.as_str(),
            known.join(", ")
        )
    };
    let suggestion = if elsewhere {
        None
    } else {
        closest(name, &known)
    };
    EngineError::Config {
        message,
        key: Some(name.to_string()),
        suggestion,
    }
}

/// The kubelet's `--feature-gates` flag: `Name=true,Other=false`, once or more (later values
/// win), each value as Go's `strconv.ParseBool` reads it.
pub fn parse_feature_gates_flag(values: &[String]) -> Result<BTreeMap<String, bool>> {
    let mut out = BTreeMap::new();
    for value in values {
        for pair in value.split(',') {
            let pair = pair.trim();
            if pair.is_empty() {
                continue;
            }
            let Some((name, on)) = pair.split_once('=') else {
                return Err(EngineError::Config {
                    message: format!(
                        "--feature-gates {pair:?}: missing bool value for {pair} (expected Name=true or Name=false)"
                    ),
                    key: Some("feature_gates".into()),
                    suggestion: None,
                });
            };
            let (name, on) = (name.trim(), on.trim());
            let Some(b) = parse_go_bool(on) else {
                return Err(EngineError::Config {
                    message: format!(
                        "--feature-gates {pair:?}: invalid value of {name}={on}, err: strconv.ParseBool: parsing {on:?}: invalid syntax"
                    ),
                    key: Some("feature_gates".into()),
                    suggestion: None,
                });
            };
            out.insert(name.to_string(), b);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_name_themselves() {
        for (text, v) in [
            ("1.26", KubeletVersion::V1_26),
            ("v1.26", KubeletVersion::V1_26),
            ("1.32", KubeletVersion::V1_32),
            ("1.36", KubeletVersion::V1_32),
            ("latest", KubeletVersion::V1_38),
            ("1.37", KubeletVersion::V1_38),
            ("1.38", KubeletVersion::V1_38),
            ("v1.38", KubeletVersion::V1_38),
        ] {
            assert_eq!(KubeletVersion::parse(text).unwrap(), v, "{text}");
        }
        assert_eq!(KubeletVersion::default(), KubeletVersion::V1_38);
        assert_eq!(KubeletVersion::NEWEST, KubeletVersion::default());
        for v in [
            KubeletVersion::V1_26,
            KubeletVersion::V1_32,
            KubeletVersion::V1_38,
        ] {
            assert_eq!(KubeletVersion::parse(v.as_str()).unwrap(), v);
            assert_ne!(v.as_str(), "latest");
        }
        let e = KubeletVersion::parse("1.39").unwrap_err();
        assert!(e.message().contains("\"1.38\""), "{}", e.message());
    }

    #[test]
    fn a_recorded_latest_is_1_32() {
        assert_eq!(
            KubeletVersion::parse_recorded("latest").unwrap(),
            KubeletVersion::V1_32
        );
        assert_eq!(
            KubeletVersion::parse_recorded("1.38").unwrap(),
            KubeletVersion::V1_38
        );
        assert_eq!(
            KubeletVersion::parse_recorded("1.26").unwrap(),
            KubeletVersion::V1_26
        );
    }

    #[test]
    fn what_sets_1_38_apart_from_1_32() {
        let (old, new) = (KubeletVersion::V1_32, KubeletVersion::V1_38);
        assert_eq!(
            old.checks_group_rule_at_allocate(),
            new.checks_group_rule_at_allocate()
        );
        assert_eq!(old.group_sum_validation(), new.group_sum_validation());
        assert_eq!(old.has_sidecars(), new.has_sidecars());
        assert_eq!(
            old.has_max_allowable_option(),
            new.has_max_allowable_option()
        );
        assert!(!old.skips_containers_without_memory() && new.skips_containers_without_memory());
        assert!(
            !old.regenerates_pod_hints_per_container() && new.regenerates_pod_hints_per_container()
        );
        assert_eq!(old.checkpoint_format(), CheckpointFormat::V1);
        assert_eq!(
            KubeletVersion::V1_26.checkpoint_format(),
            CheckpointFormat::V1
        );
        assert_eq!(new.checkpoint_format(), CheckpointFormat::V3);
        assert_eq!(
            old.option_maturity("max-allowable-numa-nodes"),
            Some(Maturity::Beta)
        );
        assert_eq!(
            new.option_maturity("max-allowable-numa-nodes"),
            Some(Maturity::Stable)
        );
        assert_eq!(new.option_maturity("numa-allocation-strategy"), None);
    }

    #[test]
    fn option_gate_texts_are_lowercased_in_1_38() {
        let o = "max-allowable-numa-nodes";
        assert_eq!(
            KubeletVersion::V1_32.option_gate_error(Maturity::Beta, o).unwrap(),
            "Topology Manager Policy Beta-level Options not enabled, but option \"max-allowable-numa-nodes\" provided"
        );
        assert_eq!(
            KubeletVersion::V1_38.option_gate_error(Maturity::Alpha, "Some-Option").unwrap(),
            "topology manager policy alpha-level options not enabled, but option \"Some-Option\" provided"
        );
        assert_eq!(
            KubeletVersion::V1_38.option_gate_error(Maturity::Stable, o),
            None
        );
    }

    #[test]
    fn gates_have_the_defaults_of_their_release() {
        let g = FeatureGates::defaults(KubeletVersion::V1_38);
        assert!(g.pod_level_resources());
        assert!(!g.pod_level_resource_managers() && !g.manages_pod_level());
        assert!(!g.in_place_exclusive_memory());
        assert!(g.enabled(TOPOLOGY_BETA_OPTIONS) && !g.enabled(TOPOLOGY_ALPHA_OPTIONS));
        let on: BTreeMap<String, bool> = [(POD_LEVEL_RESOURCE_MANAGERS.to_string(), true)].into();
        let g = FeatureGates::parse(&on, KubeletVersion::V1_38).unwrap();
        assert!(g.manages_pod_level());
        // 1.32: only the option gates; 1.26: none.
        assert_eq!(
            FeatureGates::names(KubeletVersion::V1_32),
            vec![TOPOLOGY_ALPHA_OPTIONS, TOPOLOGY_BETA_OPTIONS]
        );
        assert!(FeatureGates::names(KubeletVersion::V1_26).is_empty());
        let e = FeatureGates::parse(&on, KubeletVersion::V1_32).unwrap_err();
        assert_eq!(
            e.message(),
            "unrecognized feature gate: PodLevelResourceManagers (pymm models it for kubelet 1.38, not 1.32)"
        );
        let typo: BTreeMap<String, bool> = [("PodLevelResourceManager".to_string(), true)].into();
        match FeatureGates::parse(&typo, KubeletVersion::V1_38).unwrap_err() {
            EngineError::Config { suggestion, .. } => {
                assert_eq!(suggestion.as_deref(), Some(POD_LEVEL_RESOURCE_MANAGERS))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_flag_is_the_kubelets() {
        let m = parse_feature_gates_flag(&[
            "PodLevelResourceManagers=true, InPlacePodVerticalScalingExclusiveMemory=t".into(),
            "PodLevelResourceManagers=false".into(),
        ])
        .unwrap();
        assert_eq!(
            m,
            [
                (IN_PLACE_EXCLUSIVE_MEMORY.to_string(), true),
                (POD_LEVEL_RESOURCE_MANAGERS.to_string(), false)
            ]
            .into()
        );
        assert!(parse_feature_gates_flag(&["A".into()])
            .unwrap_err()
            .message()
            .contains("missing bool value for A"));
        assert!(parse_feature_gates_flag(&["A=yes".into()])
            .unwrap_err()
            .message()
            .contains("invalid value of A=yes"));
    }
}
