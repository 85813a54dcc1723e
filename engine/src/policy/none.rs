//! The `None` policy: no hints, no reservations; the state file still exists.

use super::MemoryPolicy;
use crate::error::Result;
use crate::hints::{Extent, ProviderHints, TopologyHint};
use crate::request::Pod;
use crate::state::{Block, State};

#[derive(Debug, Default, Clone)]
pub struct NonePolicy;

impl MemoryPolicy for NonePolicy {
    fn name(&self) -> &'static str {
        "None"
    }
    fn clone_box(&self) -> Box<dyn MemoryPolicy> {
        Box::new(NonePolicy)
    }
    fn start(&mut self, _state: &mut State) -> Result<()> {
        Ok(())
    }
    fn container_hints(&self, _: &State, _: &Pod, _: &str, _: Extent) -> Result<ProviderHints> {
        Ok(None)
    }
    fn pod_hints(&self, _: &State, _: &Pod, _: Extent) -> Result<ProviderHints> {
        Ok(None)
    }
    fn allocate(&mut self, _: &mut State, _: &Pod, _: &str, _: TopologyHint) -> Result<()> {
        Ok(())
    }
    fn remove_container(&mut self, _: &mut State, _: &str, _: &str) {}
    fn allocatable_memory(&self, _: &State) -> Vec<Block> {
        Vec::new()
    }
}
