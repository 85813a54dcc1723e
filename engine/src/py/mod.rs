//! The Python boundary: the only code that names PyO3. One small file per type; each method
//! converts its arguments, calls the core once, and converts back. Errors map once
//! ([`errors`]), Python objects become plain data once ([`convert`]).

pub(crate) mod checkpoint;
mod config;
mod convert;
mod errors;
mod lifecycle;
mod machine;
mod manager;
mod memkind;
mod merge;
mod plan;
mod pod;
mod quantity;
mod scenario;
mod simulate;
mod text;

use pyo3::prelude::*;

// An admission allocates and frees many small strings and maps; mimalloc serves them about
// twice as fast as the system allocator, which was a third of an admission's time.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[pymodule]
fn _engine(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", crate::VERSION)?;
    m.add("STATE_FILE_NAME", crate::checkpoint::STATE_FILE_NAME)?;
    m.add_class::<manager::PyEngine>()?;
    m.add_class::<manager::PyAdmitResult>()?;
    m.add_class::<manager::PySnapshot>()?;
    m.add_class::<lifecycle::PyOp>()?;
    m.add_class::<scenario::PyScenarios>()?;
    m.add_class::<scenario::PyReplayResults>()?;
    m.add_class::<scenario::PyReference>()?;
    m.add_class::<pod::PyPod>()?;
    m.add_class::<simulate::PySimulation>()?;
    m.add_class::<checkpoint::PyInspection>()?;
    m.add_function(wrap_pyfunction!(pod::pods_from_manifest, m)?)?;
    m.add_function(wrap_pyfunction!(pod::pods_from_json, m)?)?;
    m.add_function(wrap_pyfunction!(pod::check_unique_uids_of, m)?)?;
    m.add_function(wrap_pyfunction!(machine::decode_machine, m)?)?;
    m.add_function(wrap_pyfunction!(machine::hugepage_size_kib, m)?)?;
    m.add_function(wrap_pyfunction!(quantity::parse_quantity, m)?)?;
    m.add_function(wrap_pyfunction!(quantity::canonical_quantity, m)?)?;
    m.add_function(wrap_pyfunction!(quantity::parse_reserved_memory, m)?)?;
    m.add_function(wrap_pyfunction!(quantity::node_allocatable, m)?)?;
    m.add_function(wrap_pyfunction!(checkpoint::decode_checkpoint, m)?)?;
    m.add_function(wrap_pyfunction!(checkpoint::checkpoint_spew_text, m)?)?;
    m.add_function(wrap_pyfunction!(checkpoint::decode_cpu_checkpoint, m)?)?;
    m.add(
        "CPU_STATE_FILE_NAME",
        crate::cpu_checkpoint::CPU_STATE_FILE_NAME,
    )?;
    m.add_function(wrap_pyfunction!(merge::merge_hints, m)?)?;
    m.add_function(wrap_pyfunction!(memkind::classify_memory, m)?)?;
    m.add_function(wrap_pyfunction!(memkind::memory_kind_rule, m)?)?;
    m.add_function(wrap_pyfunction!(text::json_duplicate_key, m)?)?;
    m.add_function(wrap_pyfunction!(config::config_schema, m)?)?;
    m.add_function(wrap_pyfunction!(config::decode_config, m)?)?;
    m.add_function(wrap_pyfunction!(config::parse_size, m)?)?;
    m.add_function(wrap_pyfunction!(config::recorded_kubelet_version, m)?)?;
    m.add_function(wrap_pyfunction!(scenario::compare_results, m)?)?;
    m.add_function(wrap_pyfunction!(plan::plan_input, m)?)?;
    m.add_function(wrap_pyfunction!(plan::defrag_input, m)?)?;
    m.add_function(wrap_pyfunction!(plan::placements, m)?)?;
    Ok(())
}
