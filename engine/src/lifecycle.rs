//! # What happens to a pod, defined once
//!
//! Every driver of the engine (the Python API, the CLI, scenario replay, the simulator, the
//! agent) expresses what happened to a pod as an [`Op`] and hands it to [`Manager::apply`].
//! None of them decides what an operation means: that is written here, once.
//!
//! | operation | the kubelet's | what it does | unknown pod or container |
//! |---|---|---|---|
//! | [`Op::Admit`] | Topology Manager `Admit`, then `Allocate` on every container | hints, merge, policy verdict, allocation; an admitted pod becomes active. A rejected pod's partial allocations stay until the next admission removes them as stale. With `start`, then [`Op::Start`] | - |
//! | [`Op::AdmitOn`] | (none: pymm's, for the batch and defragmentation planners) | the pod on the nodes given per container, each set refused unless the kubelet could have reached it (the memory manager's rules now; under `restricted` and `single-numa-node` a merge that ends preferred on it); an admitted pod becomes active. A refused set is an error and changes nothing. With `start`, then [`Op::Start`] | - |
//! | [`Op::Start`] | `AddContainer`, each container in order | the containers start; each one that starts releases the regular init containers before it | `NotFound` error |
//! | [`Op::Stop`] | `RemoveContainer` | a started container stops and its memory is released | nothing, not an error: a container that never started (or is unknown) releases nothing |
//! | [`Op::StopPod`] | `RemoveContainer` for each container, pod no longer active | as `Stop` for each container | nothing, not an error; memory of containers that never started stays until the next admission removes it as stale |
//! | [`Op::Release`] | (none: pymm's, for an operator) | gives the memory back now, started or not; without a container, the whole pod, which is no longer active | `NotFound` error, unless `missing_ok` |
//! | [`Op::Restart`] | kubelet restart: `NewManager` + `Start` from the state file | a new manager restored from the state file (possibly with another machine or reservation), validated as the kubelet validates it; running containers stay known | - |
//! | [`Op::Resize`] | the allocation manager's `canResizePod`, then the managers with the resize operation (1.38) | the pod as desired replaces the pod as allocated when the resize is admitted. The kubelet's answer: `Infeasible` ("Resize is infeasible for Guaranteed Pods alongside Memory Manager policy \"Static\"") for a memory resize of a Guaranteed pod unless `InPlacePodVerticalScalingExclusiveMemory`; otherwise admitted, and the Static policy re-pins and resizes nothing. With pymm's `resize-in-place`, each changed container's reservation grows or shrinks where it is, or its group extends to unused nodes, all or nothing, or `Deferred`/`Infeasible` with the reason. A change the API server refuses (not cpu or memory, another QoS class) is an error and changes nothing | `NotFound` error |
//!
//! The scenario format of the conformance sets maps onto these as the kubelet's harness does:
//! `admit` is `Admit`, `remove` is `Stop`, `removePod` is `StopPod`, `restart` is `Restart`,
//! and pymm's own `resize` is `Resize` ([`crate::scenario`]).

use crate::config::Config;
use crate::error::Result;
use crate::machine::Machine;
use crate::manager::{AdmitResult, Manager, ResizeResult};
use crate::provider::providers_from;
use crate::request::Pod;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// One thing that happens to a pod (see the module's table).
#[derive(Debug, Clone)]
pub enum Op {
    Admit {
        pod: Arc<Pod>,
        /// Other hint providers' answers (`[{"name", "containers", "pod"}]`, node ids), decoded
        /// against the machine the operation meets.
        hints: Option<Value>,
        start: bool,
        /// Record every hint call and Allocate (replay, debugging).
        trace: bool,
    },
    /// Admission on given nodes ([`Manager::admit_on`]).
    AdmitOn {
        pod: Arc<Pod>,
        /// Container -> NUMA node ids.
        targets: BTreeMap<String, Vec<i64>>,
        hints: Option<Value>,
        start: bool,
    },
    Start {
        pod_uid: String,
    },
    Stop {
        pod_uid: String,
        container: String,
    },
    StopPod {
        pod_uid: String,
    },
    Release {
        pod_uid: String,
        container: Option<String>,
        missing_ok: bool,
    },
    Restart(Box<Restart>),
    /// An in-place resize: `pod` is the pod as desired, the uid of an admitted pod.
    Resize {
        pod: Arc<Pod>,
    },
}

/// A restart: the state file's text, and what changed since the last start.
#[derive(Debug, Clone)]
pub struct Restart {
    pub checkpoint: String,
    /// Where the text was read from, for error messages.
    pub state_path: String,
    pub machine: Option<Machine>,
    pub config: Option<Config>,
}

