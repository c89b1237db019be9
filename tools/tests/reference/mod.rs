//! The reference side of `reference_model.rs`: an independent model of the
//! Arm ARM stage-2 translation (`model`), the generator of random worlds
//! (`gen`) and the driver of the real `s2walk batch` (`run`).

pub mod gen;
pub mod model;
pub mod run;
