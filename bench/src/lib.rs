//! Baselines and fixtures shared by the criterion benchmarks in `benches/`.
#![forbid(unsafe_code)]
pub mod host_pages;
pub mod nested_fault;
pub mod shadow_baseline;
pub mod umbra;
pub mod walker_baseline;