/// What an operation did.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The verdict, admitted or not.
    Admission(Box<AdmitResult>),
    Started,
    /// Whether any memory or container was released.
    Stopped {
        released: bool,
    },
    Released {
        released: bool,
    },
    Restarted,
    Resized(Box<ResizeResult>),
}

impl Op {
    /// The operation's name in the scenario format's vocabulary, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Admit { .. } => "admit",
            Op::AdmitOn { .. } => "admit on",
            Op::Start { .. } => "start",
            Op::Stop { .. } => "stop",
            Op::StopPod { .. } => "stop pod",
            Op::Release { .. } => "release",
            Op::Restart(_) => "restart",
            Op::Resize { .. } => "resize",
        }
    }

    pub fn pod_uid(&self) -> Option<&str> {
        match self {
            Op::Admit { pod, .. } | Op::AdmitOn { pod, .. } | Op::Resize { pod } => Some(&pod.uid),
            Op::Start { pod_uid }
            | Op::Stop { pod_uid, .. }
            | Op::StopPod { pod_uid }
            | Op::Release { pod_uid, .. } => Some(pod_uid),
            Op::Restart(_) => None,
        }
    }
}

impl Outcome {
    /// The admission's verdict, for an [`Op::Admit`].
    pub fn admission(&self) -> Option<&AdmitResult> {
        match self {
            Outcome::Admission(a) => Some(a),
            _ => None,
        }
    }

    /// The resize's verdict, for an [`Op::Resize`].
    pub fn resize(&self) -> Option<&ResizeResult> {
        match self {
            Outcome::Resized(r) => Some(r),
            _ => None,
        }
    }

    pub fn into_admission(self) -> Option<AdmitResult> {
        match self {
            Outcome::Admission(a) => Some(*a),
            _ => None,
        }
    }
}

impl Manager {
    /// Applies one operation (see the module's table). An operation that returns an error
    /// changed nothing, except a failed [`Op::Start`] of a pod that is not admitted (nothing to
    /// change) and a failed [`Op::Restart`] (the manager is kept as it was).
    pub fn apply(&mut self, op: &Op) -> Result<Outcome> {
        match op {
            Op::Admit {
                pod,
                hints,
                start,
                trace,
            } => {
                let extra = match hints {
                    Some(h) if !h.is_null() => providers_from(h, self.id_map())?,
                    _ => Vec::new(),
                };
                let mut r = self.admit_shared(pod, &extra, *trace);
                r.placements = self.placements_of(pod);
                if r.admit && *start {
                    self.start_pod(&pod.uid)?;
                }
                Ok(Outcome::Admission(Box::new(r)))
            }
            Op::AdmitOn {
                pod,
                targets,
                hints,
                start,
            } => {
                let extra = match hints {
                    Some(h) if !h.is_null() => providers_from(h, self.id_map())?,
                    _ => Vec::new(),
                };
                let mut r = self.admit_on(pod, targets, &extra)?;
                r.placements = self.placements_of(pod);
                if *start {
                    self.start_pod(&pod.uid)?;
                }
                Ok(Outcome::Admission(Box::new(r)))
            }
            Op::Start { pod_uid } => {
                self.start_pod(pod_uid)?;
                Ok(Outcome::Started)
            }
            Op::Stop { pod_uid, container } => Ok(Outcome::Stopped {
                released: self.stop(pod_uid, container),
            }),
            Op::StopPod { pod_uid } => Ok(Outcome::Stopped {
                released: self.stop_pod(pod_uid),
            }),
            Op::Release {
                pod_uid,
                container,
                missing_ok,
            } => Ok(Outcome::Released {
                released: self.release(pod_uid, container.as_deref(), *missing_ok)?,
            }),
            Op::Restart(r) => {
                self.restart(
                    r.machine.clone(),
                    r.config.clone(),
                    &r.checkpoint,
                    &r.state_path,
                )?;
                Ok(Outcome::Restarted)
            }
            Op::Resize { pod } => Ok(Outcome::Resized(Box::new(self.resize(pod)?))),
        }
    }

    /// Applies operations in order, all or nothing: when one fails, the manager is put back
    /// as it was before the first, and that operation's error is returned.
    pub fn apply_all(&mut self, ops: &[Op]) -> Result<Vec<Outcome>> {
        let before = self.snapshot();
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            match self.apply(op) {
                Ok(o) => out.push(o),
                Err(e) => {
                    self.rollback(before);
                    return Err(e);
                }
            }
        }
        Ok(out)
    }
}
