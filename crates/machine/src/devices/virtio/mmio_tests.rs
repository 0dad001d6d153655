use super::*;
use crate::devices::virtio::testutil::*;

/// A device with two queues that returns every chain it is given, with 3 written.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Echo {
    resets: u32,
    notified: Vec<usize>,
}

impl VirtioDevice for Echo {
    const DEVICE_ID: u32 = 42;
    const NUM_QUEUES: usize = 2;
    fn features(&self) -> u64 {
        1 << 3
    }
    fn config(&self) -> Vec<u8> {
        vec![1, 2, 3, 4, 5, 6, 7, 8, 9]
    }
    fn notify(&mut self, queue: usize, t: &mut Transport, ram: &mut Ram) {
        self.notified.push(queue);
        while let Some(c) = t.pop(queue, ram) {
            t.push(queue, ram, c.head, 3);
        }
    }
    fn reset(&mut self) {
        self.resets += 1;
    }
}

fn dev() -> VirtioMmio<Echo> {
    VirtioMmio::new(Echo::default())
}

#[test]
fn identification_registers() {
    let mut d = dev();
    assert_eq!(reg_read(&mut d, 0x000), 0x7472_6976);
    assert_eq!(reg_read(&mut d, 0x004), 2);
    assert_eq!(reg_read(&mut d, 0x008), 42);
    assert_eq!(reg_read(&mut d, 0x00c), VENDOR_ID);
    assert_eq!(reg_read(&mut d, 0x0fc), 0);
    assert_eq!(reg_read(&mut d, 0x0b0), u32::MAX);
    // Unknown registers and narrow or unaligned accesses read as zero.
    assert_eq!(reg_read(&mut d, 0x0f0), 0);
    assert_eq!(d.read(0x000, 1), 0);
    assert_eq!(d.read(0x002, 4), 0);
    assert_eq!(d.read(0x1000, 4), 0);
}

#[test]
fn config_space_any_width() {
    let mut d = dev();
    assert_eq!(d.read(0x100, 1), 1);
    assert_eq!(d.read(0x101, 2), 0x0302);
    assert_eq!(d.read(0x104, 4), 0x0807_0605);
    assert_eq!(d.read(0x100, 8), 0x0807_0605_0403_0201);
    // Past the end of the configuration: zeros.
    assert_eq!(d.read(0x107, 4), 0x09_08);
    assert_eq!(d.read(0x1ff, 4), 0);
    let mut ram = ram();
    d.write(0x100, 1, 0xff, &mut ram);
    assert_eq!(d.read(0x100, 1), 1);
}

#[test]
fn feature_negotiation() {
    let mut d = dev();
    let mut ram = ram();
    reg_write(&mut d, &mut ram, 0x14, 0);
    assert_eq!(reg_read(&mut d, 0x10), (1 << 28) | (1 << 3));
    reg_write(&mut d, &mut ram, 0x14, 1);
    assert_eq!(reg_read(&mut d, 0x10), 1);
    reg_write(&mut d, &mut ram, 0x14, 2);
    assert_eq!(reg_read(&mut d, 0x10), 0);

    let s = status::ACKNOWLEDGE | status::DRIVER;
    reg_write(&mut d, &mut ram, 0x70, s);
    // Without VERSION_1, FEATURES_OK does not stick.
    reg_write(&mut d, &mut ram, 0x24, 0);
    reg_write(&mut d, &mut ram, 0x20, 1 << 3);
    reg_write(&mut d, &mut ram, 0x70, s | status::FEATURES_OK);
    assert_eq!(reg_read(&mut d, 0x70), s);
    // Nor with a feature that was not offered.
    reg_write(&mut d, &mut ram, 0x24, 1);
    reg_write(&mut d, &mut ram, 0x20, 1 | 2);
    reg_write(&mut d, &mut ram, 0x70, s | status::FEATURES_OK);
    assert_eq!(reg_read(&mut d, 0x70), s);
    reg_write(&mut d, &mut ram, 0x20, 1);
    reg_write(&mut d, &mut ram, 0x70, s | status::FEATURES_OK);
    assert_eq!(reg_read(&mut d, 0x70), s | status::FEATURES_OK);
    assert!(d.transport.negotiated(F_VERSION_1 | 1 << 3));
    assert!(!d.transport.negotiated(F_INDIRECT_DESC));
    // Features are frozen after FEATURES_OK.
    reg_write(&mut d, &mut ram, 0x24, 0);
    reg_write(&mut d, &mut ram, 0x20, 0);
    assert!(d.transport.negotiated(1 << 3));
}

