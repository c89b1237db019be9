//! The vCPU client against replies it did not ask for (review 32: R32-1,
//! R32-3, R32-5): a stray, late or misaddressed reply is an error for the
//! call it lands on, never an answer, never a credit, and the client
//! recovers once the real reply is drained. The service side is driven by
//! hand, on one thread.
#![cfg(not(loom))]

use ipc::message::decode_request;
use ipc::{
    AccessKind, ClientError, Consumer, ContextKey, Endpoint, InvalidateAck, Mapping,
    MemShareability, Permissions, Producer, Record, Reply, Request, RingBuffer, SpinDoorbell,
    TranslateOutcome, TranslateRequest, VcpuClient, VcpuId, VmidWidth,
};

/// vCPU 0's request and reply rings, with one spinning doorbell for both
/// directions; the tests take the service's ends by hand.
struct Rings<const REQUESTS: usize, const REPLIES: usize> {
    requests: RingBuffer<REQUESTS>,
    replies: RingBuffer<REPLIES>,
    bell: SpinDoorbell,
}

impl<const REQUESTS: usize, const REPLIES: usize> Rings<REQUESTS, REPLIES> {
    fn new() -> Self {
        Rings {
            requests: RingBuffer::new(),
            replies: RingBuffer::new(),
            bell: SpinDoorbell,
        }
    }

    fn client(&self) -> VcpuClient<'_, SpinDoorbell> {
        VcpuClient::new(
            VcpuId(0),
            self.requests.ring(),
            self.replies.ring(),
            &self.bell,
            &self.bell,
        )
        .unwrap()
    }

    /// The service's end of the request ring.
    fn service_rx(&self) -> Consumer<'_> {
        self.requests.ring().consumer().unwrap()
    }

    /// The service's end of the reply ring.
    fn service_tx(&self) -> Producer<'_> {
        self.replies.ring().producer().unwrap()
    }
}

fn translate(ipa: u64) -> Request {
    Request::Translate(TranslateRequest {
        context: ContextKey::new(5 << 48 | 0x4000_0000, 0x8002_3558, VmidWidth::Bits8),
        l2_ipa: ipa,
        access: AccessKind::Read,
        esr: 0x9200_0007,
        far: 0x1234_5000,
    })
}

fn mapped(vcpu: u32, seq: u64) -> Record {
    Reply::Translate(TranslateOutcome::Mapped(Mapping {
        pa: 0x4000_0000,
        size_log2: 12,
        permissions: Permissions::READ,
        mem_attr: 0xf,
        shareability: MemShareability::InnerShareable,
    }))
    .encode(VcpuId(vcpu), seq)
}

fn unsolicited(vcpu: u32, seq: u64) -> Record {
    Reply::InvalidateAck(InvalidateAck { entries_dropped: 0 }).encode(VcpuId(vcpu), seq)
}

fn is_mapped(reply: &Result<Reply, ClientError>) -> bool {
    matches!(reply, Ok(Reply::Translate(TranslateOutcome::Mapped(_))))
}

/// A reply nobody asked for fails the call it lands on, and that call's
/// request stays outstanding: the next call is refused (`Outstanding`)
/// instead of taking the late real reply as its own; once the late reply
/// is drained, calls work again.
#[test]
fn a_stray_reply_fails_one_call_and_the_client_recovers() {
    let rings = Rings::<4, 4>::new();
    let mut client = rings.client();
    let mut service_rx = rings.service_rx();
    let mut service_tx = rings.service_tx();
    service_tx.push(&unsolicited(0, 99)).unwrap();
    assert!(matches!(
        client.call(&translate(0x1000)),
        Err(ClientError::UnexpectedReply { seq: 99, .. })
    ));
    assert_eq!(client.outstanding(), 1, "request 0 is still unanswered");
    assert_eq!(
        client.call(&translate(0x2000)),
        Err(ClientError::Outstanding)
    );
    // The late reply to request 0 arrives and is drained.
    assert_eq!(decode_request(&service_rx.pop().unwrap()).unwrap().seq, 0);
    assert!(service_rx.pop().is_none(), "the refused call sent nothing");
    service_tx.push(&mapped(0, 0)).unwrap();
    let mut seen = Vec::new();
    assert_eq!(client.poll_replies(4, |r| seen.push(r.map(|e| e.seq))), 1);
    assert_eq!(seen, [Ok(0)]);
    assert_eq!(client.outstanding(), 0);
    // The next call (seq 1) gets its own answer.
    service_tx.push(&mapped(0, 1)).unwrap();
    assert!(is_mapped(&client.call(&translate(0x2000))));
    assert_eq!(decode_request(&service_rx.pop().unwrap()).unwrap().seq, 1);
}

