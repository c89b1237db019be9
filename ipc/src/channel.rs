//! The two ends of the service connection.
//!
//! Each vCPU owns a request ring (vCPU -> service) and a reply ring
//! (service -> vCPU). [`VcpuClient`] is the vCPU
//! side: synchronous calls (the vCPU resumes only with the answer; for an
//! invalidation that is the acknowledgement, the DSB after the TLBI) and
//! batched asynchronous sends limited by credits. [`Poller`] is the service
//! side: it serves many vCPUs' rings fairly.
//!
//! Flow control never drops: a vCPU has at most as many requests outstanding
//! as its reply ring holds (credits), and the service takes a request off a ring only when the
//! matching reply ring has a free slot for its answer, so neither side ever
//! blocks on the other's full ring.

use crate::doorbell::Doorbell;
use crate::message::{
    decode_reply, decode_request, DecodeError, Envelope, InvalidateAck, InvalidateRequest,
    L0UnmapAck, L0UnmapRequest, Record, RecordKind, Reply, Request, TranslateOutcome,
    TranslateRequest, VcpuId,
};
use crate::ring::{Consumer, Producer, Ring, RingError};

/// Why a vCPU's call did not produce the expected answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientError {
    /// Asynchronous requests are still unanswered; a synchronous call would
    /// receive their replies. Drain them with [`VcpuClient::poll_replies`].
    Outstanding,
    /// The service rejected the request as malformed.
    Rejected(DecodeError),
    /// The reply record itself did not decode.
    MalformedReply(DecodeError),
    /// The reply answers another sequence number or has the wrong kind.
    UnexpectedReply {
        /// Sequence number in the reply.
        seq: u64,
        /// Kind of the reply.
        kind: RecordKind,
    },
    /// The reply is addressed to another vCPU (a mis-wired ring pair).
    MisaddressedReply {
        /// The vCPU the reply names.
        vcpu: VcpuId,
        /// Sequence number in the reply.
        seq: u64,
    },
    /// No reply came before the caller's deadline
    /// ([`VcpuClient::call_within`]).
    TimedOut,
}

/// A synchronous call's answer, from the `decoded` reply record taken
/// while waiting for request `seq` of `vcpu`.
struct Answer<T> {
    result: Result<T, ClientError>,
    /// The record is the reply to that request (whatever its content), so
    /// the request is no longer outstanding.
    answers_request: bool,
}

/// What a synchronous call returns for the `decoded` reply record: a
/// malformed record, a reply to another vCPU or another request, an error
/// reply, or a reply kind `expect` refuses are errors.
#[inline(always)]
fn answer_to<T>(
    vcpu: VcpuId,
    seq: u64,
    decoded: Result<Envelope<Reply>, DecodeError>,
    expect: impl FnOnce(Reply) -> Result<T, Reply>,
) -> Answer<T> {
    let envelope = match decoded {
        Ok(envelope) => envelope,
        Err(error) => {
            return Answer {
                result: Err(ClientError::MalformedReply(error)),
                answers_request: false,
            }
        }
    };
    if envelope.vcpu != vcpu {
        return Answer {
            result: Err(ClientError::MisaddressedReply {
                vcpu: envelope.vcpu,
                seq: envelope.seq,
            }),
            answers_request: false,
        };
    }
    if envelope.seq != seq {
        return Answer {
            result: Err(ClientError::UnexpectedReply {
                seq: envelope.seq,
                kind: envelope.message.kind(),
            }),
            answers_request: false,
        };
    }
    let result = match envelope.message {
        Reply::Error(error) => Err(ClientError::Rejected(error)),
        reply => expect(reply).map_err(|other| ClientError::UnexpectedReply {
            seq,
            kind: other.kind(),
        }),
    };
    Answer {
        result,
        answers_request: true,
    }
}

