//! The one error type of the engine. The Python boundary maps each variant onto one class of
//! `pymm/errors.py` and hands over its fields as attributes, so a caller (and `advice_for`)
//! dispatches on type and data, never on text. Messages keep the kubelet's wording (typos
//! included) so operators can search for them.

use thiserror::Error;

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// What kind of start-up mismatch a restored state has: each asks for a different fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MismatchKind {
    /// The file's machine state differs from what its assignments imply on this machine.
    MachineState,
    /// An assignment names a NUMA node this machine lacks.
    UnknownNode,
    /// An assignment names a memory resource (hugepage size) this machine lacks.
    UnknownResource,
    /// Assignments without a machine state.
    EmptyMachineState,
    /// Rebuilt assignments do not fit the machine.
    Unfit,
}

impl MismatchKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MismatchKind::MachineState => "machine-state",
            MismatchKind::UnknownNode => "unknown-node",
            MismatchKind::UnknownResource => "unknown-resource",
            MismatchKind::EmptyMachineState => "empty-machine-state",
            MismatchKind::Unfit => "unfit",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EngineError {
    /// A Kubernetes quantity that does not parse or does not fit.
    #[error("{0}")]
    Quantity(String),
    /// `--reserved-memory` syntax, KubeletConfiguration validation, node-allocatable mismatch,
    /// a reservation larger than its node.
    #[error("{message}")]
    ReservedMemory { message: String, node: Option<i64> },
    /// Manager configuration: policy names, scope, options, unknown keys.
    #[error("{message}")]
    Config {
        message: String,
        /// The offending key or option, where there is one.
        key: Option<String>,
        /// The closest known key, for a misspelt one.
        suggestion: Option<String>,
    },
    /// An invalid machine description.
    #[error("{message}")]
    Machine { message: String, node: Option<i64> },
    /// An invalid pod.
    #[error("{message}")]
    Pod {
        message: String,
        /// The field path (`spec.containers[0].resources.limits.memory`).
        field: Option<String>,
    },
    /// A malformed scenario file (the replay format): which scenario, operation and field.
    #[error("{message}")]
    Scenario {
        message: String,
        /// `ops[3].pod.containers[0].name`, where there is one.
        path: Option<String>,
    },
    /// A memory-manager Allocate failure (kubelet `[memorymanager] ...` texts).
    #[error("{0}")]
    Allocation(String),
    /// A pod whose pod-level budget leaves no shared pool for the containers that need one
    /// (the kubelet's `EmptyPodSharedPoolError`, an admission reason of its own).
    #[error("{0}")]
    EmptyPodSharedPool(String),
    /// A placement given to the engine (a plan's, a defragmentation move's) that its rules
    /// refuse: which pod, which container (none for a pod-scope placement), which nodes.
    #[error("{message}")]
    Placement {
        message: String,
        pod: String,
        container: Option<String>,
        nodes: Vec<i64>,
    },
    /// A pod or container that the manager does not know.
    #[error("{message}")]
    NotFound {
        message: String,
        pod: String,
        container: Option<String>,
    },
    /// The state file does not decode, or a checksum is wrong (then both checksums are set,
    /// and which field: `checksum`, or a V3 file's `dataChecksum`).
    #[error("{message}")]
    CorruptCheckpoint {
        message: String,
        stored: Option<u64>,
        computed: Option<u64>,
        checksum_field: Option<&'static str>,
    },
    /// The state file was written by another memory-manager policy.
    #[error("{message}")]
    PolicyMismatch {
        message: String,
        configured: String,
        stored: String,
    },
    /// A restored state that the kubelet's startup validation rejects: the kubelet's text,
    /// then what differs, one line each (empty where the kubelet's text says it all), and the
    /// least drift tolerance that would keep the reservations, where one would.
    #[error("{message}")]
    StateMismatch {
        message: String,
        kind: MismatchKind,
        details: Vec<String>,
        least_drift: Option<u64>,
    },
}