#[test]
fn queue_registers() {
    let mut d = dev();
    let mut ram = ram();
    reg_write(&mut d, &mut ram, 0x30, 1);
    assert_eq!(reg_read(&mut d, 0x34), 256);
    reg_write(&mut d, &mut ram, 0x38, 300); // too big: ignored
    reg_write(&mut d, &mut ram, 0x38, 64);
    reg_write(&mut d, &mut ram, 0x80, 0x8000_1000);
    reg_write(&mut d, &mut ram, 0x84, 0x1);
    reg_write(&mut d, &mut ram, 0x90, 0x8000_2000);
    reg_write(&mut d, &mut ram, 0xa0, 0x8000_3000);
    assert_eq!(reg_read(&mut d, 0x44), 0);
    reg_write(&mut d, &mut ram, 0x44, 1);
    assert_eq!(reg_read(&mut d, 0x44), 1);
    // A ready queue's layout is fixed.
    reg_write(&mut d, &mut ram, 0x38, 8);
    reg_write(&mut d, &mut ram, 0x80, 0);
    let q = &d.transport.queues[1];
    assert_eq!(
        (q.size, q.desc, q.driver, q.device),
        (64, 0x1_8000_1000, 0x8000_2000, 0x8000_3000)
    );
    // A queue the device does not have.
    reg_write(&mut d, &mut ram, 0x30, 2);
    assert_eq!(reg_read(&mut d, 0x34), 0);
    reg_write(&mut d, &mut ram, 0x44, 1);
    assert_eq!(reg_read(&mut d, 0x44), 0);
}

#[test]
fn notify_interrupt_and_ack() {
    let mut d = dev();
    let mut ram = ram();
    let mut tq = TestQueue::new(1, 16);
    activate(
        &mut d,
        &mut ram,
        &[TestQueue::new(0, 16), TestQueue::new(1, 16)],
    );
    assert_eq!(
        d.device.notified,
        [0, 1],
        "DRIVER_OK looks at every ready queue"
    );
    assert!(!d.irq());
    let head = tq.add(&mut ram, &[rbuf(DATA, 4)]);
    kick(&mut d, &mut ram, 1);
    assert!(d.irq());
    assert_eq!(tq.used(&ram), [(u32::from(head), 3)]);
    assert_eq!(ack(&mut d, &mut ram), INT_USED_BUFFER);
    // Notifying a queue that does not exist does nothing.
    kick(&mut d, &mut ram, 7);
    assert_eq!(d.device.notified, [0, 1, 1]);
}

#[test]
fn no_processing_before_driver_ok() {
    let mut d = dev();
    let mut ram = ram();
    let mut tq = TestQueue::new(0, 4);
    tq.add(&mut ram, &[rbuf(DATA, 4)]);
    kick(&mut d, &mut ram, 0);
    assert!(d.device.notified.is_empty());
    // Activation finds the chain made available before DRIVER_OK.
    activate(&mut d, &mut ram, &[TestQueue::new(0, 4)]);
    assert_eq!(tq.used(&ram).len(), 1);
}

#[test]
fn status_zero_resets() {
    let mut d = dev();
    let mut ram = ram();
    activate(&mut d, &mut ram, &[TestQueue::new(0, 4)]);
    let mut tq = TestQueue::new(0, 4);
    tq.add(&mut ram, &[rbuf(DATA, 4)]);
    kick(&mut d, &mut ram, 0);
    assert!(d.irq());
    let resets = d.device.resets;
    reg_write(&mut d, &mut ram, 0x70, 0);
    assert_eq!(d.device.resets, resets + 1);
    assert_eq!(reg_read(&mut d, 0x70), 0);
    assert!(!d.irq());
    reg_write(&mut d, &mut ram, 0x30, 0);
    assert_eq!(reg_read(&mut d, 0x44), 0);
    assert_eq!(d.transport, Transport::new(2));
}

#[test]
fn broken_queue_needs_reset() {
    let mut d = dev();
    let mut ram = ram();
    let tq = TestQueue::new(0, 4);
    activate(&mut d, &mut ram, &[TestQueue::new(0, 4)]);
    tq.set_avail_idx(&mut ram, 100);
    kick(&mut d, &mut ram, 0);
    assert_eq!(d.errors(), 1);
    assert!(matches!(
        d.last_error(),
        Some(QueueError::AvailOverrun { .. })
    ));
    assert_ne!(reg_read(&mut d, 0x70) & status::DEVICE_NEEDS_RESET, 0);
    assert_eq!(ack(&mut d, &mut ram), INT_CONFIG);
    kick(&mut d, &mut ram, 0);
    assert_eq!(d.errors(), 1, "a broken queue stays quiet");
    // The error count survives the reset that repairs the device.
    tq.set_avail_idx(&mut ram, 0);
    activate(&mut d, &mut ram, &[TestQueue::new(0, 4)]);
    assert_eq!(reg_read(&mut d, 0x70) & status::DEVICE_NEEDS_RESET, 0);
    assert_eq!(d.errors(), 1);
}

#[test]
fn bad_chains_are_counted_and_returned() {
    let mut d = dev();
    let mut ram = ram();
    let mut tq = TestQueue::new(0, 4);
    activate(&mut d, &mut ram, &[TestQueue::new(0, 4)]);
    tq.set_desc(&mut ram, 3, DATA, 1, NEXT, 3); // loops on itself
    tq.publish(&mut ram, 3);
    let good = tq.add(&mut ram, &[rbuf(DATA, 1)]);
    kick(&mut d, &mut ram, 0);
    assert_eq!(d.errors(), 1);
    assert_eq!(tq.used(&ram), [(3, 0), (u32::from(good), 3)]);
}

#[test]
fn state_round_trips() {
    let mut d = dev();
    let mut ram = ram();
    activate(&mut d, &mut ram, &[TestQueue::new(0, 4)]);
    let bytes = postcard::to_stdvec(&d).unwrap();
    let back: VirtioMmio<Echo> = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(back, d);
}
