//! etcd as the arbiter (issue 13 item 4; DESIGN.md §5 "Arbiter"): the test-and-set
//! per (VM, generation) is one etcd transaction, so it is as durable and as available
//! as the etcd cluster — a majority of members decides; without one, nobody goes live.
//!
//! Each decision is a key `/ftvm/vm/VM/gen/GGGGGGGGGGGGGGGGGGGG` (the generation
//! zero-padded, so keys sort as numbers) holding the winner's name, created once:
//!
//! ```text
//! if   create_revision(gen G) == 0  and  (G == 0 or create_revision(gen G-1) > 0)
//! then put(gen G, claimant)
//! else get(gen G), get(gen G-1)
//! ```
//!
//! A key that exists names the winner (the same claimant asking again wins again); a
//! generation whose predecessor is undecided is refused, as the embedded arbiter
//! refuses it (generations are decided in order, so no stale or far-future claim).
//! Decisions are never deleted. etcd's own access control decides who may write
//! these keys; the claimant is the name the node gives.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, SortOrder, SortTarget, Txn, TxnOp,
    TxnOpResponse,
};

use crate::arbiter::{Arbiter, ArbiterFailure, Decision};

/// An etcd cluster as a node's arbiter.
pub struct EtcdArbiter {
    endpoints: Vec<String>,
    timeout: Duration,
    runtime: tokio::runtime::Runtime,
    /// The member that answered last: asked first next time.
    last_good: AtomicUsize,
}

impl std::fmt::Debug for EtcdArbiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdArbiter")
            .field("endpoints", &self.endpoints)
            .finish()
    }
}

/// Parse `etcd://HOST:PORT[,HOST:PORT...]` into endpoints.
pub fn parse_url(url: &str) -> Result<Vec<String>, String> {
    let rest = url
        .strip_prefix("etcd://")
        .ok_or_else(|| format!("'{url}' is not an etcd:// URL"))?;
    let endpoints: Vec<String> = rest
        .trim_end_matches('/')
        .split(',')
        .map(|e| e.trim().to_string())
        .collect();
    for e in &endpoints {
        let ok = e
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
        if !ok {
            return Err(format!("'{url}': '{e}' is not HOST:PORT"));
        }
    }
    Ok(endpoints)
}

fn key(vm: &str, generation: u64) -> String {
    format!("/ftvm/vm/{vm}/gen/{generation:020}")
}

fn unreachable(e: impl std::fmt::Display) -> ArbiterFailure {
    ArbiterFailure::Unreachable(e.to_string())
}

impl EtcdArbiter {
    /// An arbiter on the etcd members `endpoints` (`HOST:PORT`); each question must be
    /// answered within `timeout`.
    pub fn new(endpoints: Vec<String>, timeout: Duration) -> std::io::Result<EtcdArbiter> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        if endpoints.is_empty() {
            return Err(std::io::Error::other("no etcd endpoints"));
        }
        Ok(EtcdArbiter {
            endpoints,
            timeout,
            runtime,
            last_good: AtomicUsize::new(0),
        })
    }

    /// Run one question against the members in turn, starting with the one that
    /// answered last, each bounded by the timeout: a member that is down, cut off or
    /// without a leader costs one timeout, and the next is asked (every question is
    /// idempotent, so asking twice decides nothing twice).
    fn ask<T, F>(&self, question: impl Fn(Client) -> F) -> Result<T, ArbiterFailure>
    where
        F: std::future::Future<Output = Result<T, ArbiterFailure>>,
    {
        let n = self.endpoints.len();
        let first = self.last_good.load(Ordering::Relaxed) % n;
        let mut why = Vec::new();
        for i in (0..n).map(|k| (first + k) % n) {
            let endpoint = self.endpoints[i].clone();
            let timeout = self.timeout;
            let asked = async {
                let opts = ConnectOptions::new()
                    .with_connect_timeout(timeout)
                    .with_timeout(timeout);
                let client = Client::connect([endpoint.clone()], Some(opts))
                    .await
                    .map_err(unreachable)?;
                question(client).await
            };
            let r = self.runtime.block_on(async {
                match tokio::time::timeout(timeout, asked).await {
                    Ok(r) => r,
                    Err(_) => Err(unreachable(format!(
                        "no answer within {} ms",
                        timeout.as_millis()
                    ))),
                }
            });
            match r {
                Err(ArbiterFailure::Unreachable(w)) => why.push(format!("{endpoint}: {w}")),
                r => {
                    self.last_good.store(i, Ordering::Relaxed);
                    return r;
                }
            }
        }
        Err(ArbiterFailure::Unreachable(format!(
            "no etcd member decided (is a majority up?): {}",
            why.join("; ")
        )))
    }
}

