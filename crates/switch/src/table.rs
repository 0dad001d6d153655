//! The learning table: which port each source MAC address was last seen on
//! (IEEE 802.1D §7.8, without ageing: ports that leave take their addresses along).

use std::collections::BTreeMap;

/// A MAC address.
pub type Mac = [u8; 6];

/// Identifies a port of the switch for its lifetime; ids are never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortId(pub u64);

/// The port of the user-mode gateway.
pub const GATEWAY: PortId = PortId(0);

/// Whether `mac` is a group (multicast or broadcast) address (IEEE 802 §8.2).
pub fn is_group(mac: &Mac) -> bool {
    mac[0] & 1 != 0
}

/// What [`MacTable::learn`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    /// The address was already on this port.
    Known,
    /// A new address.
    New,
    /// The address moved here from another port (a VM that went live elsewhere).
    Moved(PortId),
    /// Not learned: the table is full, or the address is pinned to another port.
    Refused,
}

/// MAC address → port, bounded in size.
#[derive(Debug)]
pub struct MacTable {
    map: BTreeMap<Mac, PortId>,
    pinned: BTreeMap<Mac, PortId>,
    cap: usize,
}

impl MacTable {
    /// An empty table holding at most `cap` learned addresses.
    pub fn new(cap: usize) -> Self {
        MacTable {
            map: BTreeMap::new(),
            pinned: BTreeMap::new(),
            cap,
        }
    }

    /// Fixes `mac` to `port`: frames from it on other ports are not learned.
    pub fn pin(&mut self, mac: Mac, port: PortId) {
        self.pinned.insert(mac, port);
    }

    /// Records that a frame from `mac` arrived on `port`.
    pub fn learn(&mut self, mac: Mac, port: PortId) -> Learned {
        if let Some(&p) = self.pinned.get(&mac) {
            return if p == port {
                Learned::Known
            } else {
                Learned::Refused
            };
        }
        let full = self.map.len() >= self.cap;
        match self.map.get_mut(&mac) {
            Some(p) if *p == port => Learned::Known,
            Some(p) => Learned::Moved(std::mem::replace(p, port)),
            None if full => Learned::Refused,
            None => {
                self.map.insert(mac, port);
                Learned::New
            }
        }
    }

    /// Where frames for `mac` go, if known.
    pub fn lookup(&self, mac: &Mac) -> Option<PortId> {
        self.pinned.get(mac).or_else(|| self.map.get(mac)).copied()
    }

    /// Forgets every address learned on `port`; returns how many.
    pub fn forget_port(&mut self, port: PortId) -> usize {
        let before = self.map.len();
        self.map.retain(|_, p| *p != port);
        before - self.map.len()
    }

    /// The learned addresses of `port`, in order.
    pub fn macs_of(&self, port: PortId) -> Vec<Mac> {
        self.map
            .iter()
            .filter(|(_, p)| **p == port)
            .map(|(m, _)| *m)
            .collect()
    }

    /// How many addresses were learned (pinned ones not counted).
    pub fn count(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Mac = [2, 0, 0, 0, 0, 1];
    const B: Mac = [2, 0, 0, 0, 0, 2];
    const GW: Mac = [0x52, 0x55, 10, 0, 2, 2];

    #[test]
    fn learn_move_forget() {
        let mut t = MacTable::new(8);
        assert_eq!(t.learn(A, PortId(1)), Learned::New);
        assert_eq!(t.learn(A, PortId(1)), Learned::Known);
        assert_eq!(t.learn(B, PortId(1)), Learned::New);
        assert_eq!(t.learn(A, PortId(2)), Learned::Moved(PortId(1)));
        assert_eq!(t.lookup(&A), Some(PortId(2)));
        assert_eq!(t.macs_of(PortId(1)), vec![B]);
        assert_eq!(t.forget_port(PortId(1)), 1);
        assert_eq!(t.lookup(&B), None);
        assert_eq!(t.count(), 1);
    }

    #[test]
    fn bounded_and_pinned() {
        let mut t = MacTable::new(1);
        t.pin(GW, GATEWAY);
        assert_eq!(t.learn(A, PortId(1)), Learned::New);
        assert_eq!(t.learn(B, PortId(1)), Learned::Refused);
        assert_eq!(t.learn(GW, PortId(1)), Learned::Refused);
        assert_eq!(t.learn(GW, GATEWAY), Learned::Known);
        assert_eq!(t.lookup(&GW), Some(GATEWAY));
        assert_eq!(t.forget_port(GATEWAY), 0);
        assert_eq!(t.lookup(&GW), Some(GATEWAY));
        assert!(is_group(&[0xff; 6]) && is_group(&[1, 0, 0x5e, 0, 0, 1]) && !is_group(&A));
    }
}
