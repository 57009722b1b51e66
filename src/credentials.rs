//! Key material on disk and in memory: the cluster CA (`ca.key`, `ca.pub`),
//! the join secret (`join.secret`), the operators' TOTP secret
//! (`totp.secret`), node keys (`NAME.key`) and certificates (`NAME.cert`).
//! Also [`Throwaway`], a CA in memory that issues complete node identities
//! for local clusters and tests.
//!
//! Private files are sealed (AES-256-GCM) under the directory's keyring
//! (`keyring`, see [`swarm_actors::at_rest`]) and written with mode 0600;
//! public files (`ca.pub`, certificates) are hex text.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::files::FileError;

type Result<T> = std::result::Result<T, FileError>;
pub use swarm_actors::at_rest::{create_key_file, Keyring, Unlock};
use swarm_protocol::identity::{hex, unhex};
use swarm_protocol::sealed::keyring::KdfParams;
use swarm_protocol::sealed::Kind;
use swarm_protocol::{
    CaKey, CertBody, Certificate, CipherSuite, HandshakeConfig, NodeKey, TrustStore,
    PROTOCOL_VERSION,
};

/// Default certificate lifetime.
pub const DEFAULT_DAYS: u64 = 365;

/// 32 bytes from the operating system's random source.
pub fn random32() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random source failed");
    bytes
}

/// A random certificate serial.
pub fn random_serial() -> u64 {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the OS random source failed");
    u64::from_be_bytes(bytes) >> 1
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// When a certificate is valid, Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// The first second it is valid.
    pub not_before: u64,
    /// The last second it is valid.
    pub not_after: u64,
}

impl Validity {
    /// `days` days from `not_before`, or from now (less five minutes of
    /// clock skew between machines) when it is `None`.
    pub fn days_from(not_before: Option<u64>, days: u64) -> Self {
        let start = not_before.unwrap_or_else(|| unix_now().saturating_sub(300));
        let end = not_before.unwrap_or_else(unix_now);
        Self {
            not_before: start,
            not_after: end.saturating_add(days.saturating_mul(86_400)),
        }
    }
}

/// Issues a certificate for `key`, valid for `days` days from now.
pub fn issue(
    ca: &CaKey,
    key: &NodeKey,
    name: &str,
    roles: &[String],
    days: u64,
    serial: u64,
) -> Certificate {
    issue_for(
        ca,
        key,
        name,
        roles,
        Validity::days_from(None, days),
        serial,
    )
}

/// Issues a certificate for `key` with an explicit validity window.
pub fn issue_for(
    ca: &CaKey,
    key: &NodeKey,
    name: &str,
    roles: &[String],
    validity: Validity,
    serial: u64,
) -> Certificate {
    ca.issue(CertBody {
        serial,
        node_id: key.node_id(),
        name: name.to_owned(),
        static_key: *key.public(),
        roles: roles.to_vec(),
        not_before: validity.not_before,
        not_after: validity.not_after,
        issuer: [0; 32],
    })
}

