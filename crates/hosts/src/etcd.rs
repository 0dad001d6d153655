//! Debian's etcd-server as a cluster with one member per host (issue 13 item 4): for
//! tests and demos of `--arbiter etcd://…`.

use crate::Hosts;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

/// The client port of each member.
pub const CLIENT_PORT: u16 = 2379;
const PEER_PORT: u16 = 2380;

/// An etcd cluster: member `NAME` runs on host `NAME`, its data in `DIR/NAME`.
pub struct Members {
    hosts: Hosts,
    names: Vec<String>,
    dir: PathBuf,
    running: Vec<(String, Child)>,
}

impl Members {
    /// Start a new cluster of `names` (hosts of `hosts`), data and logs under `dir`.
    pub fn start(hosts: &Hosts, names: &[&str], dir: &Path) -> io::Result<Members> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
        let mut m = Members {
            hosts: hosts.share(),
            names: names.iter().map(|s| s.to_string()).collect(),
            dir: dir.to_path_buf(),
            running: Vec::new(),
        };
        for n in names {
            m.launch(n, "new")?;
        }
        Ok(m)
    }

    /// Start `member` again (after its host died and rejoined): it catches up from its
    /// data directory and its peers.
    pub fn restart(&mut self, member: &str) -> io::Result<()> {
        self.launch(member, "existing")
    }

    /// The members' client endpoints, `HOST:PORT`.
    pub fn endpoints(&self) -> Vec<String> {
        let h = &self.hosts;
        self.names
            .iter()
            .map(|n| format!("{}:{CLIENT_PORT}", h.addr(n)))
            .collect()
    }

    /// `etcd://` with every member, for `--arbiter`.
    pub fn url(&self) -> String {
        format!("etcd://{}", self.endpoints().join(","))
    }

    fn launch(&mut self, member: &str, state: &str) -> io::Result<()> {
        let h = &self.hosts;
        let ip = h.addr(member);
        let cluster: Vec<String> = self
            .names
            .iter()
            .map(|n| format!("{n}=http://{}:{PEER_PORT}", h.addr(n)))
            .collect();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{member}.log")))?;
        let (client, peer) = (
            format!("http://{ip}:{CLIENT_PORT}"),
            format!("http://{ip}:{PEER_PORT}"),
        );
        let child = h
            .command(member, "etcd")
            .args(["--name", member, "--data-dir"])
            .arg(self.dir.join(member))
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &cluster.join(",")])
            .args(["--initial-cluster-state", state])
            // Elections in half a second (the default is a second).
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| {
                io::Error::other(format!(
                    "cannot run etcd ({e}); scripts/install-deps installs etcd-server"
                ))
            })?;
        self.running.push((member.to_string(), child));
        Ok(())
    }
}

impl Drop for Members {
    fn drop(&mut self) {
        for (_, c) in &mut self.running {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
