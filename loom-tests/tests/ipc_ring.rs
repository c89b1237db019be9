//! loom models of the ipc SPSC ring: no loss, no duplication and FIFO
//! order at the capacity boundary, wrap-around, and batch publication.
//! They run the real `ipc::ring` code (its atomics and cells come from
//! loom under `--cfg loom`).
#![cfg(loom)]

use ipc::message::{Record, RecordHeader};
use ipc::RingBuffer;
use loom::sync::atomic::{AtomicBool, Ordering};
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

/// A producer handle dropped on one thread and claimed on another: the new
/// handle must resume at the old one's tail. The second thread is spawned
/// while the first still holds the role, so only the claim flag (the
/// drop's Release store, the claim's Acquire CAS) orders the first
/// handle's slot write and tail before the second handle's; without it the
/// new handle could start from a stale tail and overwrite record 0.
#[test]
fn producer_handover_resumes_at_the_published_tail() {
    loom::model(|| {
        let buffer = Arc::new(RingBuffer::<2>::new());
        let mut first = buffer.ring().producer().unwrap();
        let second_side = buffer.clone();
        let second = thread::spawn(move || {
            let ring = second_side.ring();
            let mut tx = loop {
                match ring.producer() {
                    Ok(tx) => break tx,
                    Err(_) => thread::yield_now(),
                }
            };
            tx.push(&record(1)).unwrap();
        });
        first.push(&record(0)).unwrap();
        drop(first);
        second.join().unwrap();
        let mut rx = buffer.ring().consumer().unwrap();
        assert_is(&rx.pop().unwrap(), 0);
        assert_is(&rx.pop().unwrap(), 1);
        assert_eq!(rx.pop(), None, "nothing beyond what was sent");
    });
}

/// A consumer handle dropped on one thread and claimed on another: the new
/// handle must resume at the old one's head, never hand out a record the
/// old one already took. As above, the second thread starts while the
/// first holds the role, so the claim flag alone orders the two.
#[test]
fn consumer_handover_resumes_at_the_released_head() {
    loom::model(|| {
        let buffer = Arc::new(RingBuffer::<2>::new());
        let mut tx = buffer.ring().producer().unwrap();
        tx.push_batch(&[record(0), record(1)]);
        drop(tx);
        let mut first = buffer.ring().consumer().unwrap();
        let second_side = buffer.clone();
        let second = thread::spawn(move || {
            let ring = second_side.ring();
            let mut rx = loop {
                match ring.consumer() {
                    Ok(rx) => break rx,
                    Err(_) => thread::yield_now(),
                }
            };
            assert_is(&rx.pop().unwrap(), 1);
            assert_eq!(rx.pop(), None, "record 0 handed out twice");
        });
        assert_is(&first.pop().unwrap(), 0);
        drop(first);
        second.join().unwrap();
    });
}

/// A new producer handle claimed after the consumer freed a slot of a
/// full ring: the head the claim reads (Acquire) is the only thing ordering
/// the consumer's read of slot 0 before the new producer's write of it.
/// The consumer's `freed` flag is Relaxed: it only steers the model to the
/// interleaving where the slot is already free when the producer claims
/// (loom's search does not reach it unaided), without ordering anything.
#[test]
fn new_producer_reuses_a_slot_only_after_the_consumer_read_it() {
    loom::model(|| {
        let buffer = Arc::new(RingBuffer::<2>::new());
        let freed = Arc::new(AtomicBool::new(false));
        let mut tx = buffer.ring().producer().unwrap();
        assert_eq!(tx.push_batch(&[record(0), record(1)]), 2);
        drop(tx);
        let (consumer_side, consumer_freed) = (buffer.clone(), freed.clone());
        let consumer = thread::spawn(move || {
            let mut rx = consumer_side.ring().consumer().unwrap();
            assert_is(&rx.pop().unwrap(), 0);
            consumer_freed.store(true, Ordering::Relaxed);
        });
        while !freed.load(Ordering::Relaxed) {
            thread::yield_now();
        }
        let mut tx = buffer.ring().producer().unwrap();
        while tx.push(&record(2)).is_err() {
            thread::yield_now();
        }
        drop(tx);
        consumer.join().unwrap();
        let mut rx = buffer.ring().consumer().unwrap();
        assert_is(&rx.pop().unwrap(), 1);
        assert_is(&rx.pop().unwrap(), 2);
        assert_eq!(rx.pop(), None);
    });
}