/// The vCPU end: produces requests, consumes replies.
pub struct VcpuClient<'a, B: Doorbell> {
    vcpu: VcpuId,
    requests: Producer<'a>,
    replies: Consumer<'a>,
    service_bell: &'a B,
    reply_bell: &'a B,
    next_seq: u64,
    outstanding: usize,
    /// Credits: at most this many requests outstanding (the reply ring's
    /// capacity).
    capacity: usize,
}

impl<B: Doorbell> core::fmt::Debug for VcpuClient<'_, B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("VcpuClient")
            .field("vcpu", &self.vcpu)
            .field("next_seq", &self.next_seq)
            .field("outstanding", &self.outstanding)
            .finish()
    }
}

impl<'a, B: Doorbell> VcpuClient<'a, B> {
    /// Claims the producer side of `requests` and the consumer side of
    /// `replies`. `service_bell` is rung after sending; `reply_bell` is the
    /// one the service rings for this vCPU.
    pub fn new(
        vcpu: VcpuId,
        requests: Ring<'a>,
        replies: Ring<'a>,
        service_bell: &'a B,
        reply_bell: &'a B,
    ) -> Result<Self, RingError> {
        Ok(VcpuClient {
            capacity: replies.capacity(),
            vcpu,
            requests: requests.producer()?,
            replies: replies.consumer()?,
            service_bell,
            reply_bell,
            next_seq: 0,
            outstanding: 0,
        })
    }

    /// The vCPU this client speaks for.
    pub fn vcpu(&self) -> VcpuId {
        self.vcpu
    }

    /// Requests sent and not yet answered.
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// Sends one request and waits for its answer (without a bound: a
    /// caller that must not hang uses [`VcpuClient::call_within`]).
    ///
    /// Replies are matched, never guessed: a reply record that is not the
    /// answer to this request (malformed, for another vCPU or another
    /// sequence number) is an error, and the request stays outstanding
    /// (every later call returns [`ClientError::Outstanding`]) until its
    /// own reply is taken by [`VcpuClient::poll_replies`].
    pub fn call(&mut self, request: &Request) -> Result<Reply, ClientError> {
        self.call_with(|vcpu, seq, slot| request.encode_into(vcpu, seq, slot), Ok)
    }

    /// [`VcpuClient::call`] that gives up with [`ClientError::TimedOut`]
    /// once `expired()` returns true, checked while the request ring is
    /// full and while no reply is waiting (polled, not through the
    /// doorbell: a doorbell wait may sleep past the deadline). After a
    /// timeout the request is outstanding, as after any other error.
    pub fn call_within(
        &mut self,
        request: &Request,
        mut expired: impl FnMut() -> bool,
    ) -> Result<Reply, ClientError> {
        if self.outstanding != 0 {
            return Err(ClientError::Outstanding);
        }
        let (vcpu, seq) = (self.vcpu, self.next_seq);
        while self
            .requests
            .push_in_place(|slot| request.encode_into(vcpu, seq, slot))
            .is_err()
        {
            if expired() {
                return Err(ClientError::TimedOut);
            }
            // A yield under loom (`ipc_channel` models this loop).
            crate::sync::spin_hint();
        }
        self.next_seq = seq.wrapping_add(1);
        self.outstanding = 1;
        self.service_bell.ring();
        loop {
            if let Some(result) = self.take_answer(seq, Ok) {
                return result;
            }
            if expired() {
                return Err(ClientError::TimedOut);
            }
            // A yield under loom (`ipc_channel` models this loop).
            crate::sync::spin_hint();
        }
    }

    /// Resolves an L2 stage-2 fault.
    #[inline]
    pub fn translate(
        &mut self,
        request: TranslateRequest,
    ) -> Result<TranslateOutcome, ClientError> {
        self.call_with(
            |vcpu, seq, slot| request.encode_into(vcpu, seq, slot),
            |reply| match reply {
                Reply::Translate(outcome) => Ok(outcome),
                other => Err(other),
            },
        )
    }

