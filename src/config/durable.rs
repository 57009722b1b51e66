//! The `[durable]` section of a node file: where the durable actors this
//! node hosts keep their journals.
//!
//! ```toml
//! [durable]
//! store = "postgres"                        # or "embedded" (the default)
//! url = "postgresql://swarm@127.0.0.1:5432/swarm"
//! password_file = "postgres.password"       # 0600; never the URL
//! ca_file = "postgres-ca.crt"               # TLS, checked against this CA only
//! connections = 4
//! ```
//!
//! With `ca_file` the store speaks TLS and refuses a server whose
//! certificate does not chain to that CA or name the URL's host; without
//! it, journals travel in the clear, so only to loopback or a Unix socket
//! unless the URL says `sslmode=disable`.
//!
//! Every node that may host a durable actor must name the same store:
//! the next incarnation, wherever it is placed, recovers from it.

use std::sync::Arc;

use super::*;
use swarm_actors::durable::JournalStore;

/// The `[durable]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DurableFile {
    /// `embedded` (journals in the head group's log) or `postgres`.
    #[serde(default = "embedded")]
    pub store: String,
    /// The PostgreSQL database (`postgresql://USER@HOST:PORT/DB`, or a
    /// `key=value` string), without its password.
    #[serde(default)]
    pub url: Option<String>,
    /// A file holding the database password (its first line), readable by
    /// its owner only.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// The CA (PEM) that signed the database server's certificate: the
    /// store then speaks TLS and trusts nothing else.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Connections kept to the database.
    #[serde(default = "default_connections")]
    pub connections: usize,
}

fn embedded() -> String {
    "embedded".to_owned()
}

fn default_connections() -> usize {
    #[cfg(feature = "postgres")]
    return swarm_actors::durable::DEFAULT_CONNECTIONS;
    #[cfg(not(feature = "postgres"))]
    4
}

/// Why a `[durable]` section cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DurableFileError {
    /// Neither `embedded` nor `postgres`.
    #[error("[durable] store = {0:?}: the stores are \"embedded\" and \"postgres\"")]
    UnknownStore(String),
    /// `postgres` without `url`.
    #[error("[durable] store = \"postgres\" needs url = \"postgresql://USER@HOST:PORT/DB\"")]
    NoUrl,
    /// A password in the URL: it would sit in the configuration file.
    #[error("[durable] url holds a password: put it in a file named by password_file (mode 0600) instead")]
    PasswordInUrl,
    /// The password file cannot be read, or others may read it.
    #[error("[durable] password_file {path}: {reason}")]
    PasswordFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// This build has no PostgreSQL store.
    #[error("[durable] store = \"postgres\": this build of swarm has no PostgreSQL store (feature `postgres`)")]
    NotBuilt,
    /// The CA file cannot be read.
    #[error("[durable] ca_file {path}: {reason}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The store refused its settings.
    #[error("[durable]: {0}")]
    Store(#[from] swarm_actors::durable::StoreError),
}

impl DurableFile {
    /// The store it names: `None` for the embedded store (the node's
    /// default). Nothing is dialed yet.
    ///
    /// # Errors
    ///
    /// [`DurableFileError`]: an unknown store, no URL, a password in the
    /// URL, an unreadable or shared password file, a URL the store refuses.
    pub fn store(&self) -> std::result::Result<Option<Arc<dyn JournalStore>>, DurableFileError> {
        match self.store.as_str() {
            "embedded" => Ok(None),
            "postgres" => self.postgres(),
            other => Err(DurableFileError::UnknownStore(other.to_owned())),
        }
    }

