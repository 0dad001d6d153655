//! Client loads for `ftvm demo`: the counter guest's `inc` stream; Redis driven over
//! its own protocol (RESP) with a history of INCR/SET/GET checked for linearizability
//! by stateright's `LinearizabilityTester`; PostgreSQL with unique ids inserted in
//! autocommit transactions (over its wire protocol) while Debian's `pgbench` runs. Each load keeps what the server
//! acknowledged, so the verdict can say whether anything acknowledged was lost.

use anyhow::{bail, Context, Result};
use stateright::semantics::{ConsistencyTester, LinearizabilityTester, SequentialSpec};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a load reports at the end.
pub struct Verdict {
    /// Lines for the summary (`name`, value).
    pub lines: Vec<(String, String)>,
    /// What went wrong (empty: nothing acknowledged was lost).
    pub failures: Vec<String>,
}

/// A client load against the guest's service.
pub trait Workload: Send + Sync {
    /// The service's name in messages.
    fn name(&self) -> &'static str;
    /// The guest port the service listens on.
    fn guest_port(&self) -> u16;
    /// Whether the service answers at `addr` (one request).
    fn probe(&self, addr: SocketAddr) -> bool;
    /// Start the client threads against `addr`.
    fn start(self: Arc<Self>, addr: SocketAddr) -> Vec<JoinHandle<()>>;
    /// Ask the client threads to finish.
    fn stop(&self);
    /// Operations acknowledged so far.
    fn acknowledged(&self) -> usize;
    /// The first acknowledgment that came after `t`, if any.
    fn first_ack_after(&self, t: Instant) -> Option<Instant>;
    /// Check everything the clients saw (after they stopped); `addr` for a last look.
    fn verdict(&self, addr: SocketAddr) -> Verdict;
}

/// Connect with a bounded wait and the usual socket options.
fn connect(addr: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    let c = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    c.set_nodelay(true)?;
    c.set_read_timeout(Some(timeout))?;
    Ok(c)
}

// ---------------------------------------------------------------------------------
// The counter guest: `inc` over one connection.

/// The counter guest's client: `inc` over one TCP connection, as fast as replies come.
#[derive(Default)]
pub struct Counter {
    replies: Mutex<Vec<(Instant, u64)>>,
    error: Mutex<Option<String>>,
    stop: AtomicBool,
}

fn counter_get(addr: SocketAddr) -> std::io::Result<u64> {
    let mut c = connect(addr, Duration::from_secs(2))?;
    c.write_all(b"get\n")?;
    let mut l = String::new();
    BufReader::new(c).read_line(&mut l)?;
    l.trim()
        .parse::<u64>()
        .map_err(|_| std::io::Error::other("bad reply"))
}

impl Counter {
    fn run(&self, conn: TcpStream) {
        let mut conn = conn;
        let mut r = BufReader::new(conn.try_clone().expect("clone"));
        let mut line = String::new();
        // Bounded: at most a million requests.
        for _ in 0..1_000_000 {
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            line.clear();
            let res = conn
                .write_all(b"inc\n")
                .and_then(|_| r.read_line(&mut line).map(|_| ()));
            match res.map(|_| line.trim().parse::<u64>()) {
                Ok(Ok(v)) => self.replies.lock().unwrap().push((Instant::now(), v)),
                Ok(Err(_)) => {
                    *self.error.lock().unwrap() = Some(format!("bad reply {line:?}"));
                    return;
                }
                Err(e) => {
                    *self.error.lock().unwrap() = Some(format!("the connection broke: {e}"));
                    return;
                }
            }
        }
    }
}

