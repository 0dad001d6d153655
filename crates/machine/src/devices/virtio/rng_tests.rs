use super::*;
use crate::devices::virtio::testutil::*;

fn setup() -> (VirtioRng, Ram, TestQueue) {
    let mut d = VirtioMmio::new(Rng::new());
    let mut ram = ram();
    activate(&mut d, &mut ram, &[TestQueue::new(0, 4)]);
    (d, ram, TestQueue::new(0, 4))
}

#[test]
fn entropy_comes_from_the_host() {
    let (mut d, mut ram, mut tq) = setup();
    assert_eq!(reg_read(&mut d, 0x008), 4);
    let a = tq.add(&mut ram, &[wbuf(DATA, 16), wbuf(DATA + 0x100, 16)]);
    let b = tq.add(&mut ram, &[wbuf(DATA + 0x200, 8)]);
    kick(&mut d, &mut ram, 0);
    assert_eq!(d.take_requests(), [(0, 32), (1, 8)]);
    assert!(d.take_requests().is_empty());
    assert!(!d.irq());
    // Completed out of order; fewer bytes than asked is allowed.
    assert!(d.complete(1, &[3; 4], &mut ram));
    assert!(d.complete(0, &[5; 40], &mut ram));
    assert!(!d.complete(0, &[5; 4], &mut ram));
    assert!(d.irq());
    assert_eq!(tq.used(&ram), [(u32::from(b), 4), (u32::from(a), 32)]);
    assert_eq!(read(&ram, DATA + 0x200, 8), [3, 3, 3, 3, 0, 0, 0, 0]);
    assert_eq!(read(&ram, DATA + 0x100, 16), [5; 16]);
    assert_eq!(d.device().in_flight(), 0);
}

#[test]
fn request_without_room_is_an_error() {
    let (mut d, mut ram, mut tq) = setup();
    let a = tq.add(&mut ram, &[rbuf(DATA, 16)]);
    kick(&mut d, &mut ram, 0);
    assert!(d.take_requests().is_empty());
    assert_eq!(d.errors(), 1);
    assert_eq!(tq.used(&ram), [(u32::from(a), 0)]);
}

#[test]
fn reset_and_round_trip() {
    let (mut d, mut ram, mut tq) = setup();
    tq.add(&mut ram, &[wbuf(DATA, 16)]);
    kick(&mut d, &mut ram, 0);
    let bytes = postcard::to_stdvec(&d).unwrap();
    let back: VirtioRng = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(back, d);
    reg_write(&mut d, &mut ram, 0x70, 0);
    assert_eq!(d.device().in_flight(), 0);
    assert!(d.take_requests().is_empty());
    assert!(!d.complete(0, &[1; 16], &mut ram));
}