    /// Applies a trapped TLBI and returns only once the service has
    /// acknowledged it: no later L2 access can use an entry it removed.
    pub fn invalidate(&mut self, request: InvalidateRequest) -> Result<InvalidateAck, ClientError> {
        self.call_with(
            |vcpu, seq, slot| Request::Invalidate(request).encode_into(vcpu, seq, slot),
            |reply| match reply {
                Reply::InvalidateAck(ack) => Ok(ack),
                other => Err(other),
            },
        )
    }

    /// Reports an L0 change of L1's memory and waits until every shadow
    /// entry built on it is gone.
    pub fn l0_unmap(&mut self, request: L0UnmapRequest) -> Result<L0UnmapAck, ClientError> {
        self.call_with(
            |vcpu, seq, slot| Request::L0Unmap(request).encode_into(vcpu, seq, slot),
            |reply| match reply {
                Reply::L0UnmapAck(ack) => Ok(ack),
                other => Err(other),
            },
        )
    }

    /// One synchronous exchange: `encode` writes the request straight into
    /// the ring slot, the reply is validated in place in its slot, and
    /// `expect` picks the answer the request calls for (any other reply
    /// kind is [`ClientError::UnexpectedReply`]).
    #[inline(always)]
    fn call_with<T>(
        &mut self,
        encode: impl FnOnce(VcpuId, u64, &mut Record),
        expect: impl FnOnce(Reply) -> Result<T, Reply>,
    ) -> Result<T, ClientError> {
        if self.outstanding != 0 {
            return Err(ClientError::Outstanding);
        }
        let seq = self.next_seq;
        self.next_seq = seq.wrapping_add(1);
        // With nothing outstanding the service has taken every earlier
        // request, so this waits at most for it to release their slots.
        let vcpu = self.vcpu;
        self.requests
            .push_blocking_in_place(|slot| encode(vcpu, seq, slot));
        self.outstanding = 1;
        self.service_bell.ring();
        let replies = &self.replies;
        self.reply_bell.wait_until(|| replies.has_record());
        match self.take_answer(seq, expect) {
            Some(result) => result,
            None => unreachable!("wait_until returned with a record waiting"),
        }
    }

    /// Takes the waiting reply record, if any, as the answer to this
    /// client's synchronous request `seq` ([`answer_to`]); the request
    /// stops being outstanding only if the record is its reply.
    #[inline(always)]
    fn take_answer<T>(
        &mut self,
        seq: u64,
        expect: impl FnOnce(Reply) -> Result<T, Reply>,
    ) -> Option<Result<T, ClientError>> {
        let vcpu = self.vcpu;
        let answer = self
            .replies
            .take_with(|record| answer_to(vcpu, seq, decode_reply(record), expect))?;
        if answer.answers_request {
            self.outstanding = 0;
        }
        Some(answer.result)
    }
    /// Sends as many of `requests` as the credits (reply ring capacity) and the
    /// ring allow, with one doorbell ring, and returns how many were sent;
    /// the caller keeps the rest (backpressure). Request `i` gets sequence
    /// number `first_seq + i`, where `first_seq` is
    /// [`VcpuClient::next_seq`] before the call.
    pub fn send_batch(&mut self, requests: &[Request]) -> usize {
        let credits = self.capacity - self.outstanding;
        let vcpu = self.vcpu;
        let first = self.next_seq;
        let sent = self
            .requests
            .push_with(requests.len().min(credits), |i, slot| {
                requests[i].encode_into(vcpu, first.wrapping_add(i as u64), slot)
            });
        if sent > 0 {
            self.next_seq = first.wrapping_add(sent as u64);
            self.outstanding += sent;
            self.service_bell.ring();
        }
        sent
    }

