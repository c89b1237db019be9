//! loom model of a synchronous invalidation through the real client,
//! endpoint, rings and host doorbells: the vCPU's `invalidate` returns only
//! after the service applied it, and everything the service did before
//! acknowledging is visible to the vCPU afterwards (the ack is the DSB).
#![cfg(loom)]

use ipc::{Doorbell, InvalidateAck, Reply, Request};
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;
use loom_tests::ipc_channel::{invalidate_vmid3, VcpuChannel};

struct Shared {
    channel: VcpuChannel,
    /// Written by the service with Relaxed: only the ring protocol orders it.
    applied: AtomicBool,
}

#[test]
fn invalidate_returns_after_the_service_applied_it() {
    loom::model(|| {
        let shared = Arc::new(Shared {
            channel: VcpuChannel::default(),
            applied: AtomicBool::new(false),
        });
        let service_side = shared.clone();
        let service = thread::spawn(move || {
            let s = &*service_side;
            let mut endpoint = s.channel.endpoint();
            s.channel.service_bell.wait_until(|| endpoint.has_request());
            let served = endpoint.serve(2, &mut |envelope| {
                assert!(matches!(envelope.message, Request::Invalidate(_)));
                s.applied.store(true, Ordering::Relaxed);
                Reply::InvalidateAck(InvalidateAck { entries_dropped: 1 })
            });
            assert_eq!(served, 1);
        });
        let s = &*shared;
        let mut client = s.channel.client();
        let ack = client.invalidate(invalidate_vmid3()).unwrap();
        assert_eq!(ack.entries_dropped, 1);
        assert!(
            s.applied.load(Ordering::Relaxed),
            "acknowledged before applied"
        );
        drop(client);
        service.join().unwrap();
    });
}
