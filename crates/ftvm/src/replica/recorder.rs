//! Recording: every input the driver delivers, every output it carries out, and the
//! state hash at checkpoints go into a log.

use super::{config_digest, encode_config, output_digest, Journal};
use anyhow::{Context, Result};
use ftvm_log::{Header, LogWriter};
use ftvm_machine::{BootConfig, Event, Output, OutputKind};
use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::path::PathBuf;

/// Writes a recording.
pub struct Recorder {
    log: LogWriter<BufWriter<File>>,
    every: u64,
    next_checkpoint: u64,
    path: PathBuf,
    /// Outputs logged: nothing holds them.
    ready: Vec<OutputKind>,
}

impl Recorder {
    /// Start a log at `path` for a machine built from `cfg` whose state hash is
    /// `initial`; a state hash is logged every `every` instructions.
    pub fn create(path: &Path, cfg: &BootConfig, initial: u128, every: u64) -> Result<Recorder> {
        let config = encode_config(cfg);
        let header = Header::new(
            config.clone(),
            config_digest(&config),
            initial,
            concat!("ftvm ", env!("CARGO_PKG_VERSION")),
        );
        let file = File::create(path)
            .with_context(|| format!("cannot create log '{}'", path.display()))?;
        let log =
            LogWriter::new(BufWriter::new(file), &header).context("cannot write the log header")?;
        let every = every.max(1);
        Ok(Recorder {
            log,
            every,
            next_checkpoint: every,
            path: path.to_path_buf(),
            ready: Vec::new(),
        })
    }
}

impl Journal for Recorder {
    fn event(&mut self, icount: u64, ev: &Event) -> Result<()> {
        let payload = postcard::to_stdvec(ev).expect("event encodes");
        self.log
            .event(icount, &payload)
            .context("writing the log")?;
        Ok(())
    }

    fn output(&mut self, out: Output) -> Result<()> {
        self.log
            .output(out.icount.0, &output_digest(&out))
            .context("writing the log")?;
        self.ready.push(out.kind);
        Ok(())
    }

    fn released(&mut self) -> Vec<OutputKind> {
        std::mem::take(&mut self.ready)
    }

    fn next_checkpoint(&self) -> u64 {
        self.next_checkpoint
    }

    fn checkpoint(&mut self, icount: u64, hash: u128) -> Result<()> {
        self.log
            .state_hash(icount, hash)
            .context("writing the log")?;
        self.next_checkpoint = icount.saturating_add(self.every);
        Ok(())
    }

    fn finish(self: Box<Self>, icount: u64, hash: u128) -> Result<String> {
        let this = *self;
        let bytes = this.log.bytes_written();
        let w = this.log.finish(icount, hash).context("finishing the log")?;
        let file = w
            .into_inner()
            .map_err(|e| e.into_error())
            .context("flushing the log")?;
        file.sync_all().context("syncing the log")?;
        Ok(format!(
            "recorded {icount} instructions into {} ({bytes} bytes, boot files included)",
            this.path.display()
        ))
    }
}
