use super::*;
use crate::devices::virtio::testutil::*;

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const RX: u64 = DATA;
const TX: u64 = DATA + 0x1_0000;

/// A network device, activated with a receive and a transmit queue of 8.
fn setup() -> (VirtioNet, Ram, TestQueue, TestQueue) {
    let mut d = VirtioMmio::new(Net::new(MAC));
    let mut ram = ram();
    activate(
        &mut d,
        &mut ram,
        &[TestQueue::new(0, 8), TestQueue::new(1, 8)],
    );
    (d, ram, TestQueue::new(0, 8), TestQueue::new(1, 8))
}

#[test]
fn config_and_features() {
    let (mut d, mut ram, _, _) = setup();
    assert_eq!(reg_read(&mut d, 0x008), 1);
    let mac: Vec<u8> = (0..6).map(|i| d.read(0x100 + i, 1) as u8).collect();
    assert_eq!(mac, MAC);
    assert_eq!(d.read(0x106, 2), 1, "link up");
    reg_write(&mut d, &mut ram, 0x14, 0);
    assert_eq!(
        u64::from(reg_read(&mut d, 0x10)) & !(1 << 28),
        F_MAC | F_STATUS
    );
    assert_eq!(d.device().mac(), MAC);
}

#[test]
fn transmit_strips_the_header() {
    let (mut d, mut ram, _, mut txq) = setup();
    assert!(ram.load(TX, &[0xaa; 12]));
    assert!(ram.load(TX + 0x100, b"hello, "));
    assert!(ram.load(TX + 0x200, b"world"));
    let a = txq.add(
        &mut ram,
        &[rbuf(TX, 12), rbuf(TX + 0x100, 7), rbuf(TX + 0x200, 5)],
    );
    // Header and frame in one buffer, as Linux sends them.
    assert!(ram.load(TX + 0x300 + 12, b"second"));
    let b = txq.add(&mut ram, &[rbuf(TX + 0x300, 18)]);
    kick(&mut d, &mut ram, 1);
    assert_eq!(d.take_tx(), [b"hello, world".to_vec(), b"second".to_vec()]);
    assert!(d.take_tx().is_empty());
    assert_eq!(txq.used(&ram), [(u32::from(a), 0), (u32::from(b), 0)]);
    assert!(d.irq());
    // A chain shorter than the header is an error, returned unsent.
    let c = txq.add(&mut ram, &[rbuf(TX, 5)]);
    kick(&mut d, &mut ram, 1);
    assert!(d.take_tx().is_empty());
    assert_eq!(d.errors(), 1);
    assert_eq!(txq.used(&ram), [(u32::from(c), 0)]);
}

#[test]
fn receive_fills_one_buffer() {
    let (mut d, mut ram, mut rxq, _) = setup();
    let frame: Vec<u8> = (0..60).collect();
    // Before any buffer is posted: dropped.
    assert!(!d.receive(&frame, &mut ram));
    assert_eq!(d.device().rx_dropped(), 1);
    assert!(!d.irq());
    let head = rxq.add(&mut ram, &[wbuf(RX, 1526)]);
    kick(&mut d, &mut ram, 0);
    assert!(tq_empty(&mut rxq, &ram), "posting a buffer uses nothing");
    assert!(d.receive(&frame, &mut ram));
    assert!(d.irq());
    assert_eq!(rxq.used(&ram), [(u32::from(head), 72)]);
    assert_eq!(read(&ram, RX, 12), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
    assert_eq!(read(&ram, RX + 12, 60), frame);
    assert!(!d.receive(&frame, &mut ram), "the only buffer is used");
    assert_eq!(d.device().rx_dropped(), 2);
}

fn tq_empty(q: &mut TestQueue, ram: &Ram) -> bool {
    q.used(ram).is_empty()
}

#[test]
fn receive_across_segments_and_too_big() {
    let (mut d, mut ram, mut rxq, _) = setup();
    let head = rxq.add(
        &mut ram,
        &[wbuf(RX, 12), wbuf(RX + 0x100, 10), wbuf(RX + 0x200, 100)],
    );
    // Too big for the buffer: dropped, and the buffer stays posted.
    assert!(!d.receive(&[1; 200], &mut ram));
    assert!(!d.receive(&vec![1; MAX_FRAME_LEN + 1], &mut ram));
    assert_eq!(d.device().rx_dropped(), 2);
    assert!(tq_empty(&mut rxq, &ram));
    assert!(d.receive(&[9; 20], &mut ram));
    assert_eq!(rxq.used(&ram), [(u32::from(head), 32)]);
    assert_eq!(read(&ram, RX + 0x100, 10), [9; 10]);
    assert_eq!(read(&ram, RX + 0x200, 10), [9; 10]);
}

#[test]
fn receive_before_driver_ok_drops() {
    let mut d = VirtioMmio::new(Net::new(MAC));
    let mut ram = ram();
    assert!(!d.receive(&[0; 60], &mut ram));
    assert_eq!(d.device().rx_dropped(), 1);
}

#[test]
fn state_round_trips() {
    let (mut d, mut ram, _, mut txq) = setup();
    txq.add(&mut ram, &[rbuf(TX, 20)]);
    kick(&mut d, &mut ram, 1);
    let bytes = postcard::to_stdvec(&d).unwrap();
    let mut back: VirtioNet = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(back, d);
    assert_eq!(back.take_tx(), [vec![0; 8]]);
}
