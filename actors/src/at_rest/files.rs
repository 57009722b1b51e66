//! Files nobody else may read: private directories (0700) and files
//! (0600), atomic replacement through an unpredictable temporary name,
//! and reads that name the file in their error.

use std::fs;
use std::io::Write as _;
use std::path::Path;

use super::{random, AtRestError, Result};

/// Creates `dir` and any missing parents with mode 0700 (on unix): the
/// directories of keyrings, sealed files and the head's store are nobody
/// else's to list. Directories that exist already are left as they are.
///
/// # Errors
///
/// If a directory cannot be created.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Opens a new file at `path` for writing, mode 0600: `O_CREAT|O_EXCL`
/// (it fails if anything, a symlink included, is there already) and, on
/// unix, `O_NOFOLLOW`.
///
/// # Errors
///
/// If something exists at `path` or it cannot be created.
pub fn create_private_file(path: &Path) -> std::io::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    options.open(path)
}

/// Writes `bytes` to `path` through a temporary file and a rename, mode
/// 0600, synced: a crash leaves the old file or the new one.
///
/// The temporary file is in the same directory under an unpredictable name
/// (16 random hex digits) and is created with [`create_private_file`], so a
/// symlink planted in the directory is never followed and never written
/// through. Missing directories are created 0700.
pub(super) fn write_private(path: &Path, bytes: &[u8], create_new: bool) -> Result<()> {
    let err = |source| AtRestError::Write {
        path: path.to_owned(),
        source,
    };
    if create_new && fs::symlink_metadata(path).is_ok() {
        return Err(AtRestError::Write {
            path: path.to_owned(),
            source: std::io::Error::from(std::io::ErrorKind::AlreadyExists),
        });
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        create_private_dir(dir).map_err(err)?;
    }
    let name = path
        .file_name()
        .map_or_else(|| "sealed".into(), |n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(
        ".{name}.{}.tmp",
        swarm_protocol::identity::hex(&random::<8>())
    ));
    let mut file = create_private_file(&tmp).map_err(err)?;
    let result = (|| {
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        // The rename is durable once the directory is synced.
        #[cfg(unix)]
        fs::File::open(dir.unwrap_or(Path::new(".")))?.sync_all()?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(err)
}

pub(super) fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|source| AtRestError::Read {
        path: path.to_owned(),
        source,
    })
}
