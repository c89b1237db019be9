//! ipc benchmarks, each beside its baselines in the same run:
//!
//! * `ipc_round_trip`: one request and its reply between two threads on
//!   different cores. Floor: a single cache line bounced between the two
//!   cores (`cacheline_ping_pong`). Umbra: the raw ring transport
//!   (`ring_raw`) and the full typed path (`ring_typed_translate`: encode,
//!   validate, decode, doorbells, fair poller). Baselines: a pair of
//!   crossbeam-channel and of std mpsc bounded channels carrying the same
//!   56-byte record.
//! * `ipc_throughput`: records per second from one producer to one
//!   consumer, with the ring published in batches of 1, 8 and 64 (one
//!   doorbell ring per batch), against crossbeam-channel and std mpsc.
//!
//! Goals (issue 4): round trip <= 2x the ping-pong; batched throughput >=
//! 5x crossbeam-channel.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use ipc::{
    AccessKind, ContextKey, Doorbell, Endpoint, HostDoorbell, Mapping, MemShareability,
    Permissions, Poller, Record, Reply, Request, RingBuffer, TranslateOutcome, TranslateRequest,
    VcpuClient, VcpuId,
};

/// With `IPC_BENCH_PIN=1`, pins the calling thread to core `index` (mod the
/// core count), so the two sides of every benchmark run on different cores.
/// Off by default: on a small shared machine a pinned spinning thread that
/// shares its core with other work waits a whole scheduler slice for each
/// hand-off, while unpinned threads migrate to whichever core is free.
fn pin(index: usize) {
    if std::env::var_os("IPC_BENCH_PIN").is_none() {
        return;
    }
    if let Some(cores) = core_affinity::get_core_ids() {
        if !cores.is_empty() {
            core_affinity::set_for_current(cores[index % cores.len()]);
        }
    }
}

fn translate_request(i: u64) -> TranslateRequest {
    TranslateRequest {
        context: ContextKey {
            vmid: 1,
            vttbr: 1 << 48 | 0x8000_0000,
            vtcr: 0x8002_3558,
        },
        l2_ipa: (i & 0xffff) << 12,
        access: AccessKind::Read,
        esr: 0x9200_0007,
        far: 0x7f00_0000_0000 | (i & 0xffff) << 12,
    }
}

fn sample_record(i: u64) -> Record {
    Request::Translate(translate_request(i)).encode(VcpuId(0), i)
}

#[repr(align(128))]
struct Line(AtomicU64);

/// A stop flag on its own cache line, so polling it does not falsely share
/// a line with the benchmark's other state.
#[repr(align(128))]
struct Flag(AtomicBool);

/// Round trips per chunk of the interleaved comparison.
const PAIRED_CHUNK: u64 = 20_000;
/// Chunks per protocol.
const PAIRED_ROUNDS: usize = 15;

fn serve_mapped(envelope: ipc::Envelope<Request>) -> Reply {
    match envelope.message {
        Request::Translate(t) => Reply::Translate(TranslateOutcome::Mapped(Mapping {
            pa: t.l2_ipa + (1 << 30),
            size_log2: 12,
            permissions: Permissions::READ,
            mem_attr: 0xf,
            shareability: MemShareability::InnerShareable,
        })),
        _ => unreachable!("only translations are sent"),
    }
}