    /// The sequence number the next request will carry.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Hands up to `max` waiting replies to `f`, in order, and returns how
    /// many were taken. Only the reply to the oldest outstanding request
    /// (the service answers a ring's requests in order) counts as an
    /// answer and returns its credit; any other record (malformed, for
    /// another vCPU, a sequence number not outstanding) is handed over
    /// and changes nothing, so a stray reply can never let more requests
    /// out than the reply ring holds.
    pub fn poll_replies(
        &mut self,
        max: usize,
        mut f: impl FnMut(Result<Envelope<Reply>, DecodeError>),
    ) -> usize {
        let vcpu = self.vcpu;
        let mut outstanding = self.outstanding;
        let next_seq = self.next_seq;
        let taken = self.replies.drain(max, |record| {
            let decoded = decode_reply(record);
            let oldest = next_seq.wrapping_sub(outstanding as u64);
            if outstanding > 0 && matches!(&decoded, Ok(e) if e.vcpu == vcpu && e.seq == oldest) {
                outstanding -= 1;
            }
            f(decoded)
        });
        self.outstanding = outstanding;
        taken
    }
}

/// The service's end of one vCPU's ring pair.
pub struct Endpoint<'a, B: Doorbell> {
    vcpu: VcpuId,
    requests: Consumer<'a>,
    replies: Producer<'a>,
    reply_bell: &'a B,
}

impl<B: Doorbell> core::fmt::Debug for Endpoint<'_, B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Endpoint")
            .field("vcpu", &self.vcpu)
            .finish()
    }
}

impl<'a, B: Doorbell> Endpoint<'a, B> {
    /// Claims the consumer side of `requests` and the producer side of
    /// `replies` for `vcpu`; `reply_bell` is rung after answering.
    pub fn new(
        vcpu: VcpuId,
        requests: Ring<'a>,
        replies: Ring<'a>,
        reply_bell: &'a B,
    ) -> Result<Self, RingError> {
        Ok(Endpoint {
            vcpu,
            requests: requests.consumer()?,
            replies: replies.producer()?,
            reply_bell,
        })
    }

    /// The vCPU at the other end.
    pub fn vcpu(&self) -> VcpuId {
        self.vcpu
    }

    /// Whether a request is waiting.
    pub fn has_request(&self) -> bool {
        self.requests.has_record()
    }

    /// Answers up to `limit` waiting requests, never more than the reply
    /// ring can take, with one doorbell ring. Malformed records (and
    /// records naming another vCPU) are answered with an error reply
    /// without reaching `handler`.
    pub fn serve(
        &mut self,
        limit: usize,
        handler: &mut impl FnMut(Envelope<Request>) -> Reply,
    ) -> usize {
        let room = self.replies.free_slots().min(limit);
        if room == 0 {
            return 0;
        }
        let vcpu = self.vcpu;
        let replies = &mut self.replies;
        let served = self.requests.drain(room, |record| {
            let reply = match decode_request(record) {
                Ok(envelope) if envelope.vcpu == vcpu => handler(envelope),
                Ok(envelope) => Reply::Error(DecodeError::VcpuMismatch {
                    found: envelope.vcpu.0,
                }),
                Err(error) => Reply::Error(error),
            };
            // Cannot be full: `room` slots were free, and only this
            // producer takes slots.
            let seq = record.header.seq;
            let pushed = replies.push_in_place(|slot| reply.encode_into(vcpu, seq, slot));
            debug_assert!(pushed.is_ok(), "reply ring had room for the batch");
        });
        if served > 0 {
            self.reply_bell.ring();
        }
        served
    }
}

/// Serves many vCPUs fairly: each sweep visits every endpoint once, takes
/// at most `batch_limit` requests from each, and starts one endpoint later
/// than the previous sweep, so a busy vCPU cannot starve the others.
pub struct Poller<'e, 'a, B: Doorbell> {
    endpoints: &'e mut [Endpoint<'a, B>],
    next: usize,
    batch_limit: usize,
}

impl<B: Doorbell> core::fmt::Debug for Poller<'_, '_, B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Poller")
            .field("endpoints", &self.endpoints.len())
            .field("next", &self.next)
            .field("batch_limit", &self.batch_limit)
            .finish()
    }
}