impl EngineError {
    pub fn message(&self) -> &str {
        match self {
            EngineError::Quantity(m)
            | EngineError::Allocation(m)
            | EngineError::EmptyPodSharedPool(m) => m,
            EngineError::ReservedMemory { message, .. }
            | EngineError::Config { message, .. }
            | EngineError::Machine { message, .. }
            | EngineError::Pod { message, .. }
            | EngineError::Scenario { message, .. }
            | EngineError::NotFound { message, .. }
            | EngineError::Placement { message, .. }
            | EngineError::CorruptCheckpoint { message, .. }
            | EngineError::PolicyMismatch { message, .. }
            | EngineError::StateMismatch { message, .. } => message,
        }
    }

    /// The same error with another message (the kubelet wraps restore errors in a sentence).
    pub fn with_message(mut self, text: String) -> EngineError {
        match &mut self {
            EngineError::Quantity(m)
            | EngineError::Allocation(m)
            | EngineError::EmptyPodSharedPool(m) => *m = text,
            EngineError::ReservedMemory { message, .. }
            | EngineError::Config { message, .. }
            | EngineError::Machine { message, .. }
            | EngineError::Pod { message, .. }
            | EngineError::Scenario { message, .. }
            | EngineError::NotFound { message, .. }
            | EngineError::Placement { message, .. }
            | EngineError::CorruptCheckpoint { message, .. }
            | EngineError::PolicyMismatch { message, .. }
            | EngineError::StateMismatch { message, .. } => *message = text,
        }
        self
    }

    pub fn config(message: impl Into<String>) -> EngineError {
        EngineError::Config {
            message: message.into(),
            key: None,
            suggestion: None,
        }
    }

    /// An unknown key or option name, with the closest of `known` when one is close enough.
    pub fn unknown_key(what: &str, key: &str, known: &[&str]) -> EngineError {
        let suggestion = closest(key, known);
        let hint = match &suggestion {
            Some(s) => format!(" (did you mean {s:?}?)"),
            None => format!(" (known: {})", known.join(", ")),
        };
        EngineError::Config {
            message: format!("unknown {what} {key:?}{hint}"),
            key: Some(key.to_string()),
            suggestion,
        }
    }

    pub fn reserved(message: impl Into<String>) -> EngineError {
        EngineError::ReservedMemory {
            message: message.into(),
            node: None,
        }
    }

    pub fn machine(node: Option<i64>, message: impl Into<String>) -> EngineError {
        EngineError::Machine {
            message: message.into(),
            node,
        }
    }

    pub fn pod(field: Option<&str>, message: impl Into<String>) -> EngineError {
        let message = message.into();
        EngineError::Pod {
            message: match field {
                Some(f) if !f.is_empty() => format!("{f}: {message}"),
                _ => message,
            },
            field: field.map(str::to_string),
        }
    }

    pub fn scenario(path: Option<&str>, message: impl Into<String>) -> EngineError {
        let message = message.into();
        EngineError::Scenario {
            message: match path {
                Some(p) if !p.is_empty() => format!("{p}: {message}"),
                _ => message,
            },
            path: path.map(str::to_string),
        }
    }

    pub fn corrupt(message: impl Into<String>) -> EngineError {
        EngineError::CorruptCheckpoint {
            message: message.into(),
            stored: None,
            computed: None,
            checksum_field: None,
        }
    }

    pub fn mismatch(kind: MismatchKind, message: impl Into<String>) -> EngineError {
        EngineError::StateMismatch {
            message: message.into(),
            kind,
            details: Vec::new(),
            least_drift: None,
        }
    }
}

/// The entry of `known` nearest to `key` by edit distance, if it is plausibly a misspelling.
pub fn closest(key: &str, known: &[&str]) -> Option<String> {
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(key, k), *k))
        .filter(|(d, k)| *d <= (k.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_misspelt_key_names_the_closest_known_one() {
        let e = EngineError::unknown_key(
            "configuration key",
            "topology_polcy",
            &["topology_policy", "scope"],
        );
        match e {
            EngineError::Config {
                key, suggestion, ..
            } => {
                assert_eq!(key.as_deref(), Some("topology_polcy"));
                assert_eq!(suggestion.as_deref(), Some("topology_policy"));
            }
            other => panic!("{other:?}"),
        }
        let far = EngineError::unknown_key("option", "zzz", &["topology_policy"]);
        assert!(far.message().contains("known: topology_policy"));
    }
}
