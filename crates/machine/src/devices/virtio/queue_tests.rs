use super::*;
use crate::devices::layout::RAM_BASE;
use crate::devices::virtio::testutil::*;
use proptest::prelude::*;

/// The device side of a test queue.
fn device_queue(tq: &TestQueue) -> Queue {
    Queue {
        size: tq.size,
        ready: true,
        desc: tq.desc,
        driver: tq.avail,
        device: tq.used,
        ..Queue::default()
    }
}

fn pop_err(q: &mut Queue, ram: &Ram) -> BadChain {
    q.pop(ram).expect("a chain").expect_err("a bad chain")
}

#[test]
fn pops_chains_in_order() {
    let mut ram = ram();
    let mut tq = TestQueue::new(0, 8);
    let mut q = device_queue(&tq);
    assert_eq!(q.pop(&ram), None);
    let a = tq.add(
        &mut ram,
        &[rbuf(DATA, 16), rbuf(DATA + 16, 4), wbuf(DATA + 32, 1)],
    );
    let b = tq.add(&mut ram, &[wbuf(DATA + 64, 100)]);
    let c = q.pop(&ram).unwrap().unwrap();
    assert_eq!(c.head, a);
    assert_eq!(
        c.readable,
        [
            Segment {
                addr: DATA,
                len: 16
            },
            Segment {
                addr: DATA + 16,
                len: 4
            }
        ]
    );
    assert_eq!(
        c.writable,
        [Segment {
            addr: DATA + 32,
            len: 1
        }]
    );
    assert_eq!((c.readable_len(), c.writable_len()), (20, 1));
    let c = q.pop(&ram).unwrap().unwrap();
    assert_eq!((c.head, c.readable.len(), c.writable_len()), (b, 0, 100));
    assert_eq!(q.pop(&ram), None);
    // undo_pop hands the same chain out again.
    q.undo_pop();
    assert_eq!(q.pop(&ram).unwrap().unwrap().head, b);
}

#[test]
fn not_ready_or_empty_queue_pops_nothing() {
    let mut ram = ram();
    let mut tq = TestQueue::new(0, 4);
    tq.add(&mut ram, &[rbuf(DATA, 1)]);
    let mut q = device_queue(&tq);
    q.ready = false;
    assert_eq!(q.pop(&ram), None);
    q.ready = true;
    q.size = 0;
    assert_eq!(q.pop(&ram), None);
}

#[test]
fn indirect_tables() {
    let mut ram = ram();
    let mut tq = TestQueue::new(0, 4);
    let table = DATA + 0x1000;
    let head = tq.add_indirect(
        &mut ram,
        table,
        &[rbuf(DATA, 16), rbuf(DATA + 16, 512), wbuf(DATA + 600, 1)],
    );
    let mut q = device_queue(&tq);
    let c = q.pop(&ram).unwrap().unwrap();
    assert_eq!(c.head, head);
    assert_eq!(
        (c.readable.len(), c.readable_len(), c.writable_len()),
        (2, 528, 1)
    );

    // Direct descriptors followed by one indirect descriptor (§2.7.5.3.2).
    write_desc(&mut ram, table, DATA + 700, 8, WRITE, 0);
    tq.set_desc(&mut ram, 1, DATA, 4, NEXT, 2);
    tq.set_desc(&mut ram, 2, table, 16, INDIRECT, 0);
    tq.publish(&mut ram, 1);
    let c = q.pop(&ram).unwrap().unwrap();
    assert_eq!((c.head, c.readable_len(), c.writable_len()), (1, 4, 8));
}

