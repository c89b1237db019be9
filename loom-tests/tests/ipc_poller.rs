//! A loom model of the service loop as hv and the bench run it (from
//! review 32): `Poller::run` over an `Endpoint` with a `HostDoorbell` whose
//! readiness check is the sweep itself (side effects inside `wait_until`),
//! and its shutdown (`keep_running` false, then a ring). The `ipc_channel`
//! model drives `Endpoint::serve` by hand and never runs `Poller::run`.
//! Real code through the `sync.rs` shim.
#![cfg(loom)]

use ipc::{
    Doorbell, Endpoint, HostDoorbell, InvalidateAck, InvalidateRequest, Poller, Reply, Request,
    RingBuffer, Shareability, Tlbi, TlbiOp, VcpuClient, VcpuId,
};
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;

struct Shared {
    requests: RingBuffer<2>,
    replies: RingBuffer<2>,
    service_bell: HostDoorbell,
    reply_bell: HostDoorbell,
    running: AtomicBool,
}

#[test]
fn poller_run_answers_a_call_and_stops_when_told() {
    loom::model(|| {
        let shared = Arc::new(Shared {
            requests: RingBuffer::new(),
            replies: RingBuffer::new(),
            service_bell: HostDoorbell::new(0),
            reply_bell: HostDoorbell::new(0),
            running: AtomicBool::new(true),
        });
        let service_side = shared.clone();
        let service = thread::spawn(move || {
            let s = &*service_side;
            let mut endpoints = [Endpoint::new(
                VcpuId(0),
                s.requests.ring(),
                s.replies.ring(),
                &s.reply_bell,
            )
            .unwrap()];
            let mut poller = Poller::new(&mut endpoints, 1);
            let mut served = 0;
            poller.run(
                &s.service_bell,
                |_| {
                    served += 1;
                    Reply::InvalidateAck(InvalidateAck { entries_dropped: 1 })
                },
                || s.running.load(Ordering::Acquire),
            );
            served
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
        let reply = client.call(&Request::Invalidate(request)).unwrap();
        assert_eq!(
            reply,
            Reply::InvalidateAck(InvalidateAck { entries_dropped: 1 })
        );
        s.running.store(false, Ordering::Release);
        s.service_bell.ring();
        drop(client);
        assert_eq!(service.join().unwrap(), 1);
    });
}
