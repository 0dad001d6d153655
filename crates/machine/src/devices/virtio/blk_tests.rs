use super::*;
use crate::devices::virtio::testutil::*;

const HDR: u64 = DATA;
const STATUS: u64 = DATA + 0x100;
const BUF: u64 = DATA + 0x1000;

/// A block device of 64 sectors, activated with one queue of 16.
fn setup(read_only: bool) -> (VirtioBlk, Ram, TestQueue) {
    let mut d = VirtioMmio::new(Blk::new(64, read_only));
    let mut ram = ram();
    activate(&mut d, &mut ram, &[TestQueue::new(0, 16)]);
    (d, ram, TestQueue::new(0, 16))
}

/// Write a request header at HDR and the status byte's sentinel at STATUS.
fn header(ram: &mut Ram, kind: u32, sector: u64) {
    let mut h = [0u8; 16];
    h[..4].copy_from_slice(&kind.to_le_bytes());
    h[8..].copy_from_slice(&sector.to_le_bytes());
    assert!(ram.load(HDR, &h));
    assert!(ram.load(STATUS, &[0xee]));
}

/// Make a request available: header, `data` buffers, status byte; kick.
fn request(
    d: &mut VirtioBlk,
    ram: &mut Ram,
    tq: &mut TestQueue,
    kind: u32,
    sector: u64,
    data: &[Buf],
) -> u16 {
    header(ram, kind, sector);
    let mut bufs = vec![rbuf(HDR, 16)];
    bufs.extend_from_slice(data);
    bufs.push(wbuf(STATUS, 1));
    let head = tq.add(ram, &bufs);
    kick(d, ram, 0);
    head
}

fn status(ram: &Ram) -> u8 {
    read(ram, STATUS, 1)[0]
}

#[test]
fn config_and_features() {
    let (mut d, _, _) = setup(false);
    assert_eq!(reg_read(&mut d, 0x008), 2);
    assert_eq!(d.read(0x100, 8), 64);
    assert_eq!(d.read(0x108, 4), u64::from(SIZE_MAX));
    assert_eq!(d.read(0x10c, 4), u64::from(SEG_MAX));
    reg_write(&mut d, &mut ram(), 0x14, 0);
    let f = u64::from(reg_read(&mut d, 0x10));
    assert_eq!(
        f & (F_SIZE_MAX | F_SEG_MAX | F_FLUSH | F_RO),
        F_SIZE_MAX | F_SEG_MAX | F_FLUSH
    );
    let (mut d, mut ram, _) = setup(true);
    reg_write(&mut d, &mut ram, 0x14, 0);
    assert_ne!(u64::from(reg_read(&mut d, 0x10)) & F_RO, 0);
}

#[test]
fn read_goes_to_the_host_and_back() {
    let (mut d, mut ram, mut tq) = setup(false);
    // Data split over two buffers, as a scatter list.
    let head = request(
        &mut d,
        &mut ram,
        &mut tq,
        0,
        3,
        &[wbuf(BUF, 512), wbuf(BUF + 0x800, 512)],
    );
    assert!(!d.irq());
    let reqs = d.take_requests();
    assert_eq!(
        reqs,
        [BlkRequest {
            id: 0,
            kind: BlkRequestKind::Read {
                sector: 3,
                len: 1024
            }
        }]
    );
    assert!(d.take_requests().is_empty());
    assert!(tq.used(&ram).is_empty());
    let data: Vec<u8> = (0..1024).map(|i| i as u8).collect();
    assert!(d.complete(0, Ok(data.clone()), &mut ram));
    assert!(d.irq());
    assert_eq!(tq.used(&ram), [(u32::from(head), 1025)]);
    assert_eq!(status(&ram), 0);
    assert_eq!(read(&ram, BUF, 512), data[..512]);
    assert_eq!(read(&ram, BUF + 0x800, 512), data[512..]);
    // Completed once only.
    assert!(!d.complete(0, Ok(data), &mut ram));
    assert_eq!(d.device().in_flight(), 0);
}

#[test]
fn write_carries_its_data() {
    let (mut d, mut ram, mut tq) = setup(false);
    assert!(ram.load(BUF, &[0x5a; 512]));
    let head = request(&mut d, &mut ram, &mut tq, 1, 63, &[rbuf(BUF, 512)]);
    let reqs = d.take_requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        reqs[0].kind,
        BlkRequestKind::Write {
            sector: 63,
            data: vec![0x5a; 512]
        }
    );
    assert!(d.complete(reqs[0].id, Ok(Vec::new()), &mut ram));
    assert_eq!(tq.used(&ram), [(u32::from(head), 1)]);
    assert_eq!(status(&ram), 0);
}