impl Workload for Counter {
    fn name(&self) -> &'static str {
        "counter"
    }
    fn guest_port(&self) -> u16 {
        7777
    }
    fn probe(&self, addr: SocketAddr) -> bool {
        counter_get(addr).is_ok()
    }
    fn start(self: Arc<Self>, addr: SocketAddr) -> Vec<JoinHandle<()>> {
        let me = self.clone();
        vec![std::thread::spawn(move || {
            match connect(addr, Duration::from_secs(30)) {
                Ok(c) => me.run(c),
                Err(e) => *me.error.lock().unwrap() = Some(format!("cannot connect: {e}")),
            }
        })]
    }
    fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
    fn acknowledged(&self) -> usize {
        self.replies.lock().unwrap().len()
    }
    fn first_ack_after(&self, t: Instant) -> Option<Instant> {
        let r = self.replies.lock().unwrap();
        r.iter().map(|(at, _)| *at).find(|at| *at > t)
    }
    fn verdict(&self, addr: SocketAddr) -> Verdict {
        let replies = self.replies.lock().unwrap().clone();
        let mut failures = Vec::new();
        if let Some(e) = self.error.lock().unwrap().clone() {
            failures.push(format!("client: {e}"));
        }
        let (mut lost, mut backwards) = (0u64, 0u64);
        for w in replies.windows(2) {
            if w[1].1 <= w[0].1 {
                backwards += 1;
            } else if w[1].1 != w[0].1 + 1 {
                lost += w[1].1 - w[0].1 - 1;
            }
        }
        if lost > 0 {
            failures.push(format!("{lost} increments lost"));
        }
        if backwards > 0 {
            failures.push(format!("the counter went backwards {backwards} times"));
        }
        // A fresh connection sees the last acknowledged value.
        let last = replies.last().map(|r| r.1).unwrap_or(0);
        match counter_get(addr) {
            Ok(v) if v == last => {}
            Ok(v) => failures.push(format!(
                "a new connection reads {v}, the client's last reply was {last}"
            )),
            Err(e) => failures.push(format!("a new connection failed: {e}")),
        }
        let broke = self.error.lock().unwrap().is_some();
        Verdict {
            lines: vec![
                ("requests answered".into(), replies.len().to_string()),
                (
                    "counter".into(),
                    format!("{} -> {last}", replies.first().map(|r| r.1).unwrap_or(0)),
                ),
                ("increments lost".into(), lost.to_string()),
                (
                    "counter went backwards".into(),
                    format!("{backwards} times"),
                ),
                (
                    "connection".into(),
                    if broke { "broke" } else { "survived" }.into(),
                ),
            ],
            failures,
        }
    }
}

// ---------------------------------------------------------------------------------
// Redis: RESP, a history, a linearizability check.

/// A RESP reply.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
}

/// A minimal RESP2 client over one TCP connection.
struct Resp {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl Resp {
    fn connect(addr: SocketAddr) -> std::io::Result<Resp> {
        let w = connect(addr, Duration::from_secs(30))?;
        let r = BufReader::new(w.try_clone()?);
        Ok(Resp { w, r })
    }

    fn call(&mut self, args: &[&[u8]]) -> std::io::Result<Reply> {
        let mut req = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            req.extend_from_slice(a);
            req.extend_from_slice(b"\r\n");
        }
        self.w.write_all(&req)?;
        self.read_reply()
    }

    fn line(&mut self) -> std::io::Result<String> {
        let mut l = String::new();
        if self.r.read_line(&mut l)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        Ok(l.trim_end_matches(['\r', '\n']).to_string())
    }

    fn read_reply(&mut self) -> std::io::Result<Reply> {
        let l = self.line()?;
        let bad = || std::io::Error::other(format!("bad RESP reply {l:?}"));
        let (kind, rest) = l.split_at(l.len().min(1));
        Ok(match kind {
            "+" => Reply::Simple(rest.to_string()),
            "-" => Reply::Error(rest.to_string()),
            ":" => Reply::Int(rest.parse().map_err(|_| bad())?),
            "$" => {
                let n: i64 = rest.parse().map_err(|_| bad())?;
                if n < 0 {
                    Reply::Bulk(None)
                } else {
                    let mut buf = vec![0u8; n as usize + 2];
                    self.r.read_exact(&mut buf)?;
                    buf.truncate(n as usize);
                    Reply::Bulk(Some(buf))
                }
            }
            _ => return Err(bad()),
        })
    }
}

/// One key's operations (the sequential specification the checker replays).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KeyOp {
    /// INCR: the new value.
    Incr,
    /// SET to a unique value.
    Set(u64),
    /// GET.
    Get,
}

