//! A loom model of the service loop as hv and the bench run it (from
//! review 32): `Poller::run` over an `Endpoint` with a `HostDoorbell` whose
//! readiness check is the sweep itself (side effects inside `wait_until`),
//! and its shutdown (`keep_running` false, then a ring). The `ipc_channel`
//! model drives `Endpoint::serve` by hand and never runs `Poller::run`.
//! Real code through the `sync.rs` shim.
#![cfg(loom)]

use ipc::{Doorbell, InvalidateAck, Poller, Reply, Request};
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;
use loom_tests::ipc_channel::{invalidate_vmid3, VcpuChannel};

struct Shared {
    channel: VcpuChannel,
    running: AtomicBool,
}

#[test]
fn poller_run_answers_a_call_and_stops_when_told() {
    loom::model(|| {
        let shared = Arc::new(Shared {
            channel: VcpuChannel::default(),
            running: AtomicBool::new(true),
        });
        let service_side = shared.clone();
        let service = thread::spawn(move || {
            let s = &*service_side;
            let mut endpoints = [s.channel.endpoint()];
            let mut poller = Poller::new(&mut endpoints, 1);
            let mut served = 0;
            poller.run(
                &s.channel.service_bell,
                |_| {
                    served += 1;
                    Reply::InvalidateAck(InvalidateAck { entries_dropped: 1 })
                },
                || s.running.load(Ordering::Acquire),
            );
            served
        });
        let s = &*shared;
        let mut client = s.channel.client();
        let reply = client
            .call(&Request::Invalidate(invalidate_vmid3()))
            .unwrap();
        assert_eq!(
            reply,
            Reply::InvalidateAck(InvalidateAck { entries_dropped: 1 })
        );
        s.running.store(false, Ordering::Release);
        s.channel.service_bell.ring();
        drop(client);
        assert_eq!(service.join().unwrap(), 1);
    });
}
