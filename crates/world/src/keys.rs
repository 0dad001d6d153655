//! A cluster's credentials (issue 12): one certificate authority per cluster and, for
//! every node, a key and a certificate that the CA signed for the node's name. The name
//! is the node's identity: its certificate's subject alternative name (a DNS name,
//! RFC 5280 §4.2.1.6) and common name. A directory holds `ca.pem` and `ca.key`, and
//! `NAME.pem` and `NAME.key` per node; keys are ECDSA P-256, created readable by their
//! owner only (mode 0600).
//!
//! # The VM a certificate is for
//! A node that runs a VM (a primary, a backup, a spare) holds a certificate that names
//! the VM too, as a second subject alternative name: the URI `urn:ftvm:vm:VM`
//! ([`VM_URI_PREFIX`]; a URI name, RFC 5280 §4.2.1.6, as SPIFFE carries workload
//! identities), at most one per certificate. The CA's signature covers it, so a node
//! cannot claim another VM: the logging channel pairs only nodes of one VM, and the
//! switch lets a port send only with its VM's MAC address. A certificate without it is a
//! cluster service's (the arbiter, the switch) and speaks for no VM. Read it from a
//! verified certificate with [`crate::tls::vm_of`].

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, DnsName};
use std::fs::OpenOptions;
use std::io::Write;
use std::ops::Range;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use time::{Duration, OffsetDateTime};

/// The CA's certificate, in a credentials directory.
pub const CA_CERT: &str = "ca.pem";
/// The CA's private key.
pub const CA_KEY: &str = "ca.key";
/// The CA's subject (the issuer of every node certificate), followed by a part of its
/// public key so that two clusters' CAs differ by name too.
const CA_NAME: &str = "ftvm cluster CA";
/// How long the CA is valid.
const CA_DAYS: i64 = 3650;
/// What a certificate's URI name starts with when it names the VM the node is for.
pub const VM_URI_PREFIX: &str = "urn:ftvm:vm:";

/// Why credentials could not be made.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// A file is there already.
    #[error("'{0}' exists already (use --force to replace it)")]
    Exists(PathBuf),
    /// `--node` without a CA.
    #[error("there is no cluster CA in '{0}': create one with `ftvm keys --dir {0} --ca`")]
    NoCa(PathBuf),
    /// A name a certificate cannot carry.
    #[error("'{0}' cannot be a node name: use letters, digits, '-' and '.' (a DNS name)")]
    BadName(String),
    /// A VM name a certificate cannot carry.
    #[error("'{0}' cannot be a VM name in a certificate: use letters, digits, '-' and '.'")]
    BadVm(String),
    /// The CA's files do not belong together.
    #[error("'{cert}' and '{key}' are not one CA's certificate and key: {why}")]
    Mismatch {
        /// The CA certificate.
        cert: PathBuf,
        /// The CA key.
        key: PathBuf,
        /// What the check said.
        why: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Making a key or a certificate failed.
    #[error("cannot make the certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeysError + '_ {
    move |source| KeysError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The paths of `name`'s certificate and key in `dir`.
pub fn node_files(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    )
}

/// Check that `name` can be a node identity: a DNS name without wildcards.
pub fn check_name(name: &str) -> Result<(), KeysError> {
    let bad = || KeysError::BadName(name.to_string());
    if name.contains('*') || name.contains('/') {
        return Err(bad());
    }
    DnsName::try_from(name).map(|_| ()).map_err(|_| bad())
}

/// Write `contents` to `path`, created with `mode`; an existing file is replaced only
/// with `force` (removed first, so that the new file gets `mode` from the start).
fn write_new(path: &Path, contents: &[u8], mode: u32, force: bool) -> Result<(), KeysError> {
    if force {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(path)(e)),
            _ => {}
        }
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => KeysError::Exists(path.to_path_buf()),
            _ => io(path)(e),
        })?;
    f.write_all(contents).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

/// Fail if any of `paths` exists (unless `force`), before anything is written.
fn none_exist(paths: &[&Path], force: bool) -> Result<(), KeysError> {
    match paths.iter().find(|p| p.exists()) {
        Some(p) if !force => Err(KeysError::Exists(p.to_path_buf())),
        _ => Ok(()),
    }
}

/// The parameters of the CA with `key`; node certificates name it as their issuer, so
/// they are the same every time (the subject and the key identifier come from the key).
fn ca_params(key: &KeyPair) -> CertificateParams {
    let mut p = CertificateParams::default();
    // An uncompressed P-256 point: 0x04, then X; eight bytes of X tell CAs apart.
    let id: String = key
        .public_key_raw()
        .iter()
        .skip(1)
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name
        .push(DnType::CommonName, format!("{CA_NAME} {id}"));
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p
}