/// What an operation returned.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KeyRet {
    /// INCR's result.
    Int(i64),
    /// SET's OK.
    Ok,
    /// GET's value (None: the key does not exist).
    Value(Option<i64>),
}

/// A Redis string key as the checker's reference object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct KeySpec(Option<i64>);

impl SequentialSpec for KeySpec {
    type Op = KeyOp;
    type Ret = KeyRet;
    fn invoke(&mut self, op: &KeyOp) -> KeyRet {
        match op {
            KeyOp::Incr => {
                let v = self.0.unwrap_or(0) + 1;
                self.0 = Some(v);
                KeyRet::Int(v)
            }
            KeyOp::Set(v) => {
                self.0 = Some(*v as i64);
                KeyRet::Ok
            }
            KeyOp::Get => KeyRet::Value(self.0),
        }
    }
}

/// One operation as a client saw it.
#[derive(Clone, Debug)]
struct Record {
    /// Client thread and connection number (a new connection is a new history thread).
    thread: (usize, u32),
    key: usize,
    op: KeyOp,
    invoked: Instant,
    /// The reply and when it came; None if none came (the op may or may not have happened).
    ret: Option<(KeyRet, Instant)>,
}

/// Redis under load: several connections doing INCR/SET/GET on a few keys.
pub struct Redis {
    clients: usize,
    keys: usize,
    /// Key names are unique to this run.
    prefix: String,
    history: Mutex<Vec<Record>>,
    errors: Mutex<Vec<String>>,
    stop: AtomicBool,
}

impl Redis {
    /// A load of `clients` connections over `keys` keys.
    pub fn new(clients: usize, keys: usize) -> Redis {
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        Redis {
            clients,
            keys,
            prefix: format!("ftvm:{nonce:x}"),
            history: Mutex::new(Vec::new()),
            errors: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        }
    }

    fn key(&self, k: usize) -> String {
        format!("{}:{k}", self.prefix)
    }