impl Arbiter for EtcdArbiter {
    fn test_and_set(
        &self,
        vm: &str,
        generation: u64,
        claimant: &str,
    ) -> Result<Decision, ArbiterFailure> {
        let (this, before) = (
            key(vm, generation),
            generation.checked_sub(1).map(|g| key(vm, g)),
        );
        let claimant = claimant.to_string();
        let vm = vm.to_string();
        self.ask(|mut c| {
            let (this, before, claimant, vm) = (this.clone(), before.clone(), claimant.clone(), vm.clone());
            async move {
            let mut when = vec![Compare::create_revision(this.clone(), CompareOp::Equal, 0)];
            let mut or_else = vec![TxnOp::get(this.clone(), None)];
            if let Some(b) = &before {
                when.push(Compare::create_revision(b.clone(), CompareOp::Greater, 0));
                or_else.push(TxnOp::get(b.clone(), None));
            }
            let txn = Txn::new()
                .when(when)
                .and_then(vec![TxnOp::put(this.clone(), claimant.clone(), None)])
                .or_else(or_else);
            let r = c.txn(txn).await.map_err(unreachable)?;
            if r.succeeded() {
                return Ok(Decision::Won);
            }
            let mut values = r.op_responses().into_iter().map(|op| match op {
                TxnOpResponse::Get(g) => g.kvs().first().map(|kv| kv.value().to_vec()),
                _ => None,
            });
            match values.next().flatten() {
                Some(w) if w == claimant.as_bytes() => Ok(Decision::Won),
                Some(w) => Ok(Decision::Lost {
                    winner: String::from_utf8_lossy(&w).into_owned(),
                }),
                None => Err(ArbiterFailure::Refused(format!(
                    "generation {generation} of VM {vm} is out of order: generation {} has no winner yet",
                    generation.saturating_sub(1)
                ))),
            }
            }
        })
    }

    fn current(&self, vm: &str) -> Result<Option<u64>, ArbiterFailure> {
        let prefix = format!("/ftvm/vm/{vm}/gen/");
        self.ask(|mut c| {
            let prefix = prefix.clone();
            async move {
                let opts = GetOptions::new()
                    .with_prefix()
                    .with_sort(SortTarget::Key, SortOrder::Descend)
                    .with_limit(1);
                let r = c
                    .get(prefix.clone(), Some(opts))
                    .await
                    .map_err(unreachable)?;
                Ok(r.kvs().first().and_then(|kv| {
                    std::str::from_utf8(kv.key())
                        .ok()?
                        .strip_prefix(&prefix)?
                        .parse()
                        .ok()
                }))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_list_the_members() {
        assert_eq!(
            parse_url("etcd://10.0.0.1:2379,10.0.0.2:2379").unwrap(),
            vec!["10.0.0.1:2379", "10.0.0.2:2379"]
        );
        for bad in [
            "etcd://",
            "http://a:1",
            "etcd://a",
            "etcd://a:x",
            "etcd://:1",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
        assert!(key("vm0", 10) > key("vm0", 9), "keys sort as numbers");
    }
}