#[test]
fn malformed_chains_are_errors() {
    let mut ram = ram();
    let mut tq = TestQueue::new(0, 4);
    let mut q = device_queue(&tq);
    let table = DATA + 0x1000;
    let end = RAM_BASE + RAM_SIZE;
    type Setup = Box<dyn Fn(&TestQueue, &mut Ram)>;
    let cases: Vec<(Setup, QueueError)> = vec![
        // A loop: 0 -> 1 -> 0.
        (
            Box::new(|tq, ram| {
                tq.set_desc(ram, 0, DATA, 1, NEXT, 1);
                tq.set_desc(ram, 1, DATA, 1, NEXT, 0);
            }),
            QueueError::ChainTooLong(4),
        ),
        (
            Box::new(|tq, ram| tq.set_desc(ram, 0, DATA, 1, NEXT, 9)),
            QueueError::IndexOutOfRange { index: 9, size: 4 },
        ),
        (
            Box::new(move |tq, ram| tq.set_desc(ram, 0, end - 1, 2, 0, 0)),
            QueueError::OutsideRam {
                addr: end - 1,
                len: 2,
            },
        ),
        (
            Box::new(|tq, ram| {
                tq.set_desc(ram, 0, DATA, 1, WRITE | NEXT, 1);
                tq.set_desc(ram, 1, DATA, 1, 0, 0);
            }),
            QueueError::ReadableAfterWritable,
        ),
        (
            Box::new(move |tq, ram| tq.set_desc(ram, 0, table, 16, INDIRECT | NEXT, 1)),
            QueueError::BadIndirect,
        ),
        (
            Box::new(move |tq, ram| {
                tq.set_desc(ram, 0, table, 16, INDIRECT, 0);
                write_desc(ram, table, table, 16, INDIRECT, 0);
            }),
            QueueError::BadIndirect,
        ),
        (
            Box::new(move |tq, ram| tq.set_desc(ram, 0, table, 24, INDIRECT, 0)),
            QueueError::BadIndirectTable(24),
        ),
        (
            Box::new(move |tq, ram| tq.set_desc(ram, 0, table, 16 * 257, INDIRECT, 0)),
            QueueError::BadIndirectTable(16 * 257),
        ),
        // A loop inside an indirect table.
        (
            Box::new(move |tq, ram| {
                tq.set_desc(ram, 0, table, 32, INDIRECT, 0);
                write_desc(ram, table, DATA, 1, NEXT, 1);
                write_desc(ram, table + 16, DATA, 1, NEXT, 0);
            }),
            QueueError::ChainTooLong(2),
        ),
    ];
    for (setup, error) in cases {
        setup(&tq, &mut ram);
        tq.publish(&mut ram, 0);
        let bad = pop_err(&mut q, &ram);
        assert_eq!(
            bad,
            BadChain {
                head: Some(0),
                error
            }
        );
        assert!(!q.is_broken());
    }
    // A head index past the table cannot be returned.
    tq.publish(&mut ram, 7);
    assert_eq!(pop_err(&mut q, &ram).head, None);
    assert!(!q.is_broken());
    assert_eq!(q.pop(&ram), None);
}

#[test]
fn ring_errors_break_the_queue() {
    let mut ram = ram();
    let tq = TestQueue::new(0, 4);
    let mut q = device_queue(&tq);
    tq.set_avail_idx(&mut ram, 5);
    let bad = pop_err(&mut q, &ram);
    assert_eq!(
        bad.error,
        QueueError::AvailOverrun {
            pending: 5,
            size: 4
        }
    );
    assert!(q.is_broken());
    assert_eq!(q.pop(&ram), None);

    let mut q = device_queue(&tq);
    q.driver = u64::MAX - 1;
    assert_eq!(
        pop_err(&mut q, &ram).error,
        QueueError::AvailOutsideRam(u64::MAX - 1)
    );
    let mut q = device_queue(&tq);
    q.device = 0x1000;
    assert_eq!(
        q.push(&mut ram, 0, 0),
        Err(QueueError::UsedOutsideRam(0x1000))
    );
    assert!(q.is_broken());
    assert_eq!(q.push(&mut ram, 0, 0), Ok(false));
}

#[test]
fn push_fills_the_used_ring_and_honours_no_interrupt() {
    let mut ram = ram();
    let mut tq = TestQueue::new(0, 2);
    let mut q = device_queue(&tq);
    assert_eq!(q.push(&mut ram, 1, 7), Ok(true));
    assert_eq!(q.push(&mut ram, 0, 8), Ok(true));
    assert_eq!(tq.used(&ram), [(1, 7), (0, 8)]);
    tq.set_avail_flags(&mut ram, 1);
    // The ring wraps.
    assert_eq!(q.push(&mut ram, 1, 9), Ok(false));
    assert_eq!(tq.used(&ram), [(1, 9)]);
    assert_eq!(tq.used_idx(&ram), 3);
}

