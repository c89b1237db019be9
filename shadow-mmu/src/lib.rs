//! The shadow-stage-2 cache service (see ../shared/DESIGN.md, paths 1-3).
#![no_std]
extern crate alloc;
pub mod compose;
pub mod rmap;
pub mod shadow_table;