impl<'e, 'a, B: Doorbell> Poller<'e, 'a, B> {
    /// A poller over `endpoints`; `batch_limit` (at least 1) bounds the
    /// requests taken from one ring per sweep.
    pub fn new(endpoints: &'e mut [Endpoint<'a, B>], batch_limit: usize) -> Self {
        Poller {
            endpoints,
            next: 0,
            batch_limit: batch_limit.max(1),
        }
    }

    /// One sweep over every endpoint; returns the requests answered.
    pub fn poll(&mut self, handler: &mut impl FnMut(Envelope<Request>) -> Reply) -> usize {
        let count = self.endpoints.len();
        if count == 0 {
            return 0;
        }
        // Rotate the starting endpoint (no division on this hot path).
        let start = if self.next < count { self.next } else { 0 };
        self.next = if start + 1 == count { 0 } else { start + 1 };
        let (tail, head) = self.endpoints.split_at_mut(start);
        let mut served = 0;
        for endpoint in head.iter_mut().chain(tail.iter_mut()) {
            served += endpoint.serve(self.batch_limit, handler);
        }
        served
    }

    /// Serves until `keep_running()` is false, sleeping on `bell` (the
    /// doorbell every vCPU rings) when there is nothing to do. Whoever
    /// makes `keep_running` false must ring `bell` afterwards.
    /// `keep_running` is polled while idle: keep it cheap, and keep the flag
    /// it reads on a cache line of its own.
    pub fn run<D: Doorbell>(
        &mut self,
        bell: &D,
        mut handler: impl FnMut(Envelope<Request>) -> Reply,
        mut keep_running: impl FnMut() -> bool,
    ) {
        while keep_running() {
            // The doorbell's readiness check is the sweep itself: a request
            // it finds is answered at once, not after the waiter returns and
            // sweeps again.
            bell.wait_until(|| self.poll(&mut handler) > 0 || !keep_running());
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::doorbell::{HostDoorbell, SpinDoorbell};
    use crate::message::{
        AccessKind, ContextKey, Field, L0Change, Mapping, MemShareability, Permissions, Record,
        RetryReason,
    };
    use crate::ring::RingBuffer;
    use crate::tlbi::{InvalidateScope, IpaRange, Shareability, Tlbi, TlbiOp, TlbiParams};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::vec::Vec;

    fn translate(ipa: u64) -> TranslateRequest {
        TranslateRequest {
            context: ContextKey {
                vmid: 5,
                vttbr: 5 << 48 | 0x4000_0000,
                vtcr: 0x8002_3558,
            },
            l2_ipa: ipa,
            access: AccessKind::Read,
            esr: 0x9200_0007,
            far: 0x1234_5000 | (ipa & 0xfff),
        }
    }

    /// A stand-in service: maps every IPA to PA = IPA + 1 GiB, counts the
    /// invalidations it applied.
    fn service(envelope: Envelope<Request>) -> Reply {
        match envelope.message {
            Request::Translate(t) => Reply::Translate(TranslateOutcome::Mapped(Mapping {
                pa: (t.l2_ipa & !0xfff) + (1 << 30),
                size_log2: 12,
                permissions: Permissions::READ.union(Permissions::WRITE),
                mem_attr: 0xf,
                shareability: MemShareability::InnerShareable,
            })),
            Request::Invalidate(inv) => Reply::InvalidateAck(InvalidateAck {
                entries_dropped: match inv.tlbi().decode(inv.operand(), TlbiParams::default()) {
                    Ok(InvalidateScope::Ipa(scope)) => scope.range.len() >> 12,
                    _ => u64::MAX,
                },
            }),
            Request::L0Unmap(unmap) => Reply::L0UnmapAck(L0UnmapAck {
                entries_removed: unmap.range.len() >> 12,
            }),
        }
    }

    #[test]
    fn synchronous_calls_between_threads() {
        let requests = RingBuffer::<8>::new();
        let replies = RingBuffer::<8>::new();
        let service_bell = HostDoorbell::new(64);
        let reply_bell = HostDoorbell::new(64);
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut endpoints =
                    [
                        Endpoint::new(VcpuId(1), requests.ring(), replies.ring(), &reply_bell)
                            .unwrap(),
                    ];
                let mut poller = Poller::new(&mut endpoints, 4);
                poller.run(&service_bell, service, || !stop.load(Ordering::Acquire));
            });
            let mut client = VcpuClient::new(
                VcpuId(1),
                requests.ring(),
                replies.ring(),
                &service_bell,
                &reply_bell,
            )
            .unwrap();
            for i in 0..2000u64 {
                let ipa = i << 12 | 0x123;
                match client.translate(translate(ipa)).unwrap() {
                    TranslateOutcome::Mapped(m) => assert_eq!(m.pa, (i << 12) + (1 << 30)),
                    other => panic!("{other:?}"),
                }
            }
            let tlbi = Tlbi {
                op: TlbiOp::Ipas2e1,
                shareability: Shareability::InnerShareable,
                nxs: false,
            };
            let inv = InvalidateRequest::new(5 << 48, 0, crate::VmidWidth::Bits8, tlbi, 0x8_0000)
                .unwrap();
            assert_eq!(client.invalidate(inv).unwrap().entries_dropped, 1);
            let unmap = L0UnmapRequest {
                range: IpaRange::new(0x1000_0000, 0x1001_0000).unwrap(),
                change: L0Change::WriteProtect,
            };
            assert_eq!(client.l0_unmap(unmap).unwrap().entries_removed, 16);
            stop.store(true, Ordering::Release);
            service_bell.ring();
        });
    }

    #[test]
    fn batches_respect_credits_and_arrive_in_order() {
        let requests = RingBuffer::<4>::new();
        let replies = RingBuffer::<4>::new();
        let bell = SpinDoorbell;
        let mut client =
            VcpuClient::new(VcpuId(0), requests.ring(), replies.ring(), &bell, &bell).unwrap();
        let mut endpoint =
            Endpoint::new(VcpuId(0), requests.ring(), replies.ring(), &bell).unwrap();
        let batch: Vec<Request> = (0..10)
            .map(|i| Request::Translate(translate(i << 12)))
            .collect();
        assert_eq!(client.send_batch(&batch), 4);
        assert_eq!(client.send_batch(&batch[4..]), 0, "no credit left");
        assert_eq!(client.call(&batch[0]), Err(ClientError::Outstanding));
        assert_eq!(endpoint.serve(16, &mut service), 4);
        let mut seqs = Vec::new();
        client.poll_replies(2, |reply| seqs.push(reply.unwrap().seq));
        assert_eq!(client.outstanding(), 2);
        assert_eq!(client.send_batch(&batch[4..]), 2);
        endpoint.serve(16, &mut service);
        client.poll_replies(16, |reply| seqs.push(reply.unwrap().seq));
        assert_eq!(seqs, [0, 1, 2, 3, 4, 5]);
        assert_eq!(client.outstanding(), 0);
    }

    #[test]
    fn malformed_and_misaddressed_requests_get_error_replies() {
        let requests = RingBuffer::<4>::new();
        let replies = RingBuffer::<4>::new();
        let bell = SpinDoorbell;
        let mut raw = requests.ring().producer().unwrap();
        let mut replies_rx = replies.ring().consumer().unwrap();
        let mut endpoint =
            Endpoint::new(VcpuId(2), requests.ring(), replies.ring(), &bell).unwrap();
        let mut garbage = Record::ZERO;
        garbage.header.seq = 77;
        raw.push(&garbage).unwrap();
        let mut bad_access = Request::Translate(translate(0)).encode(VcpuId(2), 78);
        bad_access.body[38] = 9; // the access kind
        raw.push(&bad_access).unwrap();
        raw.push(&Request::Translate(translate(0)).encode(VcpuId(3), 79))
            .unwrap();
        let mut handled = 0;
        assert_eq!(
            endpoint.serve(8, &mut |e| {
                handled += 1;
                service(e)
            }),
            3
        );
        assert_eq!(handled, 0, "nothing malformed reaches the handler");
        let mut got = Vec::new();
        replies_rx.drain(8, |r| got.push(decode_reply(r).unwrap()));
        assert_eq!(got[0].seq, 77);
        assert_eq!(
            got[0].message,
            Reply::Error(DecodeError::Version { found: 0 })
        );
        assert_eq!(
            got[1].message,
            Reply::Error(DecodeError::Invalid {
                kind: RecordKind::Translate as u16,
                field: Field::Access
            })
        );
        assert_eq!(
            got[2].message,
            Reply::Error(DecodeError::VcpuMismatch { found: 3 })
        );
        assert!(got.iter().all(|e| e.vcpu == VcpuId(2)));
    }

    #[test]
    fn a_full_reply_ring_holds_requests_back_without_loss() {
        let requests = RingBuffer::<4>::new();
        let replies = RingBuffer::<2>::new();
        let bell = SpinDoorbell;
        let mut raw = requests.ring().producer().unwrap();
        let mut replies_rx = replies.ring().consumer().unwrap();
        let mut endpoint =
            Endpoint::new(VcpuId(0), requests.ring(), replies.ring(), &bell).unwrap();
        for seq in 0..4 {
            raw.push(&Request::Translate(translate(0)).encode(VcpuId(0), seq))
                .unwrap();
        }
        assert_eq!(endpoint.serve(8, &mut service), 2);
        assert_eq!(endpoint.serve(8, &mut service), 0, "reply ring full");
        assert!(endpoint.has_request());
        let mut seqs = Vec::new();
        replies_rx.drain(8, |r| seqs.push(r.header.seq));
        assert_eq!(endpoint.serve(8, &mut service), 2);
        replies_rx.drain(8, |r| seqs.push(r.header.seq));
        assert_eq!(seqs, [0, 1, 2, 3]);
    }

    #[test]
    fn poller_is_round_robin_with_bounded_batches() {
        let bell = SpinDoorbell;
        let requests: Vec<RingBuffer<16>> = (0..3).map(|_| RingBuffer::new()).collect();
        let replies: Vec<RingBuffer<16>> = (0..3).map(|_| RingBuffer::new()).collect();
        let mut raws: Vec<_> = requests
            .iter()
            .map(|r| r.ring().producer().unwrap())
            .collect();
        let mut endpoints: Vec<_> = (0..3)
            .map(|i| {
                Endpoint::new(
                    VcpuId(i as u32),
                    requests[i].ring(),
                    replies[i].ring(),
                    &bell,
                )
                .unwrap()
            })
            .collect();
        // vCPU 0 floods, vCPUs 1 and 2 send one request each.
        for seq in 0..12 {
            raws[0]
                .push(&Request::Translate(translate(0)).encode(VcpuId(0), seq))
                .unwrap();
        }
        for (i, raw) in raws.iter_mut().enumerate().skip(1) {
            raw.push(&Request::Translate(translate(0)).encode(VcpuId(i as u32), 0))
                .unwrap();
        }
        let mut poller = Poller::new(&mut endpoints, 3);
        let mut order = Vec::new();
        let served = poller.poll(&mut |e| {
            order.push(e.vcpu.0);
            service(e)
        });
        // One sweep: at most 3 from the flooder, and the others are served
        // in the same sweep.
        assert_eq!(served, 5);
        assert_eq!(order, [0, 0, 0, 1, 2]);
        order.clear();
        // The next sweep starts one endpoint later.
        for (i, raw) in raws.iter_mut().enumerate().skip(1) {
            raw.push(&Request::Translate(translate(0)).encode(VcpuId(i as u32), 1))
                .unwrap();
        }
        poller.poll(&mut |e| {
            order.push(e.vcpu.0);
            service(e)
        });
        assert_eq!(order, [1, 2, 0, 0, 0]);
        assert!(poller.endpoints.iter().any(Endpoint::has_request));
    }

    #[test]
    fn retry_and_inject_outcomes_reach_the_caller() {
        let requests = RingBuffer::<2>::new();
        let replies = RingBuffer::<2>::new();
        let bell = SpinDoorbell;
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut endpoints =
                    [Endpoint::new(VcpuId(0), requests.ring(), replies.ring(), &bell).unwrap()];
                let mut poller = Poller::new(&mut endpoints, 1);
                poller.run(
                    &bell,
                    |e| match e.message {
                        Request::Translate(t) if t.l2_ipa == 0 => {
                            Reply::Translate(TranslateOutcome::Retry(RetryReason::AlreadyMapped))
                        }
                        _ => {
                            Reply::Translate(TranslateOutcome::Inject(crate::message::Injection {
                                esr: 0x24 << 26 | 1 << 25 | 0x7,
                                far: 0x1234,
                                hpfar: 0x10,
                            }))
                        }
                    },
                    || !stop.load(Ordering::Acquire),
                );
            });
            let mut client =
                VcpuClient::new(VcpuId(0), requests.ring(), replies.ring(), &bell, &bell).unwrap();
            assert_eq!(
                client.translate(translate(0)),
                Ok(TranslateOutcome::Retry(RetryReason::AlreadyMapped))
            );
            assert!(matches!(
                client.translate(translate(0x1000)),
                Ok(TranslateOutcome::Inject(i)) if i.far == 0x1234
            ));
            stop.store(true, Ordering::Release);
        });
    }

    /// Several vCPU threads call the service concurrently through one
    /// shared service doorbell; every answer matches its own request.
    #[test]
    fn many_vcpus_share_one_service_without_loss_or_mixups() {
        const VCPUS: usize = 3;
        const CALLS: u64 = 3000;
        let requests: Vec<RingBuffer<4>> = (0..VCPUS).map(|_| RingBuffer::new()).collect();
        let replies: Vec<RingBuffer<4>> = (0..VCPUS).map(|_| RingBuffer::new()).collect();
        let reply_bells: Vec<HostDoorbell> = (0..VCPUS).map(|_| HostDoorbell::new(32)).collect();
        let service_bell = HostDoorbell::new(32);
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut endpoints: Vec<_> = (0..VCPUS)
                    .map(|i| {
                        Endpoint::new(
                            VcpuId(i as u32),
                            requests[i].ring(),
                            replies[i].ring(),
                            &reply_bells[i],
                        )
                        .unwrap()
                    })
                    .collect();
                let mut poller = Poller::new(&mut endpoints, 2);
                poller.run(&service_bell, service, || !stop.load(Ordering::Acquire));
            });
            let clients: Vec<_> = (0..VCPUS)
                .map(|i| {
                    let (requests, replies) = (&requests[i], &replies[i]);
                    let (service_bell, reply_bell) = (&service_bell, &reply_bells[i]);
                    s.spawn(move || {
                        let mut client = VcpuClient::new(
                            VcpuId(i as u32),
                            requests.ring(),
                            replies.ring(),
                            service_bell,
                            reply_bell,
                        )
                        .unwrap();
                        for n in 0..CALLS {
                            let ipa = ((i as u64) << 40) | (n << 12);
                            match client.translate(translate(ipa)) {
                                Ok(TranslateOutcome::Mapped(m)) => {
                                    assert_eq!(m.pa, ipa + (1 << 30))
                                }
                                other => panic!("vCPU {i} call {n}: {other:?}"),
                            }
                        }
                    })
                })
                .collect();
            for client in clients {
                client.join().unwrap();
            }
            stop.store(true, Ordering::Release);
            service_bell.ring();
        });
    }
}
