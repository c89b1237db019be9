//! The shadow-stage-2 cache service (see ../shared/DESIGN.md, paths 1-3).
#![no_std]
// Only `table` (crossbeam-epoch's dereference and deferred destruction)
// opts back in, with a SAFETY comment at every use.
#![deny(unsafe_code)]
extern crate alloc;

pub mod budget;
pub mod cache;
pub mod compose;
pub mod context;
pub mod rmap;
pub mod service;
pub mod shadow_table;
mod sync;
mod table;