#[test]
fn chain_read_and_write_span_segments() {
    let mut ram = ram();
    let chain = Chain {
        head: 0,
        readable: vec![
            Segment { addr: DATA, len: 3 },
            Segment {
                addr: DATA + 100,
                len: 0,
            },
            Segment {
                addr: DATA + 10,
                len: 5,
            },
        ],
        writable: vec![
            Segment {
                addr: DATA + 20,
                len: 2,
            },
            Segment {
                addr: DATA + 30,
                len: 4,
            },
        ],
    };
    assert!(ram.load(DATA, b"abc"));
    assert!(ram.load(DATA + 10, b"defgh"));
    let mut buf = [0; 6];
    assert!(chain.read(&ram, 1, &mut buf));
    assert_eq!(&buf, b"bcdefg");
    assert!(!chain.read(&ram, 3, &mut buf));
    assert!(chain.write(&mut ram, 1, b"WXYZ"));
    assert_eq!(read(&ram, DATA + 20, 2), b"\0W");
    assert_eq!(read(&ram, DATA + 30, 4), b"XYZ\0");
    assert!(!chain.write(&mut ram, 5, b"12"));
    assert!(chain.write(&mut ram, 6, b""));
}

#[test]
fn queue_state_round_trips() {
    let mut ram = ram();
    let mut tq = TestQueue::new(0, 8);
    let mut q = device_queue(&tq);
    tq.add(&mut ram, &[rbuf(DATA, 1)]);
    q.pop(&ram).unwrap().unwrap();
    let bytes = postcard::to_stdvec(&q).unwrap();
    let back: Queue = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(back, q);
}

proptest! {
    /// Arbitrary descriptor tables, rings and indirect tables: popping never panics,
    /// consumes at most `size` chains before the queue runs dry or breaks, and every
    /// chain it returns lies inside RAM with readable buffers first.
    #[test]
    fn arbitrary_rings_are_safe(
        size in 1u16..=16,
        descs in proptest::collection::vec(
            (0u64..0x2000, 0u32..0x1200, 0u16..8, 0u16..20), 1..20),
        avail in proptest::collection::vec(0u16..20, 0..20),
        avail_idx in any::<u16>(),
        start in any::<u16>(),
    ) {
        let mut ram = ram();
        let tq = TestQueue::new(0, size);
        // Descriptors point into the first pages of data, some straddling RAM's end
        // (addresses above RAM_SIZE - 0x1000 are shifted there) and into the table.
        let table = DATA;
        for (i, &(addr, len, flags, next)) in descs.iter().enumerate() {
            let addr = if addr >= 0x1000 { RAM_BASE + RAM_SIZE - 0x2000 + addr } else { table + addr };
            tq.set_desc(&mut ram, i as u16 % size, addr, len, flags, next);
            write_desc(&mut ram, table + 16 * i as u64, addr, len, flags, next);
        }
        for (i, &head) in avail.iter().enumerate() {
            assert!(ram.load(tq.avail + 4 + 2 * i as u64 % (2 * u64::from(size)), &head.to_le_bytes()));
        }
        tq.set_avail_idx(&mut ram, avail_idx);
        let mut q = device_queue(&tq);
        q.next_avail = start;
        let mut taken = 0u32;
        while let Some(r) = q.pop(&ram) {
            taken += 1;
            prop_assert!(taken <= u32::from(size) + 1);
            if let Ok(c) = r {
                for s in c.readable.iter().chain(&c.writable) {
                    prop_assert!(ram.offset(s.addr, u64::from(s.len)).is_some());
                }
                prop_assert!(c.readable.len() + c.writable.len() <= 2 * usize::from(MAX_QUEUE_SIZE));
                let _ = q.push(&mut ram, c.head, 0);
            }
        }
    }
}
