//! # pymm engine
//!
//! A NUMA-aware memory manager with the kubelet's exact semantics where they matter.
//!
//! **Nodes and masks.** A machine has NUMA nodes, each with `memory` and hugepage pools. A set
//! of nodes is a [`nodemask::NodeMask`], one 128-bit word: bit *i* is the machine's *i*-th node
//! in id order ([`nodemask::IdMap`]). On ids `0..n` that is the kubelet's bitmask exactly; with
//! sparse ids up to 1023 the mapping is monotone, so the order of masks ("narrower" = fewer
//! nodes, then lower value; the lexicographic walk) is still the kubelet's.
//!
//! **State.** Per node and resource the engine keeps total, system-reserved, allocatable,
//! reserved and free bytes (`reserved + free == allocatable`), the number of blocks placed on
//! the node, and its *group* (`cells`): the set of nodes a multi-node allocation spans. A node
//! serves either single-node allocations or exactly one group. Containers own *blocks*: one
//! per requested resource, all with the same affinity.
//!
//! **Hints.** For a request, the memory manager lists every node set that could hold it
//! (capacity, group rules, free memory), preferred when it has the minimal size that could
//! hold it on an empty machine ([`hints`]).
//!
//! **Merge.** The topology manager combines every provider's lists into one hint and a verdict
//! per policy ([`topology`]). The kubelet walks the cartesian product of the lists; the engine
//! computes the same minimum from the set of masks the product can produce, which removes the
//! blow-up on machines with many nodes.
//!
//! **Allocation** follows the merged hint, extends it when free memory is short, fills nodes
//! greedily in id order, and lets app containers reuse init-container memory ([`policy`]).
//!
//! **Persistence.** The state file is the kubelet's `memory_manager_state`: JSON in Go's
//! layout and an FNV-1a checksum over go-spew's rendering ([`checkpoint`]). File I/O (atomic
//! writes, locking) is the Python package's job; the engine produces and checks the bytes.

pub mod checkpoint;
pub mod checkpoint_reader;
pub mod config;
pub mod decode;
pub mod error;
pub mod fragmentation;
pub mod hints;
pub mod inspect;
pub mod lifecycle;
pub mod machine;
pub mod manager;
pub mod memkind;
pub mod nodemask;
pub mod placement;
pub mod policy;
pub mod provider;
pub mod quantity;
pub mod request;
pub mod reserved;
pub mod scenario;
pub mod simulate;
pub mod state;
pub mod topology;
pub mod version;

#[cfg(feature = "python")]
mod py;

pub use error::{EngineError, Result};

/// The engine's version, the project's one version number.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
