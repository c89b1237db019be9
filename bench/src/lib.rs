//! Baselines and fixtures shared by the criterion benchmarks in `benches/`.
#![forbid(unsafe_code)]
pub mod walker_baseline;
pub mod shadow_baseline;
