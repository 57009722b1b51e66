//! `swarm ca init`, `swarm cert issue` and `swarm cert renew`; `swarm cert
//! revoke` asks the cluster (`control.rs`).

use std::path::Path;

use anyhow::Result;
use swarm::credentials::{
    issue_for as issue_cert, keyring_path, random32, random_serial, read_secret, write_node, CaDir,
    Keyring,
};
use swarm_protocol::sealed::keyring::KdfParams;
use swarm_protocol::sealed::Kind;
use swarm_protocol::NodeKey;

use super::secrets;
use super::{CaCommand, CertCommand};

/// Runs `swarm ca COMMAND`.
pub(crate) fn run(command: CaCommand) -> Result<()> {
    match command {
        CaCommand::Init { dir, force } => init(&dir, force),
    }
}

/// Runs `swarm cert COMMAND`.
pub(crate) fn cert(command: CertCommand) -> Result<()> {
    match command {
        CertCommand::Issue {
            name,
            roles,
            ca_dir,
            out,
            days,
            not_before,
            serial,
        } => issue(&Issue {
            name: &name,
            roles: &roles,
            ca_dir: &ca_dir,
            out: &out,
            days,
            not_before,
            serial,
        }),
        CertCommand::Renew {
            name,
            ca_dir,
            out,
            days,
        } => renew(&name, &ca_dir, &out, days),
        CertCommand::Revoke {
            target,
            ca_dir,
            config,
            node,
            json,
            totp,
        } => {
            totp.install();
            super::control::revoke(&config, node, &target, &ca_dir, json)
        }
    }
}

pub(crate) fn init(dir: &Path, force: bool) -> Result<()> {
    let ca = CaDir::new(dir);
    let unlock = if ca.keyring_path().exists() {
        secrets::unlock_existing(&ca.keyring_path())?
    } else {
        secrets::unlock_new_global(&format!("the keyring of {}", dir.display()))?
    };
    let (key, keyring) = ca.init(force, &unlock)?;
    println!("CA created in {}", dir.display());
    println!(
        "  {}  keyring: seals the private files below (term {})",
        keyring.path().display(),
        keyring.newest()
    );
    println!(
        "  {}  private key (sealed): keep it with the operator",
        ca.key_path().display()
    );
    println!(
        "  {}  public key: give it to every node",
        ca.pub_path().display()
    );
    println!(
        "  {}  join secret (sealed): `swarm cert issue` copies it to each node",
        ca.secret_path().display()
    );
    println!(
        "  {}  operators' TOTP secret (sealed): `swarm cert issue` copies it to heads",
        ca.totp_path().display()
    );
    println!(
        "  CA fingerprint {}",
        swarm_protocol::identity::hex(&key.public()[..8])
    );
    Ok(())
}

/// A certificate to issue.
pub(crate) struct Issue<'a> {
    pub(crate) name: &'a str,
    pub(crate) roles: &'a [String],
    pub(crate) ca_dir: &'a Path,
    pub(crate) out: &'a Path,
    pub(crate) days: u64,
    pub(crate) not_before: Option<u64>,
    pub(crate) serial: Option<u64>,
}

/// What [`issue_files`] wrote.
pub(crate) struct Issued {
    pub(crate) key: NodeKey,
    pub(crate) serial: u64,
    pub(crate) validity: swarm::credentials::Validity,
    pub(crate) key_path: std::path::PathBuf,
    pub(crate) cert_path: std::path::PathBuf,
}

