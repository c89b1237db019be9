//! The set-up the ipc loom models (`ipc_channel`, `ipc_poller`) share: vCPU
//! 0's request and reply rings with their two host doorbells, its client
//! and the service's endpoint on them, and the request the models send.

use ipc::{
    Endpoint, HostDoorbell, InvalidateRequest, RingBuffer, Shareability, Tlbi, TlbiOp, VcpuClient,
    VcpuId, VmidWidth,
};

/// vCPU 0's channel to the service: two-slot rings (loom explores a full
/// ring quickly), the service's doorbell (the vCPU rings it after sending)
/// and the reply doorbell (the service rings it after answering), both with
/// spin limit 0 (a waiter sleeps without polling first: fewer steps for
/// loom to explore).
#[derive(Debug)]
pub struct VcpuChannel {
    pub requests: RingBuffer<2>,
    pub replies: RingBuffer<2>,
    pub service_bell: HostDoorbell,
    pub reply_bell: HostDoorbell,
}

impl Default for VcpuChannel {
    fn default() -> Self {
        VcpuChannel {
            requests: RingBuffer::new(),
            replies: RingBuffer::new(),
            service_bell: HostDoorbell::new(0),
            reply_bell: HostDoorbell::new(0),
        }
    }
}

impl VcpuChannel {
    /// The vCPU's side: its client (claims the request producer and the
    /// reply consumer, so at most once per channel).
    pub fn client(&self) -> VcpuClient<'_, HostDoorbell> {
        VcpuClient::new(
            VcpuId(0),
            self.requests.ring(),
            self.replies.ring(),
            &self.service_bell,
            &self.reply_bell,
        )
        .expect("the channel's client is claimed once")
    }

    /// The service's side: vCPU 0's endpoint (claims the request consumer
    /// and the reply producer, so at most once per channel).
    pub fn endpoint(&self) -> Endpoint<'_, HostDoorbell> {
        Endpoint::new(
            VcpuId(0),
            self.requests.ring(),
            self.replies.ring(),
            &self.reply_bell,
        )
        .expect("the channel's endpoint is claimed once")
    }
}

/// TLBI VMALLS12E1IS for L1's VMID 3 (8-bit VMIDs): the invalidation the
/// models send.
pub fn invalidate_vmid3() -> InvalidateRequest {
    let tlbi = Tlbi {
        op: TlbiOp::Vmalls12e1,
        shareability: Shareability::InnerShareable,
        nxs: false,
    };
    InvalidateRequest::new(3 << 48, 0, VmidWidth::Bits8, tlbi, 0)
        .expect("a VMALLS12E1IS of VMID 3 is a valid request")
}
