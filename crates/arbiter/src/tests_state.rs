//! The state file: codec round trips, corruption, crash leftovers, the lock.

use std::fs;

use proptest::prelude::*;

use crate::state::{Ledger, StateFile};
use crate::tests::{temp_dir, SECRET};
use crate::{Arbiter, ArbiterError, Corruption, Outcome, StateError, Winner, STATE_MAGIC};

fn winner(node: &str) -> Winner {
    Winner {
        node: node.into(),
        set_at_unix_ms: 1_700_000_000_000,
    }
}

fn sample() -> Ledger {
    let mut l = Ledger::default();
    l.insert("vm-b", 2, winner("n2"));
    l.insert("vm-a", 9, winner("n1"));
    l.insert("vm-a", 1, winner("n0"));
    l
}

fn corruption(e: ArbiterError) -> Corruption {
    match e {
        ArbiterError::State(StateError::Corrupt { why, .. }) => why,
        e => panic!("expected a corrupt state error, got {e}"),
    }
}

#[test]
fn encoding_is_deterministic_and_round_trips() {
    let l = sample();
    let bytes = l.encode();
    assert_eq!(&bytes[..8], STATE_MAGIC);
    assert_eq!(Ledger::decode(&bytes).unwrap(), l);
    assert_eq!(sample().encode(), bytes);
    assert_eq!(l.current("vm-a"), Some(9));
    assert_eq!(
        Ledger::decode(&Ledger::default().encode()).unwrap(),
        Ledger::default()
    );
}

#[test]
fn every_kind_of_damage_is_reported() {
    let good = sample().encode();
    let damaged = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = good.clone();
        f(&mut b);
        Ledger::decode(&b).unwrap_err()
    };
    assert!(matches!(
        damaged(&|b| b.truncate(10)),
        Corruption::Truncated { .. }
    ));
    assert!(matches!(
        damaged(&|b| b.truncate(b.len() - 1)),
        Corruption::Truncated { .. }
    ));
    assert!(matches!(
        damaged(&|b| b.clear()),
        Corruption::Truncated { len: 0, .. }
    ));
    assert!(matches!(damaged(&|b| b[0] ^= 1), Corruption::BadMagic));
    assert!(matches!(damaged(&|b| b[8] = 2), Corruption::Version(2)));
    assert!(matches!(damaged(&|b| b[15] = 0x80), Corruption::TooLong(_)));
    assert!(matches!(damaged(&|b| b.push(0)), Corruption::Trailing(1)));
    let last = good.len() - 1;
    assert!(matches!(
        damaged(&|b| b[last] ^= 0x40),
        Corruption::Crc { .. }
    ));
    assert!(matches!(damaged(&|b| b[17] ^= 1), Corruption::Crc { .. }));
}

#[test]
fn out_of_order_records_are_corrupt() {
    // Records (encoded as postcard encodes `Record`) out of order, then duplicated.
    for records in [
        [("b", 1), ("a", 1)],
        [("a", 2), ("a", 1)],
        [("a", 1), ("a", 1)],
    ] {
        let records: Vec<(String, u64, Winner)> = records
            .iter()
            .map(|(vm, g)| (vm.to_string(), *g, winner("x")))
            .collect();
        let body = postcard::to_stdvec(&records).unwrap();
        let mut bytes = STATE_MAGIC.to_vec();
        bytes.extend_from_slice(&crate::STATE_VERSION.to_le_bytes());
        bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&bytes), &body);
        bytes.extend_from_slice(&crc.to_le_bytes());
        bytes.extend_from_slice(&body);
        assert!(matches!(
            Ledger::decode(&bytes).unwrap_err(),
            Corruption::Order { .. }
        ));
    }
    // The same records in order decode.
    let mut l = Ledger::default();
    l.insert("a", 1, winner("x"));
    l.insert("b", 1, winner("x"));
    let bytes = l.encode();
    assert_eq!(Ledger::decode(&bytes).unwrap(), l);
}

#[test]
fn a_corrupt_state_file_is_refused_and_left_alone() {
    let path = temp_dir("corrupt").join("state");
    let arbiter = Arbiter::open(&path, SECRET).unwrap();
    assert_eq!(arbiter.test_and_set("vm", 0, "a").unwrap(), Outcome::Won);
    drop(arbiter);
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&path, &bytes).unwrap();
    let e = Arbiter::open(&path, SECRET).err().unwrap();
    assert!(e.to_string().contains("corrupt"), "{e}");
    assert!(matches!(corruption(e), Corruption::Crc { .. }));
    assert_eq!(
        fs::read(&path).unwrap(),
        bytes,
        "a corrupt file must not be reset"
    );

    fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    assert!(matches!(
        corruption(Arbiter::open(&path, SECRET).err().unwrap()),
        Corruption::Truncated { .. }
    ));
    fs::write(&path, b"").unwrap();
    assert!(matches!(
        corruption(Arbiter::open(&path, SECRET).err().unwrap()),
        Corruption::Truncated { .. }
    ));
}