#[test]
fn flush_and_host_errors() {
    let (mut d, mut ram, mut tq) = setup(false);
    request(&mut d, &mut ram, &mut tq, 4, 0, &[]);
    let reqs = d.take_requests();
    assert_eq!(reqs[0].kind, BlkRequestKind::Flush);
    assert!(d.complete(reqs[0].id, Err(BlkError::Io), &mut ram));
    assert_eq!(status(&ram), 1);
    request(&mut d, &mut ram, &mut tq, 4, 0, &[]);
    assert!(d.complete(1, Err(BlkError::Unsupported), &mut ram));
    assert_eq!(status(&ram), 2);
    // A read answered with the wrong number of bytes fails.
    request(&mut d, &mut ram, &mut tq, 0, 0, &[wbuf(BUF, 512)]);
    assert!(d.complete(2, Ok(vec![0; 100]), &mut ram));
    assert_eq!(status(&ram), 1);
    assert_eq!(tq.used(&ram).len(), 3);
    assert_eq!(d.errors(), 0);
}

#[test]
fn answered_without_the_host() {
    let (mut d, mut ram, mut tq) = setup(false);
    // Past the end of the disk, or wrapping around.
    request(&mut d, &mut ram, &mut tq, 0, 63, &[wbuf(BUF, 1024)]);
    assert_eq!(status(&ram), 1);
    request(&mut d, &mut ram, &mut tq, 1, u64::MAX, &[rbuf(BUF, 512)]);
    assert_eq!(status(&ram), 1);
    // GET_ID.
    let head = request(&mut d, &mut ram, &mut tq, 8, 0, &[wbuf(BUF, 20)]);
    assert_eq!(status(&ram), 0);
    assert_eq!(read(&ram, BUF, 20), b"ftvm-virtio-blk\0\0\0\0\0");
    // An unknown request type.
    request(&mut d, &mut ram, &mut tq, 99, 0, &[]);
    assert_eq!(status(&ram), 2);
    let used = tq.used(&ram);
    assert_eq!(used.len(), 4);
    assert_eq!(used[2], (u32::from(head), 21));
    assert!(d.take_requests().is_empty());
    assert_eq!(d.errors(), 0);
}

#[test]
fn read_only_disk() {
    let (mut d, mut ram, mut tq) = setup(true);
    request(&mut d, &mut ram, &mut tq, 1, 0, &[rbuf(BUF, 512)]);
    assert_eq!(status(&ram), 1);
    request(&mut d, &mut ram, &mut tq, 4, 0, &[]);
    assert_eq!(status(&ram), 0);
    assert!(d.take_requests().is_empty());
    request(&mut d, &mut ram, &mut tq, 0, 0, &[wbuf(BUF, 512)]);
    assert_eq!(d.take_requests().len(), 1);
}

#[test]
fn indirect_request_as_linux_makes_it() {
    let (mut d, mut ram, mut tq) = setup(false);
    header(&mut ram, 0, 1);
    let bufs = [
        rbuf(HDR, 16),
        wbuf(BUF, 4096),
        wbuf(BUF + 4096, 512),
        wbuf(STATUS, 1),
    ];
    let head = tq.add_indirect(&mut ram, DATA + 0x200, &bufs);
    kick(&mut d, &mut ram, 0);
    let reqs = d.take_requests();
    assert_eq!(
        reqs[0].kind,
        BlkRequestKind::Read {
            sector: 1,
            len: 4608
        }
    );
    assert!(d.complete(0, Ok(vec![7; 4608]), &mut ram));
    assert_eq!(tq.used(&ram), [(u32::from(head), 4609)]);
    assert_eq!(read(&ram, BUF + 4096, 512), [7; 512]);
}

#[test]
fn malformed_requests_are_counted() {
    let (mut d, mut ram, mut tq) = setup(false);
    // A descriptor loop.
    tq.set_desc(&mut ram, 15, HDR, 16, NEXT, 15);
    tq.publish(&mut ram, 15);
    kick(&mut d, &mut ram, 0);
    assert_eq!(d.errors(), 1);
    // No status byte.
    header(&mut ram, 0, 0);
    tq.add(&mut ram, &[rbuf(HDR, 16)]);
    kick(&mut d, &mut ram, 0);
    assert_eq!(d.errors(), 2);
    // A short header: IOERR.
    tq.add(&mut ram, &[rbuf(HDR, 8), wbuf(STATUS, 1)]);
    kick(&mut d, &mut ram, 0);
    assert_eq!((d.errors(), status(&ram)), (3, 1));
    // A transfer that is not whole sectors: IOERR.
    request(&mut d, &mut ram, &mut tq, 0, 0, &[wbuf(BUF, 100)]);
    assert_eq!((d.errors(), status(&ram)), (4, 1));
    assert_eq!(tq.used(&ram), [(15, 0), (0, 0), (1, 1), (3, 1)]);
    assert!(d.take_requests().is_empty());
    // The device still works.
    request(&mut d, &mut ram, &mut tq, 4, 0, &[]);
    assert_eq!(d.take_requests().len(), 1);
}

