//! loom model of the host doorbell: a consumer that finds its ring empty
//! and goes to sleep must be woken by a producer that publishes at the
//! same time (no lost wakeup), whatever the interleaving. A lost wakeup
//! would leave the consumer parked forever, which loom reports as a
//! deadlock.
#![cfg(loom)]

use ipc::message::{Record, RecordHeader};
use ipc::{Doorbell, HostDoorbell, RingBuffer};
use loom::sync::Arc;
use loom::thread;

fn record(seq: u64) -> Record {
    Record {
        header: RecordHeader {
            version: 1,
            kind: 1,
            vcpu: 0,
            seq,
        },
        body: [seq as u8; ipc::message::BODY_SIZE],
    }
}

/// One publish racing with the consumer going to sleep (no spinning, so
/// the consumer parks as soon as it sees nothing).
#[test]
fn sleep_versus_publish_loses_no_wakeup() {
    loom::model(|| {
        let buffer = Arc::new(RingBuffer::<2>::new());
        let bell = Arc::new(HostDoorbell::new(0));
        let (producer_buffer, producer_bell) = (buffer.clone(), bell.clone());
        let producer = thread::spawn(move || {
            let mut tx = producer_buffer.ring().producer().unwrap();
            tx.push(&record(1)).unwrap();
            producer_bell.ring();
        });
        let mut rx = buffer.ring().consumer().unwrap();
        bell.wait_until(|| rx.has_record());
        assert_eq!(rx.pop(), Some(record(1)));
        producer.join().unwrap();
    });
}

/// Two publishes, each followed by a ring, and the consumer sleeping
/// between them: the second wakeup must not be swallowed by the first.
#[test]
fn consecutive_wakeups_are_not_merged_away() {
    loom::model(|| {
        let buffer = Arc::new(RingBuffer::<2>::new());
        let bell = Arc::new(HostDoorbell::new(0));
        let (producer_buffer, producer_bell) = (buffer.clone(), bell.clone());
        let producer = thread::spawn(move || {
            let mut tx = producer_buffer.ring().producer().unwrap();
            for seq in 0..2 {
                tx.push(&record(seq)).unwrap();
                producer_bell.ring();
            }
        });
        let mut rx = buffer.ring().consumer().unwrap();
        for seq in 0..2 {
            bell.wait_until(|| rx.has_record());
            assert_eq!(rx.pop(), Some(record(seq)));
        }
        producer.join().unwrap();
    });
}

/// One bell shared by two sleeping consumers (each with its own ring) and
/// rung once after publishing to both: both must wake.
#[test]
fn one_ring_wakes_every_waiter() {
    loom::model(|| {
        let buffers = Arc::new([RingBuffer::<2>::new(), RingBuffer::<2>::new()]);
        let bell = Arc::new(HostDoorbell::new(0));
        let waiters: Vec<_> = (0..2)
            .map(|i| {
                let (buffers, bell) = (buffers.clone(), bell.clone());
                thread::spawn(move || {
                    let mut rx = buffers[i].ring().consumer().unwrap();
                    bell.wait_until(|| rx.has_record());
                    assert_eq!(rx.pop(), Some(record(i as u64)));
                })
            })
            .collect();
        for (i, buffer) in buffers.iter().enumerate() {
            buffer
                .ring()
                .producer()
                .unwrap()
                .push(&record(i as u64))
                .unwrap();
        }
        bell.ring();
        for waiter in waiters {
            waiter.join().unwrap();
        }
    });
}