/// Issues a key and certificate into `out`, sealed under `out`'s keyring
/// (created with the CA keyring's passphrase or key file if there is
/// none), with the CA's public key and join secret (and, for heads, the
/// TOTP secret) when `out` is another directory.
pub(crate) fn issue_files(i: &Issue<'_>) -> Result<Issued> {
    anyhow::ensure!(
        !i.name.is_empty() && i.name.len() <= swarm_protocol::identity::MAX_CERT_NAME,
        "a node name needs 1 to {} bytes",
        swarm_protocol::identity::MAX_CERT_NAME
    );
    let ca_dir = CaDir::new(i.ca_dir);
    let unlock = secrets::unlock_existing(&ca_dir.keyring_path())?;
    let ca_ring = ca_dir.keyring(&unlock)?;
    let ca = ca_dir.load_key(&ca_ring)?;
    let same = same_dir(i.ca_dir, i.out);
    let out_ring = if same {
        ca_ring.clone()
    } else {
        Keyring::open_or_create(&keyring_path(i.out), &unlock, KdfParams::DEFAULT)?
    };
    let key = NodeKey::from_secret(random32());
    let serial = i.serial.unwrap_or_else(random_serial);
    let validity = swarm::credentials::Validity::days_from(i.not_before, i.days);
    let cert = issue_cert(&ca, &key, i.name, i.roles, validity, serial);
    let (key_path, cert_path) = write_node(i.out, &out_ring, i.name, &key, &cert)?;
    if !same {
        std::fs::copy(ca_dir.pub_path(), i.out.join("ca.pub"))?;
        let out_dir = CaDir::new(i.out);
        let secret = read_secret(&ca_ring, &ca_dir.secret_path(), Kind::JoinSecret)?;
        out_ring.write_file(&out_dir.secret_path(), Kind::JoinSecret, &secret)?;
        if i.roles.iter().any(|r| r == "head") {
            let totp = read_secret(&ca_ring, &ca_dir.totp_path(), Kind::TotpSecret)?;
            out_ring.write_file(&out_dir.totp_path(), Kind::TotpSecret, &totp)?;
        }
    }
    Ok(Issued {
        key,
        serial,
        validity,
        key_path,
        cert_path,
    })
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

pub(crate) fn issue(i: &Issue<'_>) -> Result<()> {
    let issued = issue_files(i)?;
    println!(
        "issued certificate for {} (serial {}, roles {}, valid from {} for {} days)",
        i.name,
        issued.serial,
        i.roles.join(","),
        swarm::credentials::format_time(issued.validity.not_before),
        i.days
    );
    println!("  node id {}", issued.key.node_id());
    println!(
        "  {}  node key (sealed): keep it on the node",
        issued.key_path.display()
    );
    println!("  {}", issued.cert_path.display());
    Ok(())
}

/// `swarm cert renew`: a new certificate (new serial and validity, same
/// roles) for the key a node already has, so its node id stays; the
/// running node switches to it within a second.
pub(crate) fn renew(name: &str, ca_dir: &Path, out: &Path, days: u64) -> Result<()> {
    let ca_dir_files = CaDir::new(ca_dir);
    let unlock = secrets::unlock_existing(&ca_dir_files.keyring_path())?;
    let ca_ring = ca_dir_files.keyring(&unlock)?;
    let ca = ca_dir_files.load_key(&ca_ring)?;
    let out_ring = if same_dir(ca_dir, out) {
        ca_ring
    } else {
        Keyring::open(
            &keyring_path(out),
            &secrets::unlock_existing(&keyring_path(out))?,
        )?
    };
    let key_path = out.join(format!("{name}.key"));
    let cert_path = out.join(format!("{name}.cert"));
    let key = NodeKey::from_secret(read_secret(&out_ring, &key_path, Kind::NodeKey)?);
    let old = swarm::credentials::read_cert(&cert_path)?;
    anyhow::ensure!(
        old.body().static_key == *key.public(),
        "{} is not the certificate of {}",
        cert_path.display(),
        key_path.display()
    );
    let serial = random_serial();
    let validity = swarm::credentials::Validity::days_from(None, days);
    let cert = issue_cert(&ca, &key, name, &old.body().roles, validity, serial);
    write_node(out, &out_ring, name, &key, &cert)?;
    println!(
        "renewed {name}: serial {} -> {serial}, valid until {}; a running node switches to it within a second (links and actors stay)",
        old.body().serial,
        swarm::credentials::format_time(validity.not_after)
    );
    println!(
        "  then revoke the old serial: swarm cert revoke {} --config ADMIN.toml --node ADDR",
        old.body().serial
    );
    Ok(())
}