/// Parses a point in time for `--not-before`: `YYYY-MM-DD` (midnight UTC),
/// `YYYY-MM-DDTHH:MM:SSZ`, or Unix seconds. Returns Unix seconds.
///
/// # Errors
///
/// A message naming the accepted forms.
pub fn parse_time(text: &str) -> std::result::Result<u64, String> {
    let bad =
        || format!("{text:?} is not a time: use 2027-01-01, 2027-01-01T08:00:00Z or Unix seconds");
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(seconds);
    }
    let (date, time) = match text.split_once('T') {
        Some((date, time)) => (date, Some(time.strip_suffix('Z').ok_or_else(bad)?)),
        None => (text, None),
    };
    let numbers = |s: &str, sep: char| -> Option<Vec<u64>> {
        s.split(sep).map(|p| p.parse::<u64>().ok()).collect()
    };
    let ymd = numbers(date, '-').ok_or_else(bad)?;
    let [year, month, day] = ymd[..] else {
        return Err(bad());
    };
    let hms = match time {
        Some(time) => numbers(time, ':').ok_or_else(bad)?,
        None => vec![0, 0, 0],
    };
    let [hour, minute, second] = hms[..] else {
        return Err(bad());
    };
    if !(1970..=9999).contains(&year)
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return Err(bad());
    }
    let days = days_from_civil(year, month, day);
    if civil_from_days(days) != (year, month, day) {
        return Err(bad());
    }
    Ok(days * 86_400 + hour * 3_600 + minute * 60 + second)
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_time(unix: u64) -> String {
    let (year, month, day) = civil_from_days(unix / 86_400);
    let rest = unix % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3_600,
        rest % 3_600 / 60,
        rest % 60
    )
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`, for years from 1970).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01 (Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// The files of a CA directory.
#[derive(Debug, Clone)]
pub struct CaDir {
    /// The directory.
    pub dir: PathBuf,
}

impl CaDir {
    /// The CA directory at `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// Path of the CA private key.
    pub fn key_path(&self) -> PathBuf {
        self.dir.join("ca.key")
    }

    /// Path of the CA public key.
    pub fn pub_path(&self) -> PathBuf {
        self.dir.join("ca.pub")
    }

    /// Path of the join secret.
    pub fn secret_path(&self) -> PathBuf {
        self.dir.join("join.secret")
    }

    /// Path of the secret operators' TOTP seeds derive from.
    pub fn totp_path(&self) -> PathBuf {
        self.dir.join("totp.secret")
    }

    /// Path of the directory's keyring.
    pub fn keyring_path(&self) -> PathBuf {
        keyring_path(&self.dir)
    }

    /// Creates a new CA, join secret and TOTP secret, sealed under the
    /// directory's keyring (created with `unlock` if there is none).
    /// Refuses to overwrite unless `force`.
    ///
    /// # Errors
    ///
    /// If the files exist (without `force`), the keyring does not open,
    /// or a file cannot be written.
    pub fn init(&self, force: bool, unlock: &Unlock) -> Result<(CaKey, Keyring)> {
        if !force && self.key_path().exists() {
            return Err(FileError::CaExists {
                path: self.key_path(),
            });
        }
        create_dir(&self.dir)?;
        let keyring = Keyring::open_or_create(&self.keyring_path(), unlock, KdfParams::DEFAULT)?;
        let ca = CaKey::from_seed(random32());
        keyring.write_file(&self.key_path(), Kind::CaKey, &ca.seed())?;
        write_public(&self.pub_path(), "swarm CA public key", &ca.public())?;
        keyring.write_file(&self.secret_path(), Kind::JoinSecret, &random32())?;
        keyring.write_file(&self.totp_path(), Kind::TotpSecret, &random32())?;
        Ok((ca, keyring))
    }

    /// Opens the directory's keyring.
    ///
    /// # Errors
    ///
    /// If it is missing or does not open.
    pub fn keyring(&self, unlock: &Unlock) -> Result<Keyring> {
        Ok(Keyring::open(&self.keyring_path(), unlock)?)
    }

    /// Loads the CA private key.
    ///
    /// # Errors
    ///
    /// If the file is missing or does not open.
    pub fn load_key(&self, keyring: &Keyring) -> Result<CaKey> {
        Ok(CaKey::from_seed(read_secret(
            keyring,
            &self.key_path(),
            Kind::CaKey,
        )?))
    }
}

/// The keyring of a directory: `DIR/keyring`.
pub fn keyring_path(dir: &Path) -> PathBuf {
    dir.join("keyring")
}

/// Reads a sealed 32-byte secret of `kind`.
///
/// # Errors
///
/// If the file is missing, does not open, or does not hold 32 bytes.
pub fn read_secret(keyring: &Keyring, path: &Path, kind: Kind) -> Result<[u8; 32]> {
    let plain = keyring.read_file(path, kind)?;
    plain[..].try_into().map_err(|_| FileError::Content {
        path: path.to_owned(),
        problem: "does not hold 32 bytes",
    })
}