#[test]
fn reset_drops_requests_in_flight() {
    let (mut d, mut ram, mut tq) = setup(false);
    request(&mut d, &mut ram, &mut tq, 4, 0, &[]);
    request(&mut d, &mut ram, &mut tq, 4, 0, &[]);
    assert_eq!(d.take_requests().len(), 2);
    // The driver resets the device and sets up fresh rings.
    assert!(ram.load(tq.desc, &[0; 0x4000]));
    let mut tq = TestQueue::new(0, 16);
    activate(&mut d, &mut ram, &[TestQueue::new(0, 16)]);
    assert_eq!(d.device().in_flight(), 0);
    assert!(!d.complete(0, Ok(Vec::new()), &mut ram));
    assert!(tq.used(&ram).is_empty());
    // Ids keep counting across the reset.
    request(&mut d, &mut ram, &mut tq, 4, 0, &[]);
    assert_eq!(d.take_requests()[0].id, 2);
}

#[test]
fn state_round_trips_with_requests_in_flight() {
    let (mut d, mut ram, mut tq) = setup(false);
    let head = request(&mut d, &mut ram, &mut tq, 0, 2, &[wbuf(BUF, 512)]);
    let bytes = postcard::to_stdvec(&d).unwrap();
    let mut back: VirtioBlk = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(back, d);
    assert_eq!(back.take_requests().len(), 1);
    assert!(back.complete(0, Ok(vec![1; 512]), &mut ram));
    assert_eq!(tq.used(&ram), [(u32::from(head), 513)]);
}

proptest::proptest! {
    /// Descriptor tables and rings built from pieces that make valid requests as often
    /// as broken ones, kicked and completed: no panic, and each kick starts at most a
    /// queue's worth of requests.
    #[test]
    fn arbitrary_guest_input_is_safe(
        descs in proptest::collection::vec((0usize..6, 0usize..6, 0u16..8, 0u16..20), 16),
        headers in proptest::collection::vec((0u32..10, 0u64..80), 2),
        avail in proptest::collection::vec(0u16..20, 16),
        avail_idx in 0u16..20,
        answers in proptest::collection::vec(proptest::option::of(0usize..0x800), 1..20),
    ) {
        let (mut d, mut ram, tq) = setup(false);
        let end = crate::devices::layout::RAM_BASE + RAM_SIZE;
        let table = DATA + 0x800;
        let addrs = [HDR, HDR + 0x40, BUF, STATUS, table, end - 0x100];
        let lens = [1, 16, 512, 1024, 32, 0x2001];
        for (i, &(a, l, flags, next)) in descs.iter().enumerate() {
            let (addr, len) = (addrs[a], lens[l]);
            tq.set_desc(&mut ram, i as u16, addr, len, flags, next);
            write_desc(&mut ram, table + 16 * i as u64, addr, len, flags, next % 4);
        }
        for (i, &(kind, sector)) in headers.iter().enumerate() {
            let mut h = [0u8; 16];
            h[..4].copy_from_slice(&kind.to_le_bytes());
            h[8..].copy_from_slice(&sector.to_le_bytes());
            assert!(ram.load(HDR + 0x40 * i as u64, &h));
        }
        for (i, &head) in avail.iter().enumerate() {
            assert!(ram.load(tq.avail + 4 + 2 * i as u64, &head.to_le_bytes()));
        }
        tq.set_avail_idx(&mut ram, avail_idx);
        for _ in 0..2 {
            kick(&mut d, &mut ram, 0);
            let reqs = d.take_requests();
            proptest::prop_assert!(reqs.len() <= 16);
            for (r, a) in reqs.iter().zip(answers.iter().cycle()) {
                let result = match (&r.kind, a) {
                    (BlkRequestKind::Read { len, .. }, Some(0)) => Ok(vec![0xab; *len as usize]),
                    (_, Some(n)) => Ok(vec![0xab; *n]),
                    (_, None) => Err(BlkError::Io),
                };
                proptest::prop_assert!(d.complete(r.id, result, &mut ram));
            }
        }
        proptest::prop_assert_eq!(d.device().in_flight(), 0);
    }
}