    fn run(&self, id: usize, addr: SocketAddr) {
        // A small deterministic generator per client: the load need not be random.
        let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (id as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut conn_no = 0u32;
        let mut conn = None;
        let mut seq = 0u64;
        while !self.stop.load(Ordering::Relaxed) {
            let Some(c) = connection(
                &mut conn,
                || Resp::connect(addr),
                &self.errors,
                "client",
                id,
            ) else {
                continue;
            };
            let r = next();
            let key = (r >> 8) as usize % self.keys;
            let name = self.key(key);
            seq += 1;
            let op = match r % 8 {
                0..=3 => KeyOp::Incr,
                4 | 5 => KeyOp::Get,
                _ => KeyOp::Set(((id as u64) << 40) | seq),
            };
            let invoked = Instant::now();
            let value;
            let reply = match &op {
                KeyOp::Incr => c.call(&[b"INCR", name.as_bytes()]),
                KeyOp::Get => c.call(&[b"GET", name.as_bytes()]),
                KeyOp::Set(v) => {
                    value = v.to_string();
                    c.call(&[b"SET", name.as_bytes(), value.as_bytes()])
                }
            };
            let ret = match (&op, reply) {
                (KeyOp::Incr, Ok(Reply::Int(n))) => Ok(KeyRet::Int(n)),
                (KeyOp::Set(_), Ok(Reply::Simple(s))) if s == "OK" => Ok(KeyRet::Ok),
                (KeyOp::Get, Ok(Reply::Bulk(None))) => Ok(KeyRet::Value(None)),
                (KeyOp::Get, Ok(Reply::Bulk(Some(b)))) => {
                    match std::str::from_utf8(&b).ok().and_then(|s| s.parse().ok()) {
                        Some(v) => Ok(KeyRet::Value(Some(v))),
                        None => Err(format!("GET returned {:?}", String::from_utf8_lossy(&b))),
                    }
                }
                (_, Ok(other)) => Err(format!("{op:?} returned {other:?}")),
                (_, Err(e)) => Err(format!("{op:?}: {e}")),
            };
            let thread = (id, conn_no);
            match ret {
                Ok(ret) => self.history.lock().unwrap().push(Record {
                    thread,
                    key,
                    op,
                    invoked,
                    ret: Some((ret, Instant::now())),
                }),
                Err(e) => {
                    // Unanswered: it may or may not have taken effect; a new connection
                    // is a new thread of the history.
                    self.history.lock().unwrap().push(Record {
                        thread,
                        key,
                        op,
                        invoked,
                        ret: None,
                    });
                    self.errors
                        .lock()
                        .unwrap()
                        .push(format!("client {id}: {e}"));
                    conn = None;
                    conn_no += 1;
                }
            }
        }
    }

    /// Check each key's history (linearizability is local: per key is enough).
    fn check(&self) -> Vec<String> {
        let history = self.history.lock().unwrap().clone();
        let mut bad = Vec::new();
        for key in 0..self.keys {
            let mut events: Vec<(Instant, bool, usize)> = Vec::new();
            let ops: Vec<&Record> = history.iter().filter(|r| r.key == key).collect();
            for (i, r) in ops.iter().enumerate() {
                events.push((r.invoked, false, i));
                if let Some((_, at)) = &r.ret {
                    events.push((*at, true, i));
                }
            }
            // Invocations before returns at the same instant (the weaker order).
            events.sort_by_key(|(t, ret, i)| (*t, *ret, *i));
            let mut t = LinearizabilityTester::new(KeySpec::default());
            let mut valid = true;
            for (_, is_ret, i) in events {
                let r = ops[i];
                let res = if is_ret {
                    t.on_return(r.thread, r.ret.clone().expect("has a return").0)
                        .map(|_| ())
                } else {
                    t.on_invoke(r.thread, r.op.clone()).map(|_| ())
                };
                if let Err(e) = res {
                    bad.push(format!("key {key}: invalid history: {e}"));
                    valid = false;
                    break;
                }
            }
            if valid && !t.is_consistent() {
                bad.push(format!(
                    "key {key}: the {} operations on it are not linearizable",
                    ops.len()
                ));
            }
        }
        bad
    }
}

impl Workload for Redis {
    fn name(&self) -> &'static str {
        "redis"
    }
    fn guest_port(&self) -> u16 {
        6379
    }
    fn probe(&self, addr: SocketAddr) -> bool {
        let mut c = match Resp::connect(addr) {
            Ok(c) => c,
            Err(_) => return false,
        };
        let _ = c.w.set_read_timeout(Some(Duration::from_secs(2)));
        matches!(c.call(&[b"PING"]), Ok(Reply::Simple(s)) if s == "PONG")
    }
    fn start(self: Arc<Self>, addr: SocketAddr) -> Vec<JoinHandle<()>> {
        (0..self.clients)
            .map(|id| {
                let me = self.clone();
                std::thread::spawn(move || me.run(id, addr))
            })
            .collect()
    }
    fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
    fn acknowledged(&self) -> usize {
        let h = self.history.lock().unwrap();
        h.iter().filter(|r| r.ret.is_some()).count()
    }
    fn first_ack_after(&self, t: Instant) -> Option<Instant> {
        let h = self.history.lock().unwrap();
        h.iter()
            .filter_map(|r| r.ret.as_ref().map(|(_, at)| *at))
            .filter(|at| *at > t)
            .min()
    }
    fn verdict(&self, addr: SocketAddr) -> Verdict {
        let mut failures = Vec::new();
        let errors = self.errors.lock().unwrap().clone();
        if let Some(first) = errors.first() {
            failures.push(format!("{} client errors (first: {first})", errors.len()));
        }
        // The check recurses once per operation: give it a deep stack.
        let bad = std::thread::scope(|s| {
            std::thread::Builder::new()
                .stack_size(1 << 30)
                .spawn_scoped(s, || self.check())
                .expect("spawn the checker")
                .join()
                .unwrap_or_else(|_| vec!["the checker panicked".into()])
        });
        let linearizable = bad.is_empty();
        failures.extend(bad);
        // A last look from a fresh connection: every key reads what the history says.
        if !self.probe(addr) {
            failures.push("a new connection gets no PONG".into());
        }
        let h = self.history.lock().unwrap();
        let (n, unanswered) = (h.len(), h.iter().filter(|r| r.ret.is_none()).count());
        let incrs = h
            .iter()
            .filter(|r| matches!(r.ret, Some((KeyRet::Int(_), _))))
            .count();
        Verdict {
            lines: vec![
                (
                    "operations acknowledged".into(),
                    format!(
                        "{} ({incrs} INCR) on {} connections",
                        n - unanswered,
                        self.clients
                    ),
                ),
                ("operations unanswered".into(), unanswered.to_string()),
                ("client errors".into(), errors.len().to_string()),
                (
                    "linearizable".into(),
                    if linearizable {
                        format!("yes ({} keys, stateright LinearizabilityTester)", self.keys)
                    } else {
                        "NO".into()
                    },
                ),
            ],
            failures,
        }
    }
}