/// `poll_replies` counts only the reply to the oldest outstanding request:
/// a stray one (a sequence number never sent, another vCPU's, a record
/// that does not decode) frees no credit.
#[test]
fn only_the_oldest_outstanding_reply_returns_a_credit() {
    let rings = Rings::<4, 4>::new();
    let mut client = rings.client();
    let mut service_tx = rings.service_tx();
    assert_eq!(
        client.send_batch(&[translate(0x1000), translate(0x2000)]),
        2
    );
    service_tx.push(&unsolicited(0, 99)).unwrap();
    service_tx.push(&mapped(3, 0)).unwrap();
    service_tx.push(&Record::ZERO).unwrap();
    let mut taken = 0;
    assert_eq!(client.poll_replies(8, |_| taken += 1), 3);
    assert_eq!(taken, 3, "every record is handed over");
    assert_eq!(client.outstanding(), 2);
    // The answers, in order, each return their credit; a repeat does not.
    service_tx.push(&mapped(0, 0)).unwrap();
    service_tx.push(&mapped(0, 0)).unwrap();
    service_tx.push(&mapped(0, 1)).unwrap();
    assert_eq!(client.poll_replies(8, |_| {}), 3);
    assert_eq!(client.outstanding(), 0);
}

/// With credits kept exact, a client can never have more requests in
/// flight than its reply ring holds, even after a stray reply: the service
/// answers every request it can see.
#[test]
fn a_stray_reply_cannot_overdraw_the_credits() {
    let rings = Rings::<4, 2>::new();
    let mut client = rings.client();
    rings.service_tx().push(&unsolicited(0, 99)).unwrap();
    let mut endpoint = Endpoint::new(
        VcpuId(0),
        rings.requests.ring(),
        rings.replies.ring(),
        &rings.bell,
    )
    .unwrap();
    assert_eq!(client.send_batch(&[translate(0x1000)]), 1);
    client.poll_replies(1, |_| {});
    let sent = client.send_batch(&[translate(0x2000), translate(0x3000)]);
    assert_eq!(sent, 1, "two reply slots: one request was in flight");
    let mut handler = |_| Reply::Translate(TranslateOutcome::Retry(ipc::RetryReason::Throttled));
    let mut served = 0;
    for _ in 0..4 {
        served += endpoint.serve(16, &mut handler);
    }
    assert_eq!(served, 2);
    assert!(!endpoint.has_request());
}

/// A reply addressed to another vCPU is refused (a mis-wired ring pair),
/// and the request stays outstanding.
#[test]
fn a_reply_for_another_vcpu_is_refused() {
    let rings = Rings::<4, 4>::new();
    let mut client = rings.client();
    let mut service_tx = rings.service_tx();
    service_tx.push(&mapped(7, 0)).unwrap();
    assert_eq!(
        client.call(&translate(0x1000)),
        Err(ClientError::MisaddressedReply {
            vcpu: VcpuId(7),
            seq: 0
        })
    );
    assert_eq!(client.outstanding(), 1);
}

/// `call_within` gives up at the deadline when nobody answers (and the
/// request stays outstanding), and returns the answer when one comes, the
/// same matching rules as `call`.
#[test]
fn call_within_is_bounded_and_matches_like_call() {
    let rings = Rings::<2, 2>::new();
    let mut client = rings.client();
    let mut service_rx = rings.service_rx();
    let mut service_tx = rings.service_tx();
    let mut polls = 0;
    let answer = client.call_within(&translate(0x1000), || {
        polls += 1;
        polls > 100
    });
    assert_eq!(answer, Err(ClientError::TimedOut));
    assert_eq!(client.outstanding(), 1);
    assert_eq!(
        client.call_within(&translate(0x1000), || true),
        Err(ClientError::Outstanding)
    );
    assert_eq!(decode_request(&service_rx.pop().unwrap()).unwrap().seq, 0);
    service_tx.push(&mapped(0, 0)).unwrap();
    client.poll_replies(1, |_| {});
    // Answered before the deadline.
    service_tx.push(&mapped(0, 1)).unwrap();
    assert!(is_mapped(&client.call_within(&translate(0x2000), || false)));
    assert_eq!(client.outstanding(), 0);
    // A misaddressed reply is an error here too.
    service_tx.push(&mapped(5, 2)).unwrap();
    assert!(matches!(
        client.call_within(&translate(0x3000), || false),
        Err(ClientError::MisaddressedReply { .. })
    ));
}
