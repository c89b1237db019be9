//! loom models of the ipc SPSC ring: no loss, no duplication and FIFO
//! order at the capacity boundary, wrap-around, and batch publication.
//! They run the real `ipc::ring` code (its atomics and cells come from
//! loom under `--cfg loom`).
#![cfg(loom)]

use ipc::message::{Record, RecordHeader};
use ipc::RingBuffer;
use loom::sync::Arc;
use loom::thread;

fn record(seq: u64) -> Record {
    let mut body = [0u8; ipc::message::BODY_SIZE];
    body[0] = seq as u8;
    body[39] = !(seq as u8);
    Record {
        header: RecordHeader {
            version: 1,
            kind: 1,
            vcpu: 0,
            seq,
        },
        body,
    }
}

/// Checks that the record is exactly the one sent as number `seq`: a torn
/// or stale slot would show a different seq or body.
fn assert_is(record: &Record, seq: u64) {
    assert_eq!(*record, self::record(seq));
}

/// Capacity 2, three records: the producer must wait for a slot (the ring
/// is full after two), reuse slot 0 (wrap-around), and the consumer must
/// see 0, 1, 2 exactly once each, in order.
#[test]
fn fifo_no_loss_no_duplication_at_capacity() {
    loom::model(|| {
        let buffer = Arc::new(RingBuffer::<2>::new());
        let producer_side = buffer.clone();
        let producer = thread::spawn(move || {
            let mut tx = producer_side.ring().producer().unwrap();
            for seq in 0..3 {
                while tx.push(&record(seq)).is_err() {
                    thread::yield_now();
                }
            }
        });
        let mut rx = buffer.ring().consumer().unwrap();
        let mut next = 0;
        while next < 3 {
            match rx.pop() {
                Some(r) => {
                    assert_is(&r, next);
                    next += 1;
                }
                None => thread::yield_now(),
            }
        }
        producer.join().unwrap();
        assert_eq!(rx.pop(), None, "nothing beyond what was sent");
    });
}

/// The consumer drains in batches while the producer publishes a batch
/// larger than the free space: every drain sees a prefix of the sequence,
/// and the producer keeps what did not fit (backpressure, no drop).
#[test]
fn batch_publication_is_seen_in_order() {
    loom::model(|| {
        let buffer = Arc::new(RingBuffer::<2>::new());
        let producer_side = buffer.clone();
        let producer = thread::spawn(move || {
            let mut tx = producer_side.ring().producer().unwrap();
            let batch = [record(0), record(1), record(2)];
            let mut sent = 0;
            while sent < batch.len() {
                // May exceed the capacity when the consumer frees slots
                // during the batch: the producer rereads the head then.
                let n = tx.push_batch(&batch[sent..]);
                sent += n;
                if n == 0 {
                    thread::yield_now();
                }
            }
        });
        let mut rx = buffer.ring().consumer().unwrap();
        let mut next = 0;
        while next < 3 {
            let drained = rx.drain(2, |r| {
                assert_is(r, next);
                next += 1;
            });
            if drained == 0 {
                thread::yield_now();
            }
        }
        producer.join().unwrap();
    });
}

/// Two full laps of a 2-slot ring with the consumer releasing slots one at
/// a time: the stamp of each lap must never be mistaken for the next.
#[test]
fn wrap_around_two_laps() {
    loom::model(|| {
        let buffer = Arc::new(RingBuffer::<2>::new());
        let producer_side = buffer.clone();
        let producer = thread::spawn(move || {
            let mut tx = producer_side.ring().producer().unwrap();
            for seq in 0..4 {
                while tx.push(&record(seq)).is_err() {
                    thread::yield_now();
                }
            }
        });
        let mut rx = buffer.ring().consumer().unwrap();
        let mut next = 0;
        while next < 4 {
            if rx.drain(1, |r| assert_is(r, next)) == 1 {
                next += 1;
            } else {
                thread::yield_now();
            }
        }
        producer.join().unwrap();
        assert!(!rx.has_record());
    });
}
