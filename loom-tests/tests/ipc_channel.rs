//! loom model of a synchronous invalidation through the real client,
//! endpoint, rings and host doorbells: the vCPU's `invalidate` returns only
//! after the service applied it, and everything the service did before
//! acknowledging is visible to the vCPU afterwards (the ack is the DSB).
//!
//! `call_within_answers_or_times_out_leaving_the_request_outstanding`
//! does the same through `VcpuClient::call_within` (hv's nested fault
//! path, bounded by a deadline, polling instead of the reply doorbell):
//! answered, the service applied it; timed out, the request stays
//! outstanding (no other call may be made) until `poll_replies` takes its
//! reply, which the service still sends.
#![cfg(loom)]

use ipc::{ClientError, Doorbell, InvalidateAck, Reply, Request};
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;
use loom_tests::ipc_channel::{invalidate_vmid3, VcpuChannel};

struct Shared {
    channel: VcpuChannel,
    /// Written by the service with Relaxed: only the ring protocol orders it.
    applied: AtomicBool,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            channel: VcpuChannel::default(),
            applied: AtomicBool::new(false),
        }
    }
}

/// The service: waits for the request, applies it (`applied`) and
/// acknowledges it.
fn spawn_service(shared: &Arc<Shared>) -> thread::JoinHandle<()> {
    let shared = shared.clone();
    thread::spawn(move || {
        let s = &*shared;
        let mut endpoint = s.channel.endpoint();
        s.channel.service_bell.wait_until(|| endpoint.has_request());
        let served = endpoint.serve(2, &mut |envelope| {
            assert!(matches!(envelope.message, Request::Invalidate(_)));
            s.applied.store(true, Ordering::Relaxed);
            Reply::InvalidateAck(InvalidateAck { entries_dropped: 1 })
        });
        assert_eq!(served, 1);
    })
}

#[test]
fn invalidate_returns_after_the_service_applied_it() {
    loom::model(|| {
        let shared = Arc::new(Shared::default());
        let service = spawn_service(&shared);
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

#[test]
fn call_within_answers_or_times_out_leaving_the_request_outstanding() {
    loom::model(|| {
        let shared = Arc::new(Shared::default());
        let service = spawn_service(&shared);
        let s = &*shared;
        let mut client = s.channel.client();
        let ack = Reply::InvalidateAck(InvalidateAck { entries_dropped: 1 });
        // The deadline passes at the second look.
        let mut looks = 0;
        let request = Request::Invalidate(invalidate_vmid3());
        match client.call_within(&request, || {
            looks += 1;
            looks > 1
        }) {
            Ok(reply) => {
                assert_eq!(reply, ack);
                assert_eq!(client.outstanding(), 0);
                assert!(
                    s.applied.load(Ordering::Relaxed),
                    "acknowledged before applied"
                );
                service.join().unwrap();
            }
            Err(ClientError::TimedOut) => {
                assert_eq!(
                    client.outstanding(),
                    1,
                    "a timed-out request is outstanding"
                );
                assert_eq!(
                    client.call_within(&request, || true),
                    Err(ClientError::Outstanding)
                );
                service.join().unwrap();
                let mut replies = Vec::new();
                assert_eq!(client.poll_replies(2, |reply| replies.push(reply)), 1);
                let reply = replies.pop().unwrap().unwrap();
                assert_eq!((reply.seq, reply.message), (0, ack));
                assert_eq!(client.outstanding(), 0);
            }
            Err(other) => panic!("{other:?}"),
        }
    });
}