/// The shared machine drifts between regimes (cross-core latency of ~50 ns
/// and of ~400 ns were both seen within minutes), so benchmarks that run one
/// after another can see different machines. This prints the ratios to
/// the ping-pong floor measured in alternating chunks on one peer thread:
/// ping-pong, raw ring, typed call (spinning doorbells, one endpoint served
/// directly), typed call through the service loop (fair poller, host
/// doorbells), ping-pong, ... and reports the median of the per-round
/// ratios next to the criterion results.
fn paired_ratios() {
    let line = Line(AtomicU64::new(0));
    let raw_requests = RingBuffer::<64>::new();
    let raw_replies = RingBuffer::<64>::new();
    let typed_requests = RingBuffer::<64>::new();
    let typed_replies = RingBuffer::<64>::new();
    let bell = ipc::SpinDoorbell;
    let service_requests = RingBuffer::<64>::new();
    let service_replies = RingBuffer::<64>::new();
    let service_bell = HostDoorbell::default();
    let reply_bell = HostDoorbell::default();
    let rounds: Vec<[f64; 4]> = thread::scope(|s| {
        s.spawn(|| {
            pin(1);
            let mut raw_rx = raw_requests.ring().consumer().unwrap();
            let mut raw_tx = raw_replies.ring().producer().unwrap();
            let mut endpoint = Endpoint::new(
                VcpuId(0),
                typed_requests.ring(),
                typed_replies.ring(),
                &bell,
            )
            .unwrap();
            let mut handler = serve_mapped;
            let mut service_endpoints = [Endpoint::new(
                VcpuId(0),
                service_requests.ring(),
                service_replies.ring(),
                &reply_bell,
            )
            .unwrap()];
            let mut poller = Poller::new(&mut service_endpoints, 16);
            for _ in 0..PAIRED_ROUNDS {
                let mut answered = 0;
                while answered < PAIRED_CHUNK {
                    let v = line.0.load(Ordering::Acquire);
                    if v & 1 == 1 {
                        line.0.store(v + 1, Ordering::Release);
                        answered += 1;
                    } else {
                        std::hint::spin_loop();
                    }
                }
                let mut answered = 0;
                while answered < PAIRED_CHUNK {
                    let n = raw_rx.drain(64, |record| raw_tx.push_blocking(record));
                    if n == 0 {
                        std::hint::spin_loop();
                    }
                    answered += n as u64;
                }
                let mut answered = 0;
                while answered < PAIRED_CHUNK {
                    let n = endpoint.serve(16, &mut handler);
                    if n == 0 {
                        std::hint::spin_loop();
                    }
                    answered += n as u64;
                }
                // The service loop as deployed: fair poller, host doorbells.
                let answered = std::cell::Cell::new(0);
                poller.run(
                    &service_bell,
                    |envelope| {
                        answered.set(answered.get() + 1);
                        serve_mapped(envelope)
                    },
                    || answered.get() < PAIRED_CHUNK,
                );
            }
        });
        let mut raw_tx = raw_requests.ring().producer().unwrap();
        let mut raw_rx = raw_replies.ring().consumer().unwrap();
        let mut client = VcpuClient::new(
            VcpuId(0),
            typed_requests.ring(),
            typed_replies.ring(),
            &bell,
            &bell,
        )
        .unwrap();
        let mut service_client = VcpuClient::new(
            VcpuId(0),
            service_requests.ring(),
            service_replies.ring(),
            &service_bell,
            &reply_bell,
        )
        .unwrap();
        let record = sample_record(1);
        let mut value = 0u64;
        let per_round_trip =
            |start: Instant| start.elapsed().as_nanos() as f64 / PAIRED_CHUNK as f64;
        let mut rounds = Vec::with_capacity(PAIRED_ROUNDS);
        for _ in 0..PAIRED_ROUNDS {
            let start = Instant::now();
            for _ in 0..PAIRED_CHUNK {
                line.0.store(value + 1, Ordering::Release);
                while line.0.load(Ordering::Acquire) != value + 2 {
                    std::hint::spin_loop();
                }
                value += 2;
            }
            let ping_pong = per_round_trip(start);
            let start = Instant::now();
            for _ in 0..PAIRED_CHUNK {
                raw_tx.push_blocking(&record);
                while !raw_rx.has_record() {
                    std::hint::spin_loop();
                }
                black_box(raw_rx.pop());
            }
            let raw = per_round_trip(start);
            let start = Instant::now();
            for i in 0..PAIRED_CHUNK {
                black_box(client.translate(translate_request(i)).unwrap());
            }
            let typed = per_round_trip(start);
            let start = Instant::now();
            for i in 0..PAIRED_CHUNK {
                black_box(service_client.translate(translate_request(i)).unwrap());
            }
            let service = per_round_trip(start);
            rounds.push([ping_pong, raw, typed, service]);
        }
        rounds
    });
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let column = |i: usize| median(rounds.iter().map(|r| r[i]).collect());
    let ratio = |i: usize| median(rounds.iter().map(|r| r[i] / r[0]).collect());
    println!(
        "ipc_round_trip/paired (median of {PAIRED_ROUNDS} interleaved rounds): ping-pong {:.1} ns, \
         ring_raw {:.1} ns ({:.2}x), ring_typed_translate {:.1} ns ({:.2}x), \
         typed_poller_host_doorbell {:.1} ns ({:.2}x)",
        column(0),
        column(1),
        ratio(1),
        column(2),
        ratio(2),
        column(3),
        ratio(3),
    );
}