/// From a minute ago (clocks differ a little) for `days`.
fn validity(p: &mut CertificateParams, days: i64) {
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::minutes(1);
    p.not_after = now + Duration::days(days);
}

/// Check that `vm` can be carried in a certificate (the characters of a DNS name, so
/// that the URI needs no escaping).
pub fn check_vm(vm: &str) -> Result<(), KeysError> {
    check_name(vm).map_err(|_| KeysError::BadVm(vm.to_string()))
}

/// Create the cluster CA in `dir` (created if needed): `ca.pem` and `ca.key`.
pub fn create_ca(dir: &Path, force: bool) -> Result<PathBuf, KeysError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let (cert_path, key_path) = (dir.join(CA_CERT), dir.join(CA_KEY));
    none_exist(&[&cert_path, &key_path], force)?;
    let key = KeyPair::generate()?;
    let mut params = ca_params(&key);
    validity(&mut params, CA_DAYS);
    let cert = params.self_signed(&key)?;
    write_new(&key_path, key.serialize_pem().as_bytes(), 0o600, force)?;
    write_new(&cert_path, cert.pem().as_bytes(), 0o644, force)?;
    Ok(cert_path)
}

/// Create `name`'s key and certificate in `dir`, signed by the CA there and valid for
/// `days`: a cluster service's, for no VM (see [`NodeCert`] for a VM's node).
pub fn create_node(dir: &Path, name: &str, days: u32, force: bool) -> Result<PathBuf, KeysError> {
    NodeCert::new(name).days(days).create(dir, force)
}

/// What a node certificate says: the node's name, the VM it is for (if any), and when
/// it is valid.
#[derive(Debug, Clone)]
pub struct NodeCert<'a> {
    name: &'a str,
    vm: Option<&'a str>,
    valid: Range<SystemTime>,
}

impl<'a> NodeCert<'a> {
    /// A certificate for `name`, for no VM, valid for 365 days from a minute ago.
    pub fn new(name: &'a str) -> NodeCert<'a> {
        NodeCert {
            name,
            vm: None,
            valid: SystemTime::UNIX_EPOCH..SystemTime::UNIX_EPOCH,
        }
        .days(365)
    }

    /// For a node of `vm`.
    pub fn vm(mut self, vm: Option<&'a str>) -> NodeCert<'a> {
        self.vm = vm;
        self
    }

    /// Valid from a minute ago (clocks differ a little) for `days`.
    pub fn days(self, days: u32) -> NodeCert<'a> {
        let now = SystemTime::now();
        let day = std::time::Duration::from_secs(86_400);
        self.valid(now - std::time::Duration::from_secs(60)..now + day * days)
    }

    /// Valid over `valid` (tests make expired certificates with it).
    pub fn valid(mut self, valid: Range<SystemTime>) -> NodeCert<'a> {
        self.valid = valid;
        self
    }

