//! loom model of a synchronous invalidation through the real client,
//! endpoint, rings and host doorbells: the vCPU's `invalidate` returns only
//! after the service applied it, and everything the service did before
//! acknowledging is visible to the vCPU afterwards (the ack is the DSB).
#![cfg(loom)]

use ipc::{
    Doorbell, Endpoint, HostDoorbell, InvalidateAck, InvalidateRequest, Reply, Request, RingBuffer,
    Shareability, Tlbi, TlbiOp, VcpuClient, VcpuId,
};
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;

struct Shared {
    requests: RingBuffer<2>,
    replies: RingBuffer<2>,
    service_bell: HostDoorbell,
    reply_bell: HostDoorbell,
    /// Written by the service with Relaxed: only the ring protocol orders it.
    applied: AtomicBool,
}

#[test]
fn invalidate_returns_after_the_service_applied_it() {
    loom::model(|| {
        let shared = Arc::new(Shared {
            requests: RingBuffer::new(),
            replies: RingBuffer::new(),
            service_bell: HostDoorbell::new(0),
            reply_bell: HostDoorbell::new(0),
            applied: AtomicBool::new(false),
        });
        let service_side = shared.clone();
        let service = thread::spawn(move || {
            let s = &*service_side;
            let mut endpoint = Endpoint::new(
                VcpuId(0),
                s.requests.ring(),
                s.replies.ring(),
                &s.reply_bell,
            )
            .unwrap();
            s.service_bell.wait_until(|| endpoint.has_request());
            let served = endpoint.serve(2, &mut |envelope| {
                assert!(matches!(envelope.message, Request::Invalidate(_)));
                s.applied.store(true, Ordering::Relaxed);
                Reply::InvalidateAck(InvalidateAck { entries_dropped: 1 })
            });
            assert_eq!(served, 1);
        });
        let s = &*shared;
        let mut client = VcpuClient::new(
            VcpuId(0),
            s.requests.ring(),
            s.replies.ring(),
            &s.service_bell,
            &s.reply_bell,
        )
        .unwrap();
        let tlbi = Tlbi {
            op: TlbiOp::Vmalls12e1,
            shareability: Shareability::InnerShareable,
            nxs: false,
        };
        let request = InvalidateRequest::new(3 << 48, 0, ipc::VmidWidth::Bits8, tlbi, 0).unwrap();
        let ack = client.invalidate(request).unwrap();
        assert_eq!(ack.entries_dropped, 1);
        assert!(
            s.applied.load(Ordering::Relaxed),
            "acknowledged before applied"
        );
        drop(client);
        service.join().unwrap();
    });
}