    #[cfg(feature = "postgres")]
    fn postgres(&self) -> std::result::Result<Option<Arc<dyn JournalStore>>, DurableFileError> {
        let url = self.url.as_deref().ok_or(DurableFileError::NoUrl)?;
        if url_has_password(url) {
            return Err(DurableFileError::PasswordInUrl);
        }
        let password = self
            .password_file
            .as_deref()
            .map(read_password)
            .transpose()?;
        let password = password.as_ref().map(|p| p.as_str());
        let store = match &self.ca_file {
            Some(path) => {
                let ca = std::fs::read(path).map_err(|e| DurableFileError::CaFile {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                swarm_actors::durable::Postgres::with_tls(url, password, self.connections, &ca)?
            }
            None => swarm_actors::durable::Postgres::new(url, password, self.connections)?,
        };
        Ok(Some(Arc::new(store)))
    }

    #[cfg(not(feature = "postgres"))]
    fn postgres(&self) -> std::result::Result<Option<Arc<dyn JournalStore>>, DurableFileError> {
        Err(DurableFileError::NotBuilt)
    }
}

/// Whether a URL or a `key=value` string carries a password, as the
/// driver reads it (a string it cannot read is left for the store to
/// refuse).
fn url_has_password(url: &str) -> bool {
    #[cfg(feature = "postgres")]
    {
        url.parse::<swarm_actors::durable::PostgresConfig>()
            .is_ok_and(|config| config.get_password().is_some())
    }
    #[cfg(not(feature = "postgres"))]
    {
        url.contains("password")
    }
}

/// The first line of a password file that only its owner may read.
fn read_password(path: &Path) -> std::result::Result<zeroize::Zeroizing<String>, DurableFileError> {
    let failed = |reason: String| DurableFileError::PasswordFile {
        path: path.to_owned(),
        reason,
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path)
            .map_err(|e| failed(e.to_string()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(failed(format!(
                "mode {:o} lets others read it: chmod 600 it",
                mode & 0o777
            )));
        }
    }
    let text =
        zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| failed(e.to_string()))?);
    let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
    if line.is_empty() {
        return Err(failed("it is empty".to_owned()));
    }
    Ok(zeroize::Zeroizing::new(line.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_the_url_is_found_in_either_form() {
        assert!(url_has_password("postgresql://swarm:secret@127.0.0.1/db"));
        assert!(url_has_password(
            "postgres://swarm@127.0.0.1/db?password=secret"
        ));
        assert!(url_has_password(
            "host=127.0.0.1 user=swarm password=secret"
        ));
        assert!(url_has_password(
            "host=127.0.0.1 user=swarm password = secret"
        ));
        assert!(url_has_password("host=127.0.0.1 user=swarm password='a b'"));
        assert!(!url_has_password("postgresql://swarm@127.0.0.1:5432/db"));
        assert!(!url_has_password("postgresql://swarm@[::1]:5432/db"));
        assert!(!url_has_password("host=/run/postgresql user=swarm"));
    }

    #[test]
    fn a_section_names_a_known_store_with_what_it_needs() {
        let section = |toml_text: &str| toml::from_str::<DurableFile>(toml_text).unwrap();
        assert!(
            section("").store().unwrap().is_none(),
            "embedded by default"
        );
        let unknown = section("store = \"redis\"").store().err().unwrap();
        assert!(
            unknown
                .to_string()
                .contains("\"embedded\" and \"postgres\""),
            "{unknown}"
        );
        #[cfg(feature = "postgres")]
        {
            assert!(matches!(
                section("store = \"postgres\"").store(),
                Err(DurableFileError::NoUrl)
            ));
            let with_password =
                section("store = \"postgres\"\nurl = \"postgresql://u:p@127.0.0.1/db\"");
            assert!(matches!(
                with_password.store(),
                Err(DurableFileError::PasswordInUrl)
            ));
            let ok = section("store = \"postgres\"\nurl = \"postgresql://u@127.0.0.1/db\"");
            assert_eq!(ok.store().unwrap().unwrap().backend(), "postgres");

            let dir =
                std::env::temp_dir().join(format!("swarm-durable-file-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let file = dir.join("pw");
            std::fs::write(&file, "s3cret\n").unwrap();
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
            let shared = read_password(&file).unwrap_err();
            assert!(shared.to_string().contains("chmod 600"), "{shared}");
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
            assert_eq!(read_password(&file).unwrap().as_str(), "s3cret");
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
}