#[test]
fn a_leftover_tmp_from_a_crash_is_ignored_and_removed() {
    let dir = temp_dir("crash");
    let path = dir.join("state");
    let arbiter = Arbiter::open(&path, SECRET).unwrap();
    assert_eq!(arbiter.test_and_set("vm", 0, "a").unwrap(), Outcome::Won);
    drop(arbiter);
    // A crash while writing the next state: a half-written .tmp, the old file intact.
    let mut next = sample();
    next.insert("vm", 1, winner("b"));
    let half = next.encode();
    fs::write(dir.join("state.tmp"), &half[..half.len() / 2]).unwrap();
    let arbiter = Arbiter::open(&path, SECRET).unwrap();
    assert!(!dir.join("state.tmp").exists());
    assert_eq!(arbiter.query("vm", 0).unwrap().node, "a");
    assert_eq!(arbiter.test_and_set("vm", 1, "b").unwrap(), Outcome::Won);
    drop(arbiter);
    // Only the state and its lock remain after a clean write.
    let mut names: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["state", "state.lock"]);
    assert_eq!(Arbiter::open(&path, SECRET).unwrap().current("vm"), Some(1));
}

#[test]
fn a_missing_file_is_an_empty_ledger_but_nothing_is_written_until_a_win() {
    let dir = temp_dir("fresh");
    let arbiter = Arbiter::open(dir.join("state"), SECRET).unwrap();
    assert_eq!(arbiter.current("vm"), None);
    assert!(!dir.join("state").exists());
    assert_eq!(arbiter.test_and_set("vm", 0, "a").unwrap(), Outcome::Won);
    assert!(dir.join("state").exists());
}

#[test]
fn two_arbiters_cannot_share_a_state_file() {
    let path = temp_dir("lock").join("state");
    let first = Arbiter::open(&path, SECRET).unwrap();
    let e = Arbiter::open(&path, SECRET).err().unwrap();
    assert!(
        matches!(e, ArbiterError::State(StateError::Locked { .. })),
        "{e}"
    );
    drop(first);
    Arbiter::open(&path, SECRET).unwrap();
    assert!(matches!(
        Arbiter::open(&path, b""),
        Err(ArbiterError::EmptySecret)
    ));
}

#[test]
fn a_failed_persist_records_nothing() {
    let dir = temp_dir("persist-fail");
    let arbiter = Arbiter::open(dir.join("state"), SECRET).unwrap();
    // A directory where the .tmp should go makes the write fail.
    fs::create_dir(dir.join("state.tmp")).unwrap();
    let e = arbiter.test_and_set("vm", 0, "a").unwrap_err();
    assert!(
        matches!(e, ArbiterError::State(StateError::Io { .. })),
        "{e}"
    );
    assert_eq!(arbiter.query("vm", 0), None);
    fs::remove_dir(dir.join("state.tmp")).unwrap();
    assert_eq!(arbiter.test_and_set("vm", 0, "b").unwrap(), Outcome::Won);
}

#[test]
fn open_reports_an_unusable_directory() {
    let dir = temp_dir("no-dir");
    let e = StateFile::open(&dir.join("missing").join("state")).unwrap_err();
    assert!(matches!(e, StateError::Io { op: "create", .. }), "{e}");
}

proptest! {
    #[test]
    fn ledger_round_trips(records in prop::collection::vec(
        ("[a-z0-9-]{1,12}", 0u64..5, "[a-z0-9]{1,8}", any::<u64>()), 0..20)
    ) {
        let mut l = Ledger::default();
        for (vm, g, node, at) in records {
            if l.get(&vm, g).is_none() {
                l.insert(&vm, g, Winner { node, set_at_unix_ms: at });
            }
        }
        prop_assert_eq!(Ledger::decode(&l.encode()).unwrap(), l);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = Ledger::decode(&bytes);
        let mut framed = STATE_MAGIC.to_vec();
        framed.extend_from_slice(&bytes);
        let _ = Ledger::decode(&framed);
    }
}