fn round_trip(c: &mut Criterion) {
    pin(0);
    paired_ratios();
    let mut group = c.benchmark_group("ipc_round_trip");

    // Floor: one cache line, written alternately by the two cores.
    {
        let line = Line(AtomicU64::new(0));
        let stop = Flag(AtomicBool::new(false));
        let stop = &stop.0;
        thread::scope(|s| {
            s.spawn(|| {
                pin(1);
                loop {
                    let v = line.0.load(Ordering::Acquire);
                    if v & 1 == 1 {
                        line.0.store(v + 1, Ordering::Release);
                    } else if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    std::hint::spin_loop();
                }
            });
            let mut value = 0u64;
            group.bench_function("cacheline_ping_pong", |b| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        line.0.store(value + 1, Ordering::Release);
                        while line.0.load(Ordering::Acquire) != value + 2 {
                            std::hint::spin_loop();
                        }
                        value += 2;
                    }
                    start.elapsed()
                })
            });
            stop.store(true, Ordering::Relaxed);
        });
    }

    // The ring transport alone: push a record, the peer echoes it back.
    {
        let requests = RingBuffer::<64>::new();
        let replies = RingBuffer::<64>::new();
        let stop = Flag(AtomicBool::new(false));
        let stop = &stop.0;
        thread::scope(|s| {
            s.spawn(|| {
                pin(1);
                let mut rx = requests.ring().consumer().unwrap();
                let mut tx = replies.ring().producer().unwrap();
                while !stop.load(Ordering::Relaxed) {
                    // Poll like a doorbell's spin phase: one pause between
                    // empty polls, so the poller does not steal the slot
                    // line while the producer is still writing it.
                    if rx.drain(64, |record| tx.push_blocking(record)) == 0 {
                        std::hint::spin_loop();
                    }
                }
            });
            let mut tx = requests.ring().producer().unwrap();
            let mut rx = replies.ring().consumer().unwrap();
            let record = sample_record(1);
            group.bench_function("ring_raw", |b| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        tx.push_blocking(&record);
                        while !rx.has_record() {
                            std::hint::spin_loop();
                        }
                        black_box(rx.pop());
                    }
                    start.elapsed()
                })
            });
            stop.store(true, Ordering::Relaxed);
        });
    }

    // The full typed path a vCPU fault takes: encode, publish, doorbell,
    // fair poller, validate and decode, handler, reply, decode.
    {
        let requests = RingBuffer::<64>::new();
        let replies = RingBuffer::<64>::new();
        let service_bell = HostDoorbell::default();
        let reply_bell = HostDoorbell::default();
        let running = Flag(AtomicBool::new(true));
        let running = &running.0;
        thread::scope(|s| {
            s.spawn(|| {
                pin(1);
                let mut endpoints =
                    [
                        Endpoint::new(VcpuId(0), requests.ring(), replies.ring(), &reply_bell)
                            .unwrap(),
                    ];
                let mut poller = Poller::new(&mut endpoints, 16);
                poller.run(&service_bell, serve_mapped, || {
                    running.load(Ordering::Acquire)
                });
            });
            let mut client = VcpuClient::new(
                VcpuId(0),
                requests.ring(),
                replies.ring(),
                &service_bell,
                &reply_bell,
            )
            .unwrap();
            let mut i = 0u64;
            group.bench_function("ring_typed_translate", |b| {
                b.iter(|| {
                    i += 1;
                    black_box(client.translate(translate_request(i)).unwrap())
                })
            });
            running.store(false, Ordering::Release);
            service_bell.ring();
        });
    }

    // Baselines: crossbeam-channel and std mpsc sync channels, one bounded
    // channel each way.
    channel_round_trip(
        &mut group,
        "crossbeam_channel",
        [
            crossbeam_channel::bounded::<Record>(64),
            crossbeam_channel::bounded::<Record>(64),
        ],
        |tx, record| tx.send(record).unwrap(),
        |rx| rx.recv().unwrap(),
    );
    channel_round_trip(
        &mut group,
        "std_mpsc",
        [
            mpsc::sync_channel::<Record>(64),
            mpsc::sync_channel::<Record>(64),
        ],
        |tx, record| tx.send(record).unwrap(),
        |rx| rx.recv().unwrap(),
    );
    group.finish();
}

/// Times `name`'s round trip through two channels: a record sent on the
/// first comes back on the second from a thread on CPU 1 that echoes each
/// one (`send`, `recv`: the channel type's own calls); dropping the first
/// sender ends the thread.
fn channel_round_trip<S: Send, R: Send + IntoIterator<Item = Record>>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    [(req_tx, req_rx), (rep_tx, rep_rx)]: [(S, R); 2],
    send: impl Fn(&S, Record) + Sync,
    recv: impl Fn(&R) -> Record,
) {
    let send = &send;
    thread::scope(|s| {
        s.spawn(move || {
            pin(1);
            for record in req_rx {
                send(&rep_tx, record);
            }
        });
        let record = sample_record(1);
        group.bench_function(name, |b| {
            b.iter(|| {
                send(&req_tx, record);
                black_box(recv(&rep_rx))
            })
        });
        drop(req_tx);
    });
}