/// Writes a node key (sealed under `keyring`) and certificate as
/// `NAME.key` and `NAME.cert` in `dir`.
///
/// # Errors
///
/// If the files cannot be written.
pub fn write_node(
    dir: &Path,
    keyring: &Keyring,
    name: &str,
    key: &NodeKey,
    cert: &Certificate,
) -> Result<(PathBuf, PathBuf)> {
    create_dir(dir)?;
    let key_path = dir.join(format!("{name}.key"));
    let cert_path = dir.join(format!("{name}.cert"));
    keyring.write_file(&key_path, Kind::NodeKey, key.secret())?;
    write_public(
        &cert_path,
        &format!("swarm certificate of {name}"),
        &cert.to_bytes(),
    )?;
    Ok((key_path, cert_path))
}

/// Reads a public hex file (`ca.pub`) into 32 bytes.
///
/// # Errors
///
/// If the file is missing or does not hold 32 hex-encoded bytes.
pub fn read_array(path: &Path) -> Result<[u8; 32]> {
    read_hex(path)?.try_into().map_err(|_| FileError::Content {
        path: path.to_owned(),
        problem: "does not hold 32 bytes",
    })
}

/// Reads a certificate file.
///
/// # Errors
///
/// If the file is missing or not a certificate.
pub fn read_cert(path: &Path) -> Result<Certificate> {
    Certificate::from_bytes(&read_hex(path)?).map_err(|_| FileError::Content {
        path: path.to_owned(),
        problem: "is not a swarm certificate",
    })
}

/// Reads a hex text file, skipping `#` comment lines.
///
/// # Errors
///
/// If the file is missing or not hex.
pub fn read_hex(path: &Path) -> Result<Vec<u8>> {
    let text = fs::read_to_string(path).map_err(|source| FileError::Read {
        path: path.to_owned(),
        source,
    })?;
    let body: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("");
    unhex(&body).ok_or_else(|| FileError::Content {
        path: path.to_owned(),
        problem: "is not hex",
    })
}

/// Creates a key directory and its missing parents, mode 0700.
fn create_dir(dir: &Path) -> Result<()> {
    swarm_actors::at_rest::create_private_dir(dir).map_err(|source| FileError::Write {
        path: dir.to_owned(),
        source,
    })
}

fn write_error(path: &Path) -> impl FnOnce(std::io::Error) -> FileError + '_ {
    move |source| FileError::Write {
        path: path.to_owned(),
        source,
    }
}

fn write_public(path: &Path, what: &str, bytes: &[u8]) -> Result<()> {
    fs::write(path, format!("# {what}\n{}\n", hex(bytes))).map_err(write_error(path))
}

/// A CA held in memory that issues identities for a local cluster.
pub struct Throwaway {
    /// The CA.
    pub ca: CaKey,
    /// The cluster name.
    pub cluster: String,
    /// The join secret.
    pub secret: [u8; 32],
    /// The trust store every node shares.
    pub trust: Arc<TrustStore>,
    /// The secret operators' TOTP seeds derive from.
    pub totp: [u8; 32],
}

impl Throwaway {
    /// A fresh random CA and secret for `cluster`.
    pub fn new(cluster: &str) -> Self {
        let ca = CaKey::from_seed(random32());
        let trust = Arc::new(TrustStore::new(ca.public()).expect("a fresh CA key is valid"));
        Self {
            ca,
            cluster: cluster.to_owned(),
            secret: random32(),
            trust,
            totp: random32(),
        }
    }

