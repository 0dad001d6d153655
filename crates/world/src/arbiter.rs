//! The arbiter as a node sees it (DESIGN.md §4 "Split brain"): an atomic test-and-set
//! per (VM, generation). The embedded arbiter's client (crates/arbiter) implements it.

/// What the arbiter decided for one (VM, generation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// This claimant won: it may go live.
    Won,
    /// Another node won.
    Lost {
        /// The node that may go live.
        winner: String,
    },
}

/// Why a question got no decision.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArbiterFailure {
    /// The arbiter and this node do not share the cluster secret: asking again cannot
    /// help.
    #[error("{0}")]
    Unauthenticated(String),
    /// The arbiter refused the question (a generation out of order, a bad name): asking
    /// again cannot help.
    #[error("{0}")]
    Refused(String),
    /// The arbiter cannot be reached or did not answer: ask again later (nobody goes
    /// live without a decision).
    #[error("{0}")]
    Unreachable(String),
}

/// An arbiter: each call is one question, answered or failed on its own (a client
/// may connect for each; `test_and_set` is idempotent for the same claimant).
pub trait Arbiter: Send + Sync {
    /// Ask to make `claimant` the winner of (`vm`, `generation`).
    fn test_and_set(
        &self,
        vm: &str,
        generation: u64,
        claimant: &str,
    ) -> Result<Decision, ArbiterFailure>;
    /// The highest generation of `vm` that has a winner.
    fn current(&self, vm: &str) -> Result<Option<u64>, ArbiterFailure>;
}
