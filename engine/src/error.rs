//! The one error type of the engine. The Python boundary maps each variant onto one class of
//! `pymm/errors.py`; messages keep the kubelet's wording (typos included) so operators can
//! search for them.

use thiserror::Error;

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EngineError {
    /// A Kubernetes quantity that does not parse or does not fit.
    #[error("{0}")]
    Quantity(String),
    /// `--reserved-memory` syntax, KubeletConfiguration validation, node-allocatable mismatch.
    #[error("{0}")]
    ReservedMemory(String),
    /// Manager configuration: policy names, scope, options, NUMA node limits.
    #[error("{0}")]
    Config(String),
    /// An invalid machine description.
    #[error("{0}")]
    Machine(String),
    /// An invalid pod.
    #[error("{0}")]
    Pod(String),
    /// A memory-manager Allocate failure (kubelet `[memorymanager] ...` texts).
    #[error("{0}")]
    Allocation(String),
    /// The state file does not decode or its checksum is wrong.
    #[error("{0}")]
    CorruptCheckpoint(String),
    /// A restored state that the kubelet's startup validation rejects: the kubelet's text,
    /// then what differs, one line each (empty where the kubelet's text says it all).
    #[error("{0}")]
    StateMismatch(String, Vec<String>),
}

impl EngineError {
    pub fn message(&self) -> &str {
        match self {
            EngineError::Quantity(m)
            | EngineError::ReservedMemory(m)
            | EngineError::Config(m)
            | EngineError::Machine(m)
            | EngineError::Pod(m)
            | EngineError::Allocation(m)
            | EngineError::CorruptCheckpoint(m)
            | EngineError::StateMismatch(m, _) => m,
        }
    }

    /// A state mismatch with nothing to add to its message.
    pub fn mismatch(message: impl Into<String>) -> EngineError {
        EngineError::StateMismatch(message.into(), Vec::new())
    }
}