    /// A handshake configuration for a new node called `name`.
    pub fn node(&self, name: &str, roles: &[&str]) -> HandshakeConfig {
        let key = NodeKey::from_secret(random32());
        let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
        let cert = issue(&self.ca, &key, name, &roles, 1, random_serial());
        HandshakeConfig {
            cluster: self.cluster.clone(),
            join_secret: self.secret,
            key,
            cert,
            trust: Arc::clone(&self.trust),
            suite: CipherSuite::AesGcm,
            listen: String::new(),
            version: PROTOCOL_VERSION,
        }
    }

    /// Writes the CA, the secrets and identities for `names` into `dir`, as
    /// `swarm ca init` and `swarm cert issue` would, sealed under a keyring
    /// that a throw-away key file (`keyring.key`) opens.
    ///
    /// # Errors
    ///
    /// If a file cannot be written.
    pub fn write_files(&self, dir: &Path, names: &[&str]) -> Result<()> {
        let named: Vec<(&str, &[&str])> = names.iter().map(|n| (*n, &["worker"][..])).collect();
        self.write_identities(dir, &named)
    }

    /// As [`Throwaway::write_files`], with each name's certificate roles.
    ///
    /// # Errors
    ///
    /// If a file cannot be written.
    pub fn write_identities(&self, dir: &Path, names: &[(&str, &[&str])]) -> Result<()> {
        create_dir(dir)?;
        let keyring = Self::keyring(dir)?;
        let ca = CaDir::new(dir);
        keyring.write_file(&ca.key_path(), Kind::CaKey, &self.ca.seed())?;
        write_public(&ca.pub_path(), "swarm CA public key", &self.ca.public())?;
        keyring.write_file(&ca.secret_path(), Kind::JoinSecret, &self.secret)?;
        keyring.write_file(&ca.totp_path(), Kind::TotpSecret, &self.totp)?;
        for (name, roles) in names {
            let key = NodeKey::from_secret(random32());
            let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
            let cert = issue(&self.ca, &key, name, &roles, 1, random_serial());
            write_node(dir, &keyring, name, &key, &cert)?;
        }
        Ok(())
    }

    /// The keyring of `dir`, opened by the throw-away key file
    /// `dir/keyring.key` (both created if missing).
    ///
    /// # Errors
    ///
    /// If they cannot be created or do not open.
    pub fn keyring(dir: &Path) -> Result<Keyring> {
        let key_file = dir.join(THROWAWAY_KEY_FILE);
        if !key_file.exists() {
            create_key_file(&key_file)?;
        }
        Ok(Keyring::open_or_create(
            &keyring_path(dir),
            &Unlock::KeyFile(key_file),
            KdfParams::DEFAULT,
        )?)
    }
}

/// The key file of a throw-away keyring, next to it: local clusters and
/// tests need no passphrase (and protect nothing with it).
pub const THROWAWAY_KEY_FILE: &str = "keyring.key";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_every_accepted_form_and_bad_ones_are_refused() {
        assert_eq!(parse_time("1970-01-01"), Ok(0));
        assert_eq!(parse_time("2027-01-01"), Ok(1_798_761_600));
        assert_eq!(
            parse_time("2027-01-01T08:00:00Z"),
            Ok(1_798_761_600 + 8 * 3_600)
        );
        assert_eq!(parse_time("2024-02-29"), Ok(1_709_164_800));
        assert_eq!(parse_time("1798761600"), Ok(1_798_761_600));
        for bad in [
            "2023-02-29",
            "2027-13-01",
            "2027-01-01T08:00:00",
            "tomorrow",
            "2027-1",
            "",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
        assert_eq!(
            format_time(1_798_761_600 + 8 * 3_600 + 61),
            "2027-01-01T08:01:01Z"
        );
    }

    #[test]
    fn validity_counts_days_from_the_given_start() {
        let v = Validity::days_from(Some(1_798_761_600), 30);
        assert_eq!(v.not_before, 1_798_761_600);
        assert_eq!(v.not_after, 1_798_761_600 + 30 * 86_400);
    }
}
