//! The switch's re-delivery at go-live, without the duplicates (issue 11 item 6).
//!
//! When the primary's port closes, the switch hands the frames it wrote there in the
//! last moments (perhaps never read) to whichever port claims the guest's MAC next
//! (`ftvm_switch`, "orphans"): the new primary. Most of them the old primary did read,
//! log and have acknowledged, so the guest on the backup already took them during the
//! replay. Delivered again, each costs the guest a trip through its network stack and a
//! duplicate ACK, and together they delay the one new request behind them by tens of
//! milliseconds. [`Replayed`] remembers the last frames the replay delivered; after
//! go-live [`SkipReplayed`] drops one network frame for each identical frame it holds,
//! for a short while.
//!
//! Dropping a frame the guest already received byte for byte is what a network may do
//! to a duplicate (Ethernet promises no delivery); the replies the guest made to the
//! first copy leave with go-live's re-sent outputs. A frame only the old primary read
//! (never logged) is not remembered, so it reaches the guest.

use ftvm_machine::Event;
use ftvm_world::mio::{Registry, Token};
use ftvm_world::Net;
use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

/// Frames remembered: the switch re-delivers at most 256 per MAC (`ORPHAN_FRAMES`).
const REMEMBERED: usize = 256;
/// How long after go-live re-delivered frames are looked for: the switch sends them
/// when the new port claims the MAC, before go-live's first run.
const WINDOW: Duration = Duration::from_millis(500);

/// The last network frames the replay delivered to the guest.
#[derive(Default)]
pub struct Replayed {
    frames: VecDeque<Vec<u8>>,
}

impl Replayed {
    /// The replay delivered `event` to the guest.
    pub fn delivered(&mut self, event: &Event) {
        if let Event::NetFrame(frame) = event {
            if self.frames.len() == REMEMBERED {
                self.frames.pop_front();
            }
            self.frames.push_back(frame.clone());
        }
    }

    /// How many frames are remembered.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether no frame is remembered.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
}

/// A network backend that drops, once each, frames identical to ones the replay
/// delivered, until [`WINDOW`] after it was made (go-live).
pub struct SkipReplayed {
    inner: Box<dyn Net>,
    replayed: Vec<Vec<u8>>,
    until: Instant,
    skipped: usize,
}

impl SkipReplayed {
    /// Wrap `inner` (the new primary's network) from `now` on.
    pub fn new(inner: Box<dyn Net>, replayed: Replayed, now: Instant) -> SkipReplayed {
        SkipReplayed {
            inner,
            replayed: replayed.frames.into(),
            until: now + WINDOW,
            skipped: 0,
        }
    }

    /// Frames dropped so far.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    fn replayed_before(&mut self, frame: &[u8]) -> bool {
        match self.replayed.iter().position(|f| f == frame) {
            Some(i) => {
                self.replayed.swap_remove(i);
                self.skipped += 1;
                true
            }
            None => false,
        }
    }
}

impl Net for SkipReplayed {
    fn send(&mut self, frame: &[u8]) {
        self.inner.send(frame)
    }

    fn recv(&mut self, now: Instant) -> Vec<Vec<u8>> {
        let mut frames = self.inner.recv(now);
        if now >= self.until && !self.replayed.is_empty() {
            if self.skipped > 0 {
                tracing::debug!(
                    skipped = self.skipped,
                    "re-delivered frames the replay had delivered, dropped"
                );
            }
            self.replayed = Vec::new();
        }
        if !self.replayed.is_empty() {
            frames.retain(|f| !self.replayed_before(f));
        }
        frames
    }

    fn timer(&mut self, now: Instant) -> Option<Duration> {
        self.inner.timer(now)
    }

    fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        self.inner.register(registry, token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A network holding a fixed list of frames for the guest.
    struct Canned(Vec<Vec<u8>>);

    impl Net for Canned {
        fn send(&mut self, _: &[u8]) {}
        fn recv(&mut self, _: Instant) -> Vec<Vec<u8>> {
            std::mem::take(&mut self.0)
        }
        fn timer(&mut self, _: Instant) -> Option<Duration> {
            None
        }
        fn register(&mut self, _: &Registry, _: Token) -> io::Result<()> {
            Ok(())
        }
    }

    fn frame(b: u8) -> Vec<u8> {
        vec![b; 60]
    }

    #[test]
    fn each_replayed_frame_is_dropped_once_and_others_pass() {
        let mut replayed = Replayed::default();
        for b in [1, 2, 2] {
            replayed.delivered(&Event::NetFrame(frame(b)));
        }
        replayed.delivered(&Event::ConsoleInput(vec![1]));
        assert_eq!(replayed.len(), 3);
        let now = Instant::now();
        let net = Canned(vec![
            frame(1),
            frame(3),
            frame(2),
            frame(1),
            frame(2),
            frame(2),
        ]);
        let mut net = SkipReplayed::new(Box::new(net), replayed, now);
        // The second copies of 1 and the third of 2 were never replayed: they pass.
        assert_eq!(net.recv(now), vec![frame(3), frame(1), frame(2)]);
        assert_eq!(net.skipped(), 3);
    }

    #[test]
    fn after_the_window_nothing_is_dropped() {
        let mut replayed = Replayed::default();
        replayed.delivered(&Event::NetFrame(frame(1)));
        let now = Instant::now();
        let mut net = SkipReplayed::new(Box::new(Canned(vec![frame(1)])), replayed, now);
        assert_eq!(net.recv(now + WINDOW), vec![frame(1)]);
        assert_eq!(net.skipped(), 0);
    }

    #[test]
    fn only_the_last_frames_are_remembered() {
        let mut replayed = Replayed::default();
        for i in 0..REMEMBERED + 10 {
            replayed.delivered(&Event::NetFrame((i as u32).to_le_bytes().to_vec()));
        }
        assert_eq!(replayed.len(), REMEMBERED);
        let now = Instant::now();
        let first = 0u32.to_le_bytes().to_vec();
        let mut net = SkipReplayed::new(Box::new(Canned(vec![first.clone()])), replayed, now);
        assert_eq!(net.recv(now), vec![first]);
    }
}