    /// Create the node's key and certificate in `dir` (`NAME.key`, `NAME.pem`), signed
    /// by the CA there.
    pub fn create(&self, dir: &Path, force: bool) -> Result<PathBuf, KeysError> {
        let name = self.name;
        check_name(name)?;
        if let Some(vm) = self.vm {
            check_vm(vm)?;
        }
        let (ca_cert, ca_key) = (dir.join(CA_CERT), dir.join(CA_KEY));
        if !ca_cert.exists() || !ca_key.exists() {
            return Err(KeysError::NoCa(dir.to_path_buf()));
        }
        let (cert_path, key_path) = node_files(dir, name);
        none_exist(&[&cert_path, &key_path], force)?;
        let ca_pem = std::fs::read_to_string(&ca_key).map_err(io(&ca_key))?;
        let ca = KeyPair::from_pem(&ca_pem)?;
        let issuer = Issuer::new(ca_params(&ca), ca);
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec![name.to_string()])?;
        if let Some(vm) = self.vm {
            let uri = format!("{VM_URI_PREFIX}{vm}");
            params
                .subject_alt_names
                .push(SanType::URI(uri.as_str().try_into()?));
        }
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        // Every node is a server (a primary) and a client (a backup, an arbiter's client).
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = OffsetDateTime::from(self.valid.start);
        params.not_after = OffsetDateTime::from(self.valid.end);
        let cert = params.signed_by(&key, &issuer)?;
        // The CA key must be the one of ca.pem: check the signature before writing
        // anything (at a moment the certificate is valid, so that an expired one can
        // be made on purpose).
        let mismatch = |why: String| KeysError::Mismatch {
            cert: ca_cert.clone(),
            key: ca_key.clone(),
            why,
        };
        let roots = crate::tls::roots(&ca_cert).map_err(|e| mismatch(e.to_string()))?;
        let der = CertificateDer::from(cert.der().to_vec());
        let at = self.valid.start.max(SystemTime::now()).min(self.valid.end);
        crate::tls::check_chain_at(&roots, &der, name, at).map_err(|e| mismatch(e.to_string()))?;
        write_new(&key_path, key.serialize_pem().as_bytes(), 0o600, force)?;
        write_new(&cert_path, cert.pem().as_bytes(), 0o644, force)?;
        Ok(cert_path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ftvm-keys-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_ca_and_a_node_certificate_are_made_with_private_keys() {
        let d = scratch("make");
        create_ca(&d, false).unwrap();
        create_node(&d, "node-a", 30, false).unwrap();
        assert_eq!(mode(&d.join(CA_KEY)), 0o600);
        assert_eq!(mode(&d.join("node-a.key")), 0o600);
        let roots = crate::tls::roots(&d.join(CA_CERT)).unwrap();
        let cert = crate::tls::load_chain(&d.join("node-a.pem")).unwrap();
        assert_eq!(
            crate::tls::check_chain(&roots, &cert[0], "node-a").unwrap(),
            "node-a"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn existing_files_are_kept_unless_forced() {
        let d = scratch("force");
        create_ca(&d, false).unwrap();
        create_node(&d, "b", 30, false).unwrap();
        let before = std::fs::read(d.join("b.pem")).unwrap();
        assert!(matches!(create_ca(&d, false), Err(KeysError::Exists(_))));
        assert!(matches!(
            create_node(&d, "b", 30, false),
            Err(KeysError::Exists(_))
        ));
        assert_eq!(std::fs::read(d.join("b.pem")).unwrap(), before);
        // A forced key gets mode 0600 even where the old file was readable by all.
        std::fs::set_permissions(d.join("b.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
        create_node(&d, "b", 30, true).unwrap();
        assert_ne!(std::fs::read(d.join("b.pem")).unwrap(), before);
        assert_eq!(mode(&d.join("b.key")), 0o600);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_node_needs_a_ca_and_a_dns_name() {
        let d = scratch("noca");
        std::fs::create_dir_all(&d).unwrap();
        assert!(matches!(
            create_node(&d, "a", 30, false),
            Err(KeysError::NoCa(_))
        ));
        create_ca(&d, false).unwrap();
        for bad in ["", "a b", "*.x", "../x", "a_b:1"] {
            assert!(
                matches!(create_node(&d, bad, 30, false), Err(KeysError::BadName(_))),
                "{bad}"
            );
        }
        assert!(!d.join("a b.key").exists());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_ca_key_that_is_not_the_certificates_is_refused() {
        let (d, other) = (scratch("mismatch"), scratch("mismatch-other"));
        create_ca(&d, false).unwrap();
        create_ca(&other, false).unwrap();
        std::fs::copy(other.join(CA_KEY), d.join(CA_KEY)).unwrap();
        assert!(matches!(
            create_node(&d, "a", 30, false),
            Err(KeysError::Mismatch { .. })
        ));
        assert!(!d.join("a.key").exists());
        std::fs::remove_dir_all(&d).unwrap();
        std::fs::remove_dir_all(&other).unwrap();
    }

    #[test]
    fn a_vm_node_certificate_names_its_vm_and_a_service_certificate_none() {
        let d = scratch("vm");
        create_ca(&d, false).unwrap();
        NodeCert::new("p")
            .vm(Some("web-1"))
            .create(&d, false)
            .unwrap();
        create_node(&d, "arbiter", 30, false).unwrap();
        let roots = crate::tls::roots(&d.join(CA_CERT)).unwrap();
        let p = crate::tls::load_chain(&d.join("p.pem")).unwrap();
        // The URI name leaves the node's identity as it was.
        assert_eq!(crate::tls::check_chain(&roots, &p[0], "p").unwrap(), "p");
        assert_eq!(crate::tls::vm_of(&p[0]).unwrap().as_deref(), Some("web-1"));
        let a = crate::tls::load_chain(&d.join("arbiter.pem")).unwrap();
        assert_eq!(crate::tls::vm_of(&a[0]).unwrap(), None);
        assert!(matches!(
            NodeCert::new("q").vm(Some("a b")).create(&d, false),
            Err(KeysError::BadVm(_))
        ));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn an_expired_certificate_can_be_made_and_is_refused() {
        let d = scratch("expired");
        create_ca(&d, false).unwrap();
        let day = std::time::Duration::from_secs(86_400);
        let now = SystemTime::now();
        NodeCert::new("old")
            .valid(now - day * 30..now - day)
            .create(&d, false)
            .unwrap();
        let roots = crate::tls::roots(&d.join(CA_CERT)).unwrap();
        let c = crate::tls::load_chain(&d.join("old.pem")).unwrap();
        let e = crate::tls::check_chain(&roots, &c[0], "old").unwrap_err();
        assert!(e.to_string().contains("expired"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
