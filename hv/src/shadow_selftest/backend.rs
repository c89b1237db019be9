//! Where the service's shadow tables live under hv: frames from hv's heap
//! at their real PAs, and TLB maintenance for each shadow VMID.

use alloc::sync::Arc;
use core::fmt;

use shadow_mmu::compose::HostExecute;
use shadow_mmu::service::ShadowBackend;
use shadow_mmu::shadow_table::{
    FramePool, HeapFramePool, PoolError, ShadowConfig, ShadowTable, TlbMaintenance,
};

/// Makes the [`TlbMaintenance`] of one shadow VMID.
pub trait VmidTlbs: Sync {
    /// The maintenance for one VMID.
    type Tlb: TlbMaintenance + Send + 'static;
    /// The maintenance for shadow VMID `vmid`.
    fn for_vmid(&self, vmid: u16) -> Self::Tlb;
}

/// The service's backend: one shared frame pool, per-VMID TLB maintenance.
pub struct SelftestBackend<P, T> {
    pool: Arc<P>,
    tlbs: T,
    config: ShadowConfig,
}

impl<P: FramePool, T> fmt::Debug for SelftestBackend<P, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SelftestBackend")
            .field("frames_in_use", &self.pool.frames_in_use())
            .field("config", &self.config)
            .finish()
    }
}

impl<P: FramePool, T: VmidTlbs> SelftestBackend<P, T> {
    /// Shadows with frames from `pool`, TLB maintenance from `tlbs`,
    /// descriptors for a host with `config`.
    pub fn new(pool: P, tlbs: T, config: ShadowConfig) -> Self {
        SelftestBackend {
            pool: Arc::new(pool),
            tlbs,
            config,
        }
    }

    /// The frame pool.
    pub fn pool(&self) -> &P {
        &self.pool
    }
}

impl<P, T> ShadowBackend for SelftestBackend<P, T>
where
    P: FramePool + Send + 'static,
    T: VmidTlbs,
{
    type Shadow = ShadowTable<Arc<P>, T::Tlb>;
    fn create(&self, shadow_vmid: u16) -> Option<Self::Shadow> {
        ShadowTable::new(
            self.pool.clone(),
            self.tlbs.for_vmid(shadow_vmid),
            self.config,
        )
        .ok()
    }
    fn frames_in_use(&self) -> usize {
        self.pool.frames_in_use()
    }
    fn host_execute(&self) -> HostExecute {
        HostExecute::from_xnx(self.config.xnx)
    }
    fn input_bits(&self) -> u32 {
        self.config.input_bits()
    }
}

/// Why the shadow frames could not be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FramesError {
    /// The pool refused the allocation.
    Pool(PoolError),
    /// hv's stage 1 does not map a frame at a PA equal to its address.
    NotIdentity {
        /// The frame's address.
        va: u64,
        /// What hv's stage 1 translates it to (None: not mapped).
        pa: Option<u64>,
    },
}

impl fmt::Display for FramesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FramesError::Pool(e) => write!(f, "shadow frame pool: {e:?}"),
            FramesError::NotIdentity { va, pa: Some(pa) } => write!(
                f,
                "shadow frame at {va:#x} has PA {pa:#x}: hv's stage 1 is not the identity map the pool assumes"
            ),
            FramesError::NotIdentity { va, pa: None } => {
                write!(f, "shadow frame at {va:#x} is not mapped by hv's stage 1")
            }
        }
    }
}

/// `frames` shadow table frames from the heap, whose PAs (what the
/// descriptors and VTTBR_EL2 hold, what the hardware walks) are their
/// addresses. hv runs on an identity-mapped stage 1 (`arch::enable_stage1`),
/// so an address of its heap is its PA; `stage1_pa` (hv: an `AT S1E2R` of
/// the address) checks that for every frame rather than assuming it.
pub fn identity_frames(
    frames: usize,
    stage1_pa: impl Fn(u64) -> Option<u64>,
) -> Result<HeapFramePool, FramesError> {
    let pool = HeapFramePool::identity(frames).map_err(FramesError::Pool)?;
    for index in 0..frames as u64 {
        let va = pool.base_pa() + index * 4096;
        match stage1_pa(va) {
            Some(pa) if pa == va => {}
            pa => return Err(FramesError::NotIdentity { va, pa }),
        }
    }
    Ok(pool)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_must_be_identity_mapped() {
        let pool = identity_frames(4, Some).unwrap();
        assert_eq!(pool.budget(), 4);
        let first = pool.base_pa();
        assert!(pool.frame(first + 3 * 4096).is_some());
        let err = identity_frames(4, |va| Some(va + 0x1000)).unwrap_err();
        assert!(matches!(err, FramesError::NotIdentity { pa: Some(_), .. }));
        let err = identity_frames(2, |_| None).unwrap_err();
        assert!(matches!(err, FramesError::NotIdentity { pa: None, .. }));
    }
}
