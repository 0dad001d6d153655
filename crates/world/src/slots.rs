//! Connection slots for a listener on an untrusted network (issue 12 item 4): at most
//! `max` connections at once, each with a thread of its own, and a deadline for the
//! handshake. A peer that connects and then says nothing, or drips a byte a second
//! (slow loris), holds its slot only until its handshake deadline; when every slot is
//! taken, a new connection evicts the oldest one still in its handshake, so a flood of
//! unauthenticated connections cannot keep a real node out (it gets the slot of the
//! oldest attacker and then `handshake` to finish). Only authenticated connections keep
//! a slot for good, and a full set of them refuses newcomers.
//!
//! Closing is `shutdown(2)` on the socket: the thread blocked on it wakes with an error
//! or an end of file and ends, dropping its [`Slot`]. One reaper thread per [`Slots`]
//! waits (on a condition variable, not a polling sleep) for the next deadline.

use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How many connections a listener serves and how long a handshake may take.
#[derive(Debug, Clone, Copy)]
pub struct SlotLimits {
    /// Connections served at once.
    pub max: usize,
    /// From accept to [`Slot::authenticated`].
    pub handshake: Duration,
}

impl Default for SlotLimits {
    fn default() -> Self {
        SlotLimits {
            max: 16,
            handshake: Duration::from_secs(5),
        }
    }
}

/// What [`Slots::admit`] did with a connection it could not seat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Every slot is held by an authenticated connection.
    Full,
}

/// One seated connection; dropping it frees the slot.
#[derive(Debug)]
pub struct Slot {
    inner: Arc<Inner>,
    id: u64,
}

/// The slots of one listener.
#[derive(Debug)]
pub struct Slots {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    limits: SlotLimits,
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    seated: Vec<Seated>,
    stopping: bool,
    /// Connections closed because their handshake ran out of time or was evicted.
    closed: u64,
}

