//! A node's revocation list at rest: the certificate serials it refuses,
//! sealed under its keyring ([`Kind::Revocations`]), mode 0600, replaced
//! whole by an atomic write whenever the node learns new ones. The node
//! loads it before it accepts its first handshake, so a restart does not
//! open a window in which a revoked certificate is taken (the head group
//! is the source of truth; this file only bridges a restart).
//!
//! ```text
//! plain = count u32 BE | serial u64 BE × count   (ascending, no repeats)
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use swarm_protocol::sealed::Kind;

use super::{AtRestError, Keyring};

/// The revocation list file of one node. Cheap to clone.
#[derive(Clone)]
pub struct RevocationFile {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    keyring: Keyring,
    /// The serials the file holds now. Also serialises writers: two lease
    /// grants never interleave their temporary files and renames.
    kept: Mutex<BTreeSet<u64>>,
}

impl std::fmt::Debug for RevocationFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocationFile")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl RevocationFile {
    /// Opens the list at `path`, sealed under `keyring`: answers the file
    /// and the serials it holds (none if there is no file yet: a node's
    /// first start).
    ///
    /// # Errors
    ///
    /// If the file exists but cannot be read, does not open under
    /// `keyring` (another kind, another keyring, a flipped byte) or does
    /// not hold a list of serials; each error names the file.
    pub fn open(path: &Path, keyring: Keyring) -> Result<(Self, Vec<u64>), AtRestError> {
        let serials = match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            _ => {
                let plain = keyring.read_file(path, Kind::Revocations)?;
                decode(&plain).ok_or_else(|| AtRestError::Malformed {
                    path: path.to_owned(),
                    problem: "does not hold a list of certificate serials",
                })?
            }
        };
        let file = Self {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                keyring,
                kept: Mutex::new(serials.iter().copied().collect()),
            }),
        };
        Ok((file, serials))
    }

    /// Where the list is kept.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Keeps `serials` (in any order, repeats ignored) with those the file
    /// holds: if any is new to it, the whole list is written again, sealed,
    /// mode 0600, through a temporary file and a rename, synced. Answers
    /// whether it wrote. After a failed write the next call tries again.
    ///
    /// # Errors
    ///
    /// If it cannot be written; the error names the file.
    pub fn keep(&self, serials: impl IntoIterator<Item = u64>) -> Result<bool, AtRestError> {
        let mut kept = self
            .inner
            .kept
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut all = kept.clone();
        all.extend(serials);
        if all.len() == kept.len() {
            return Ok(false);
        }
        let serials: Vec<u64> = all.iter().copied().collect();
        self.inner
            .keyring
            .write_file(&self.inner.path, Kind::Revocations, &encode(&serials))?;
        *kept = all;
        Ok(true)
    }
}

fn encode(serials: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + 8 * serials.len());
    // At most MAX_SERIALS are ever read back; a node never learns 4 billion.
    let count = u32::try_from(serials.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&count.to_be_bytes());
    for serial in serials {
        out.extend_from_slice(&serial.to_be_bytes());
    }
    out
}

fn decode(plain: &[u8]) -> Option<Vec<u64>> {
    let (count, rest) = plain.split_first_chunk::<4>()?;
    let count = usize::try_from(u32::from_be_bytes(*count)).ok()?;
    if count > MAX_SERIALS || rest.len() != count.checked_mul(8)? {
        return None;
    }
    let mut serials = Vec::with_capacity(count);
    for chunk in rest.chunks_exact(8) {
        let bytes: [u8; 8] = chunk.try_into().ok()?;
        serials.push(u64::from_be_bytes(bytes));
    }
    Some(serials)
}

/// The most serials a file holds (a sanity bound on what is read back:
/// 8 MiB of serials).
const MAX_SERIALS: usize = 1 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring(dir: &Path) -> Keyring {
        let key = dir.join("keyring.key");
        crate::at_rest::create_key_file(&key).unwrap();
        Keyring::open_or_create(
            &dir.join("keyring"),
            &crate::at_rest::Unlock::KeyFile(key),
            swarm_protocol::sealed::keyring::KdfParams::DEFAULT,
        )
        .unwrap()
    }

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("swarm-revocations-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_saved_list_opens_again_sorted_and_private() {
        let dir = scratch("roundtrip");
        let path = dir.join("n1.revoked");
        let (file, none) = RevocationFile::open(&path, keyring(&dir)).unwrap();
        assert!(none.is_empty(), "no file yet: nothing revoked");
        assert!(file.keep([9, 3, 9, 7]).unwrap());
        assert!(!file.keep([3, 7]).unwrap(), "nothing new: no write");
        let keyring = Keyring::open(
            &dir.join("keyring"),
            &crate::at_rest::Unlock::KeyFile(dir.join("keyring.key")),
        )
        .unwrap();
        let (_, serials) = RevocationFile::open(&path, keyring).unwrap();
        assert_eq!(serials, vec![3, 7, 9]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_damaged_list_is_refused_naming_the_file() {
        let dir = scratch("damaged");
        let path = dir.join("n1.revoked");
        let keyring = keyring(&dir);
        let (file, _) = RevocationFile::open(&path, keyring.clone()).unwrap();
        assert!(file.keep([1, 2]).unwrap());
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let err = RevocationFile::open(&path, keyring.clone()).unwrap_err();
        assert!(err.to_string().contains("n1.revoked"), "{err}");
        // Another kind under the same keyring is not a revocation list.
        keyring
            .write_file(&path, Kind::Capability, &encode(&[1]))
            .unwrap();
        assert!(RevocationFile::open(&path, keyring.clone()).is_err());
        // A sealed list of the right kind whose content is not a list.
        keyring
            .write_file(&path, Kind::Revocations, &[0, 0, 0, 2, 1])
            .unwrap();
        let err = RevocationFile::open(&path, keyring).unwrap_err();
        assert!(matches!(err, AtRestError::Malformed { .. }), "{err}");
        assert!(err.to_string().contains("n1.revoked"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn decode_refuses_counts_that_disagree_with_the_length() {
        assert_eq!(decode(&encode(&[])), Some(vec![]));
        assert_eq!(decode(&encode(&[u64::MAX])), Some(vec![u64::MAX]));
        assert_eq!(decode(&[0, 0, 0]), None);
        assert_eq!(decode(&[0, 0, 0, 1, 0]), None);
        assert_eq!(decode(&[255, 255, 255, 255]), None);
    }
}