// ---------------------------------------------------------------------------------
// PostgreSQL: unique ids inserted in autocommit transactions, and pgbench alongside.

/// A minimal PostgreSQL frontend (protocol 3.0, trust authentication, simple queries).
struct Pg {
    s: TcpStream,
}

impl Pg {
    fn connect(addr: SocketAddr) -> std::io::Result<Pg> {
        let mut s = connect(addr, Duration::from_secs(30))?;
        let mut body = 196_608u32.to_be_bytes().to_vec(); // protocol 3.0
        for kv in ["user", "postgres", "database", "postgres"] {
            body.extend_from_slice(kv.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut msg = ((body.len() + 4) as u32).to_be_bytes().to_vec();
        msg.extend(body);
        s.write_all(&msg)?;
        let mut pg = Pg { s };
        pg.until_ready()?;
        Ok(pg)
    }

    fn message(&mut self) -> std::io::Result<(u8, Vec<u8>)> {
        let mut head = [0u8; 5];
        self.s.read_exact(&mut head)?;
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if !(4..=1 << 24).contains(&len) {
            return Err(std::io::Error::other("bad message length"));
        }
        let mut body = vec![0u8; len - 4];
        self.s.read_exact(&mut body)?;
        Ok((head[0], body))
    }

    /// Read to ReadyForQuery; the first error's message, if the server sent one.
    fn until_ready(&mut self) -> std::io::Result<Option<String>> {
        let mut error = None;
        loop {
            let (kind, body) = self.message()?;
            match kind {
                b'Z' => return Ok(error),
                b'E' => {
                    let text = body
                        .split(|b| *b == 0)
                        .find(|f| f.first() == Some(&b'M'))
                        .map(|f| String::from_utf8_lossy(&f[1..]).into_owned());
                    error.get_or_insert(text.unwrap_or_else(|| "error".into()));
                }
                b'R' if body.get(..4) != Some(&[0, 0, 0, 0]) => {
                    return Err(std::io::Error::other("the server wants a password"));
                }
                _ => {}
            }
        }
    }

    /// Run one statement; Err(text) if the server refused it.
    fn query(&mut self, sql: &str) -> std::io::Result<Result<Vec<Vec<u8>>, String>> {
        let mut msg = vec![b'Q'];
        msg.extend_from_slice(&((sql.len() + 5) as u32).to_be_bytes());
        msg.extend_from_slice(sql.as_bytes());
        msg.push(0);
        self.s.write_all(&msg)?;
        let mut rows = Vec::new();
        let mut error = None;
        loop {
            let (kind, body) = self.message()?;
            match kind {
                b'D' if body.len() >= 6 => {
                    // One column is enough here: the first field of each row.
                    let n = i32::from_be_bytes([body[2], body[3], body[4], body[5]]);
                    rows.push(if n < 0 {
                        Vec::new()
                    } else {
                        body.get(6..6 + n as usize).unwrap_or_default().to_vec()
                    });
                }
                b'E' => {
                    let text = body
                        .split(|b| *b == 0)
                        .find(|f| f.first() == Some(&b'M'))
                        .map(|f| String::from_utf8_lossy(&f[1..]).into_owned());
                    error.get_or_insert(text.unwrap_or_else(|| "error".into()));
                }
                b'Z' => return Ok(error.map_or(Ok(rows), Err)),
                _ => {}
            }
        }
    }
}

/// PostgreSQL under load: inserters of unique ids (autocommit) and pgbench runs.
pub struct Postgres {
    inserters: usize,
    /// Acknowledged ids and when their acknowledgment came.
    acked: Mutex<Vec<(i64, Instant)>>,
    /// Ids whose INSERT got no answer (may or may not be in the table).
    unanswered: Mutex<Vec<i64>>,
    errors: Mutex<Vec<String>>,
    /// pgbench runs.
    pgbench: Mutex<Vec<PgbenchRun>>,
    stop: AtomicBool,
}

impl Postgres {
    /// A load of `inserters` connections plus pgbench.
    pub fn new(inserters: usize) -> Postgres {
        Postgres {
            inserters,
            acked: Mutex::new(Vec::new()),
            unanswered: Mutex::new(Vec::new()),
            errors: Mutex::new(Vec::new()),
            pgbench: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        }
    }

    fn setup(addr: SocketAddr) -> Result<()> {
        let mut pg = Pg::connect(addr)?;
        if let Err(e) = pg.query("CREATE TABLE IF NOT EXISTS ftvm_ids (id bigint PRIMARY KEY)")? {
            bail!("cannot create the table: {e}");
        }
        let out = std::process::Command::new("pgbench")
            .args(["-q", "-i", "-s", "1", "-h", &addr.ip().to_string()])
            .args(["-p", &addr.port().to_string(), "-U", "postgres", "postgres"])
            .output()?;
        if !out.status.success() {
            bail!(
                "pgbench -i failed: {}",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            );
        }
        Ok(())
    }

    fn insert_loop(&self, id: usize, addr: SocketAddr) {
        let mut conn: Option<Pg> = None;
        let mut n = 0i64;
        while !self.stop.load(Ordering::Relaxed) {
            let Some(c) = connection(
                &mut conn,
                || Pg::connect(addr),
                &self.errors,
                "inserter",
                id,
            ) else {
                continue;
            };
            n += 1;
            let value = ((id as i64) << 40) | n;
            match c.query(&format!("INSERT INTO ftvm_ids VALUES ({value})")) {
                Ok(Ok(_)) => self.acked.lock().unwrap().push((value, Instant::now())),
                Ok(Err(e)) => {
                    self.unanswered.lock().unwrap().push(value);
                    self.errors
                        .lock()
                        .unwrap()
                        .push(format!("inserter {id}: {e}"));
                }
                Err(e) => {
                    self.unanswered.lock().unwrap().push(value);
                    self.errors
                        .lock()
                        .unwrap()
                        .push(format!("inserter {id}: {e}"));
                    conn = None;
                }
            }
        }
    }

    /// pgbench, run after run until the load stops. Each run is a fixed number of
    /// transactions per client (`-t`), not a duration: under FT on this 2-core machine
    /// its four connections take seconds to open (a backend forked for each, the
    /// inserters running), and a `-T 3` run could end before its first transaction.
    /// A run that cannot finish within [`PGBENCH_LIMIT`] is killed and counts as failed.
    fn pgbench_loop(&self, addr: SocketAddr) {
        while !self.stop.load(Ordering::Relaxed) {
            let run = pgbench_run(addr).unwrap_or_else(|e| PgbenchRun {
                ok: false,
                transactions: 0,
                connect_ms: None,
                errors: format!("{e:#}"),
            });
            self.pgbench.lock().unwrap().push(run);
        }
    }
}

/// Transactions per pgbench client in one run of the demo's load.
const PGBENCH_TRANSACTIONS: u32 = 3;
/// Longest a pgbench run of the demo may take.
const PGBENCH_LIMIT: Duration = Duration::from_secs(120);

/// One pgbench run: how it ended, as its own report says.
#[derive(Clone, Debug)]
struct PgbenchRun {
    /// Exit status 0 and no failed transaction.
    ok: bool,
    /// "number of transactions actually processed".
    transactions: u64,
    /// "initial connection time", in ms.
    connect_ms: Option<f64>,
    /// Its error lines.
    errors: String,
}

fn pgbench_run(addr: SocketAddr) -> Result<PgbenchRun> {
    let mut child = std::process::Command::new("pgbench")
        .args([
            "-n",
            "-c",
            "4",
            "-j",
            "2",
            "-t",
            &PGBENCH_TRANSACTIONS.to_string(),
        ])
        .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .args(["-U", "postgres", "postgres"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("cannot run pgbench")?;
    let started = Instant::now();
    let killed = loop {
        if child.try_wait()?.is_some() {
            break false;
        }
        if started.elapsed() > PGBENCH_LIMIT {
            let _ = child.kill();
            break true;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let o = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    let transactions = field("number of transactions actually processed: ")
        .and_then(|v| v.split('/').next()?.trim().parse().ok())
        .unwrap_or(0);
    let connect_ms =
        field("initial connection time = ").and_then(|v| v.trim_end_matches(" ms").parse().ok());
    let failed = field("number of failed transactions: ").is_some_and(|v| !v.starts_with("0 "));
    let mut errors: Vec<String> = String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if killed {
        errors.insert(0, format!("killed after {} s", PGBENCH_LIMIT.as_secs()));
    }
    Ok(PgbenchRun {
        ok: o.status.success() && !failed && !killed,
        transactions,
        connect_ms,
        errors: errors.join("; "),
    })
}

impl Workload for Postgres {
    fn name(&self) -> &'static str {
        "postgres"
    }
    fn guest_port(&self) -> u16 {
        5432
    }
    fn probe(&self, addr: SocketAddr) -> bool {
        Pg::connect(addr)
            .and_then(|mut c| c.query("SELECT 1"))
            .is_ok_and(|r| r.is_ok())
    }
    fn start(self: Arc<Self>, addr: SocketAddr) -> Vec<JoinHandle<()>> {
        if let Err(e) = Self::setup(addr) {
            self.errors.lock().unwrap().push(format!("setup: {e}"));
        }
        let mut threads: Vec<JoinHandle<()>> = (0..self.inserters)
            .map(|id| {
                let me = self.clone();
                std::thread::spawn(move || me.insert_loop(id, addr))
            })
            .collect();
        let me = self.clone();
        threads.push(std::thread::spawn(move || me.pgbench_loop(addr)));
        threads
    }
    fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
    fn acknowledged(&self) -> usize {
        self.acked.lock().unwrap().len()
    }
    fn first_ack_after(&self, t: Instant) -> Option<Instant> {
        let a = self.acked.lock().unwrap();
        a.iter().map(|(_, at)| *at).filter(|at| *at > t).min()
    }
    fn verdict(&self, addr: SocketAddr) -> Verdict {
        let mut failures = Vec::new();
        let errors = self.errors.lock().unwrap().clone();
        if let Some(first) = errors.first() {
            failures.push(format!("{} client errors (first: {first})", errors.len()));
        }
        let acked: Vec<i64> = self.acked.lock().unwrap().iter().map(|a| a.0).collect();
        // Every acknowledged id is in the table, read over a fresh connection.
        let present = Pg::connect(addr).and_then(|mut c| c.query("SELECT id FROM ftvm_ids"));
        let lost = match present {
            Ok(Ok(rows)) => {
                let have: std::collections::BTreeSet<i64> = rows
                    .iter()
                    .filter_map(|r| std::str::from_utf8(r).ok()?.parse().ok())
                    .collect();
                let lost = acked.iter().filter(|id| !have.contains(id)).count();
                if lost > 0 {
                    failures.push(format!(
                        "{lost} acknowledged ids are missing from the table"
                    ));
                }
                lost.to_string()
            }
            Ok(Err(e)) => {
                failures.push(format!("reading the ids failed: {e}"));
                "unknown".into()
            }
            Err(e) => {
                failures.push(format!("a new connection failed: {e}"));
                "unknown".into()
            }
        };
        let runs = self.pgbench.lock().unwrap().clone();
        let bad: Vec<&PgbenchRun> = runs.iter().filter(|r| !r.ok).collect();
        if let Some(first) = bad.first() {
            failures.push(format!(
                "{} of {} pgbench runs failed (first: {})",
                bad.len(),
                runs.len(),
                first.errors
            ));
        }
        let done: Vec<&PgbenchRun> = runs.iter().filter(|r| r.ok).collect();
        if done.is_empty() {
            failures.push("no pgbench run finished: give the load more time (--after)".into());
        }
        let txns: u64 = runs.iter().map(|r| r.transactions).sum();
        let connects: Vec<f64> = runs.iter().filter_map(|r| r.connect_ms).collect();
        let connect = match connects.iter().cloned().reduce(f64::max) {
            Some(max) => format!("; connecting its 4 clients took up to {:.0} ms", max),
            None => String::new(),
        };
        Verdict {
            lines: vec![
                (
                    "ids acknowledged".into(),
                    format!("{} on {} connections", acked.len(), self.inserters),
                ),
                ("acknowledged ids lost".into(), lost),
                (
                    "inserts unanswered".into(),
                    self.unanswered.lock().unwrap().len().to_string(),
                ),
                ("client errors".into(), errors.len().to_string()),
                (
                    "pgbench".into(),
                    format!(
                        "{} runs of 4 clients x {PGBENCH_TRANSACTIONS} transactions, {} failed, {txns} transactions{connect}",
                        runs.len(),
                        bad.len()
                    ),
                ),
            ],
            failures,
        }
    }
}

/// The load for a service name.
pub fn for_service(name: &str) -> Result<Arc<dyn Workload>> {
    Ok(match name {
        "counter" => Arc::new(Counter::default()),
        "redis" => Arc::new(Redis::new(4, 16)),
        "postgres" => Arc::new(Postgres::new(2)),
        _ => bail!("unknown service '{name}' (expected counter, redis or postgres)"),
    })
}

/// The open connection in `conn`, or a new one; a failed connect is recorded in
/// `errors` (as the client saw it) and, after 100 ms, `None` to try again.
fn connection<'a, C, E: std::fmt::Display>(
    conn: &'a mut Option<C>,
    connect: impl FnOnce() -> Result<C, E>,
    errors: &Mutex<Vec<String>>,
    who: &str,
    id: usize,
) -> Option<&'a mut C> {
    if conn.is_none() {
        match connect() {
            Ok(c) => *conn = Some(c),
            Err(e) => {
                errors
                    .lock()
                    .unwrap()
                    .push(format!("{who} {id}: connect: {e}"));
                std::thread::sleep(Duration::from_millis(100));
                return None;
            }
        }
    }
    conn.as_mut()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(thread: usize, op: KeyOp, at: u64, ret: Option<(KeyRet, u64)>, t0: Instant) -> Record {
        let ms = |m| t0 + Duration::from_millis(m);
        Record {
            thread: (thread, 0),
            key: 0,
            op,
            invoked: ms(at),
            ret: ret.map(|(r, m)| (r, ms(m))),
        }
    }

    fn redis_with(history: Vec<Record>) -> Redis {
        let r = Redis::new(2, 1);
        *r.history.lock().unwrap() = history;
        r
    }

    #[test]
    fn a_lost_increment_is_not_linearizable() {
        let t0 = Instant::now();
        // INCR -> 1 acknowledged, then a later INCR also returns 1: the first was lost.
        let r = redis_with(vec![
            rec(0, KeyOp::Incr, 0, Some((KeyRet::Int(1), 1)), t0),
            rec(1, KeyOp::Incr, 2, Some((KeyRet::Int(1), 3)), t0),
        ]);
        assert_eq!(r.check().len(), 1);
    }

    #[test]
    fn a_stale_read_after_an_acknowledged_set_is_not_linearizable() {
        let t0 = Instant::now();
        let r = redis_with(vec![
            rec(0, KeyOp::Set(7), 0, Some((KeyRet::Ok, 1)), t0),
            rec(1, KeyOp::Get, 2, Some((KeyRet::Value(None), 3)), t0),
        ]);
        assert_eq!(r.check().len(), 1);
    }

    #[test]
    fn concurrent_and_unanswered_operations_may_take_effect_either_way() {
        let t0 = Instant::now();
        let r = redis_with(vec![
            // Unanswered INCR (the connection broke): it did happen, as the GET shows.
            rec(0, KeyOp::Incr, 0, None, t0),
            rec(1, KeyOp::Incr, 1, Some((KeyRet::Int(2), 5)), t0),
            rec(1, KeyOp::Get, 6, Some((KeyRet::Value(Some(2)), 7)), t0),
        ]);
        assert!(r.check().is_empty());
    }
}