const THROUGHPUT_RING: usize = 256;

/// Moves `count` records through a ring, published in batches of `batch`
/// with one doorbell ring each; returns the time until the consumer has
/// them all.
fn ring_transfer(count: u64, batch: usize) -> Duration {
    let buffer = RingBuffer::<THROUGHPUT_RING>::new();
    let bell = HostDoorbell::default();
    let records: Vec<Record> = (0..batch as u64).map(sample_record).collect();
    thread::scope(|s| {
        let consumer = s.spawn(|| {
            pin(1);
            let mut rx = buffer.ring().consumer().unwrap();
            let mut received = 0u64;
            while received < count {
                bell.wait_until(|| rx.has_record());
                received += rx.drain(64, |r| {
                    black_box(r.header.seq);
                }) as u64;
            }
        });
        let start = Instant::now();
        let mut tx = buffer.ring().producer().unwrap();
        let mut sent = 0u64;
        while sent < count {
            let want = batch.min((count - sent) as usize);
            let n = tx.push_batch(&records[..want]);
            if n > 0 {
                bell.ring();
                sent += n as u64;
            } else {
                std::hint::spin_loop();
            }
        }
        consumer.join().unwrap();
        start.elapsed()
    })
}

/// Moves `count` records through a bounded crossbeam channel of the ring's
/// capacity, one `send` each; returns the time until the consumer has them.
fn crossbeam_transfer(count: u64) -> Duration {
    let (tx, rx) = crossbeam_channel::bounded::<Record>(THROUGHPUT_RING);
    channel_transfer(count, tx, |tx, r| tx.send(r).unwrap(), rx)
}

/// The same through std's bounded `sync_channel`.
fn mpsc_transfer(count: u64) -> Duration {
    let (tx, rx) = mpsc::sync_channel::<Record>(THROUGHPUT_RING);
    channel_transfer(count, tx, |tx, r| tx.send(r).unwrap(), rx)
}

/// Sends `count` records with `send` on `tx` while another core drains
/// `rx`; dropping `tx` ends the consumer. Returns the time until it has
/// them all.
fn channel_transfer<T, R>(count: u64, tx: T, send: impl Fn(&T, Record), rx: R) -> Duration
where
    R: IntoIterator<Item = Record> + Send,
{
    let record = sample_record(1);
    thread::scope(|s| {
        let consumer = s.spawn(move || {
            pin(1);
            for r in rx {
                black_box(r.header.seq);
            }
        });
        let start = Instant::now();
        for _ in 0..count {
            send(&tx, record);
        }
        drop(tx);
        consumer.join().unwrap();
        start.elapsed()
    })
}

/// Throughput ratios to crossbeam-channel measured in alternating chunks
/// (crossbeam, ring batch 8, ring batch 64, crossbeam, ...), for the same
/// reason as `paired_ratios`.
fn paired_throughput() {
    const CHUNK: u64 = 200_000;
    const ROUNDS: usize = 9;
    let rounds: Vec<[f64; 3]> = (0..ROUNDS)
        .map(|_| {
            let crossbeam = crossbeam_transfer(CHUNK).as_nanos() as f64;
            let batch8 = ring_transfer(CHUNK, 8).as_nanos() as f64;
            let batch64 = ring_transfer(CHUNK, 64).as_nanos() as f64;
            [crossbeam, batch8, batch64]
        })
        .collect();
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let per_record = |i: usize| median(rounds.iter().map(|r| r[i] / CHUNK as f64).collect());
    let speedup = |i: usize| median(rounds.iter().map(|r| r[0] / r[i]).collect());
    println!(
        "ipc_throughput/paired (median of {ROUNDS} interleaved rounds): crossbeam {:.1} ns/record, \
         ring_batch_8 {:.1} ns ({:.2}x), ring_batch_64 {:.1} ns ({:.2}x)",
        per_record(0),
        per_record(1),
        speedup(1),
        per_record(2),
        speedup(2),
    );
}

fn throughput(c: &mut Criterion) {
    pin(0);
    paired_throughput();
    let mut group = c.benchmark_group("ipc_throughput");
    group.throughput(Throughput::Elements(1));
    for batch in [1usize, 8, 64] {
        group.bench_function(format!("ring_batch_{batch}"), |b| {
            b.iter_custom(|iters| ring_transfer(iters, batch))
        });
    }
    group.bench_function("crossbeam_channel", |b| b.iter_custom(crossbeam_transfer));
    group.bench_function("std_mpsc", |b| b.iter_custom(mpsc_transfer));
    group.finish();
}

criterion_group!(benches, round_trip, throughput);
criterion_main!(benches);