#[derive(Debug)]
struct Seated {
    id: u64,
    since: Instant,
    sock: TcpStream,
    peer: Option<SocketAddr>,
    authenticated: bool,
    /// Shut down already (its thread has yet to notice and drop the slot).
    closing: bool,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Slots {
    /// Slots with `limits`, and their reaper thread.
    pub fn new(limits: SlotLimits) -> std::io::Result<Slots> {
        let inner = Arc::new(Inner {
            limits,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let reaper = Arc::clone(&inner);
        std::thread::Builder::new()
            .name("slot-reaper".into())
            .spawn(move || reaper.reap())?;
        Ok(Slots { inner })
    }

    /// Seat the connection `sock` just accepted: `Ok` with its slot (the caller serves
    /// it and calls [`Slot::authenticated`] once the peer proved who it is), or
    /// `Err(Refused::Full)` (the caller closes it). May evict the oldest connection
    /// still in its handshake to make room.
    pub fn admit(&self, sock: &TcpStream) -> std::io::Result<Result<Slot, Refused>> {
        let clone = sock.try_clone()?;
        let mut st = lock(&self.inner.state);
        let open = st.seated.iter().filter(|s| !s.closing).count();
        if open >= self.inner.limits.max {
            let oldest = (st.seated.iter_mut())
                .filter(|s| !s.closing && !s.authenticated)
                .min_by_key(|s| s.since);
            match oldest {
                Some(s) => {
                    tracing::warn!(peer = ?s.peer, "all connection slots taken: evicting the oldest handshake");
                    close(s);
                    st.closed += 1;
                }
                None => return Ok(Err(Refused::Full)),
            }
        }
        st.next_id += 1;
        let id = st.next_id;
        st.seated.push(Seated {
            id,
            since: Instant::now(),
            peer: clone.peer_addr().ok(),
            sock: clone,
            authenticated: false,
            closing: false,
        });
        drop(st);
        self.inner.changed.notify_all();
        Ok(Ok(Slot {
            inner: Arc::clone(&self.inner),
            id,
        }))
    }

    /// Connections seated now (including ones being closed).
    pub fn seated(&self) -> usize {
        lock(&self.inner.state).seated.len()
    }

    /// Connections closed so far for running out of handshake time or being evicted.
    pub fn closed(&self) -> u64 {
        lock(&self.inner.state).closed
    }
}

impl Drop for Slots {
    fn drop(&mut self) {
        lock(&self.inner.state).stopping = true;
        self.inner.changed.notify_all();
    }
}

impl Slot {
    /// The peer proved its identity: the handshake deadline no longer applies and the
    /// slot cannot be evicted.
    pub fn authenticated(&self) {
        let mut st = lock(&self.inner.state);
        if let Some(s) = st.seated.iter_mut().find(|s| s.id == self.id) {
            s.authenticated = true;
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        lock(&self.inner.state).seated.retain(|s| s.id != self.id);
        self.inner.changed.notify_all();
    }
}

fn close(s: &mut Seated) {
    let _ = s.sock.shutdown(Shutdown::Both);
    s.closing = true;
}

impl Inner {
    /// Close handshakes past their deadline, sleeping until the next one is due.
    fn reap(&self) {
        let mut st = lock(&self.state);
        while !st.stopping {
            let now = Instant::now();
            let mut next: Option<Instant> = None;
            let mut reaped = 0;
            for s in st
                .seated
                .iter_mut()
                .filter(|s| !s.closing && !s.authenticated)
            {
                let due = s.since + self.limits.handshake;
                if due <= now {
                    tracing::warn!(peer = ?s.peer, "handshake not done in {:?}: closing", self.limits.handshake);
                    close(s);
                    reaped += 1;
                } else {
                    next = Some(next.map_or(due, |n| n.min(due)));
                }
            }
            st.closed += reaped;
            st = match next {
                Some(due) => {
                    let wait = due.saturating_duration_since(Instant::now());
                    (self.changed.wait_timeout(st, wait))
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
                None => self.changed.wait(st).unwrap_or_else(|p| p.into_inner()),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    /// A connected pair: (what the listener accepted, the dialer's end).
    fn pair(l: &TcpListener) -> (TcpStream, TcpStream) {
        let dialer = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (accepted, _) = l.accept().unwrap();
        (accepted, dialer)
    }

    /// Whether the dialer's end sees the connection closed within a few seconds.
    fn closed(mut dialer: TcpStream) -> bool {
        dialer
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        match dialer.read(&mut [0u8; 1]) {
            Ok(n) => n == 0,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        }
    }

    #[test]
    fn a_handshake_past_its_deadline_is_closed_and_an_authenticated_one_is_not() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let slots = Slots::new(SlotLimits {
            max: 4,
            handshake: Duration::from_millis(200),
        })
        .unwrap();
        let (slow, slow_dialer) = pair(&l);
        let _slow_slot = slots.admit(&slow).unwrap().unwrap();
        let (good, mut good_dialer) = pair(&l);
        let good_slot = slots.admit(&good).unwrap().unwrap();
        good_slot.authenticated();
        let t = Instant::now();
        assert!(closed(slow_dialer));
        assert!(t.elapsed() >= Duration::from_millis(150));
        assert_eq!(slots.closed(), 1);
        // The authenticated connection stays open past the deadline.
        std::thread::sleep(Duration::from_millis(300));
        good_dialer
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let e = good_dialer.read(&mut [0u8; 1]).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "{e}");
    }

    #[test]
    fn a_full_set_evicts_the_oldest_handshake_and_refuses_only_when_all_are_authenticated() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let slots = Slots::new(SlotLimits {
            max: 2,
            handshake: Duration::from_secs(60),
        })
        .unwrap();
        let (a, a_dialer) = pair(&l);
        let a_slot = slots.admit(&a).unwrap().unwrap();
        let (b, _b_dialer) = pair(&l);
        let b_slot = slots.admit(&b).unwrap().unwrap();
        b_slot.authenticated();
        // Full: the newcomer takes the slot of the oldest handshake (a).
        let (c, _c_dialer) = pair(&l);
        let c_slot = slots.admit(&c).unwrap().unwrap();
        assert!(closed(a_dialer));
        drop(a_slot);
        assert_eq!(slots.seated(), 2);
        c_slot.authenticated();
        // Both authenticated: a newcomer is refused.
        let (d, _d_dialer) = pair(&l);
        assert_eq!(slots.admit(&d).unwrap().unwrap_err(), Refused::Full);
        // A slot freed is a slot free.
        drop(b_slot);
        assert!(slots.admit(&d).unwrap().is_ok());
    }
}
