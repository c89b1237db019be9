//! The shadow-stage-2 cache service (see ../shared/DESIGN.md, paths 1-3).
//!
//! # API
//!
//! - [`service::Service::new`]`(`[`service::ServiceConfig`]`, l1_memory, l0_map, backend)`:
//!   one service per L1 guest. `l1_memory` is what the walker reads L1's
//!   tables through ([`walker::GuestMemory`]), `l0_map` L0's own mapping of
//!   L1 ([`compose::L0Map`]), `backend` where shadow tables get frames and
//!   hardware TLB maintenance ([`service::ShadowBackend`];
//!   [`service::HostBackend`] on the host).
//! - [`service::Service::worker`]: one [`service::Worker`] per thread (its
//!   epoch participant and its counters). [`service::Worker::burst`]: serve
//!   requests back to back under one epoch pin ([`service::Burst`]), so a
//!   request's own pin costs no barrier.
//! - [`service::Service::translate`]`(worker, key, l2_ipa, access, abort)` ->
//!   [`service::Translated`]: `Mapped` (the shadow entry installed), `Inject`
//!   (ESR/FAR/HPFAR from the walker), `Mmio` / `OutsideL1`, `Unshadowable`,
//!   or `Retry`. One documented deviation: DC IVAC at EL1 to a
//!   writable-clean DBM leaf of L1 (VTCR_EL2.HD) marks L1's entry dirty
//!   (see `Service::translate`), since the shadow cannot allow DC IVAC
//!   there without allowing stores.
//! - [`service::Service::invalidate`]`(worker, vmid, scope)` for every
//!   stage-2 TLBI form ([`ipc::tlbi::InvalidateScope`]);
//!   [`service::Service::l0_unmap`]`(worker, l1_ipa_range, change)`;
//!   [`service::Service::stats`].
//! - [`service::Service::answer`] (in [`adapter`]): an ipc request record in, a reply record
//!   out (hv and the bench harness drive the service over rings with it).
//! - [`service::Service::lookup`]: the lock-free cache lookup alone;
//!   [`service::Service::shadow_root`]: what hv installs as VTTBR_EL2.
//!
//! # Structure
//!
//! - [`context`]: contexts keyed by (VMID, VTTBR BADDR, VTCR walk fields,
//!   byte order) in a lock-free two-choice hash directory with a VMID
//!   index; bounded, recycled by a second-chance clock once every slot is
//!   taken; each
//!   owns a shadow VMID.
//! - [`cache`]: per context, leaf walk results at block granularity and
//!   intermediate table paths (partial walks), lock-free reads, hashed
//!   per-size block indexes for range invalidation, flush numbers for
//!   whole-VMID drops.
//! - [`service`]: the generation protocol that keeps racing walks from
//!   inserting stale results, composition ([`compose`]), shadow install
//!   ([`shadow_table`]), reverse map ([`rmap`]), eviction.
//! - [`budget`]: one byte budget split into bounded structures.
//! - `table` (private): the fixed-capacity epoch-managed hash table under
//!   the cache and the directory, and the block indexes; `flat` (private):
//!   the open-addressing map under the reverse map and the block indexes;
//!   `sync` (private): the loom/core shim; `prefetch` (private): the
//!   cache-line prefetch hint invalidations use.
#![no_std]
// Only `table` (crossbeam-epoch's dereference and deferred destruction)
// and `prefetch` (the prefetch instruction) opt back in, with a SAFETY
// comment at every use.
#![deny(unsafe_code)]
extern crate alloc;

pub mod adapter;
pub mod budget;
pub mod cache;
pub mod compose;
pub mod context;
mod flat;
mod prefetch;
pub mod rmap;
pub mod service;
pub mod shadow_table;
mod sync;
mod table;
