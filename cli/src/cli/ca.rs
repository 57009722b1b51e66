//! `swarm ca init` and `swarm cert issue`.

use std::path::Path;

use anyhow::Result;
use swarm::credentials::{issue_for as issue_cert, random32, random_serial, write_node, CaDir};
use swarm_protocol::NodeKey;

pub(crate) fn init(dir: &Path, force: bool) -> Result<()> {
    let ca = CaDir::new(dir);
    let key = ca.init(force)?;
    println!("CA created in {}", dir.display());
    println!(
        "  {}  private key: keep it with the operator",
        ca.key_path().display()
    );
    println!(
        "  {}  public key: give it to every node",
        ca.pub_path().display()
    );
    println!(
        "  {}  join secret: give it to every node",
        ca.secret_path().display()
    );
    println!(
        "  CA fingerprint {}",
        swarm_protocol::identity::hex(&key.public()[..8])
    );
    Ok(())
}

pub(crate) fn issue(
    name: &str,
    roles: &[String],
    ca_dir: &Path,
    out: &Path,
    days: u64,
    not_before: Option<u64>,
    serial: Option<u64>,
) -> Result<()> {
    anyhow::ensure!(
        !name.is_empty() && name.len() <= swarm_protocol::identity::MAX_CERT_NAME,
        "a node name needs 1 to {} bytes",
        swarm_protocol::identity::MAX_CERT_NAME
    );
    let ca = CaDir::new(ca_dir).load_key()?;
    let key = NodeKey::from_secret(random32());
    let serial = serial.unwrap_or_else(random_serial);
    let validity = swarm::credentials::Validity::days_from(not_before, days);
    let cert = issue_cert(&ca, &key, name, roles, validity, serial);
    let (key_path, cert_path) = write_node(out, name, &key, &cert)?;
    println!(
        "issued certificate for {name} (serial {serial}, roles {}, valid from {} for {days} days)",
        roles.join(","),
        swarm::credentials::format_time(validity.not_before)
    );
    println!("  node id {}", key.node_id());
    println!("  {}  node key: keep it on the node", key_path.display());
    println!("  {}", cert_path.display());
    Ok(())
}
