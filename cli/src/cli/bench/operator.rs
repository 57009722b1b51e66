//! The cluster's admin operator for benches that write to the control
//! plane: a bench's driver node has a node certificate, and the policy
//! refuses its control-plane writes before Raft, so a write it times
//! would time a refusal.

use anyhow::{bail, Context as _, Result};
use swarm::control::Control;
use swarm::Node;
use swarm_cli::local::LocalCluster;

/// The cluster's admin operator, logged in with its TOTP code (the
/// driver's node certificate may not write outside its journals: its
/// control-plane writes are refused by policy before Raft).
pub(super) async fn admin(cluster: &LocalCluster) -> Result<(Node, Control)> {
    let mut mesh = swarm::config::NodeFile::load(&cluster.admin_config())?.mesh_config()?;
    mesh.listen = "127.0.0.1:0".parse()?;
    // An operator is a client, not a member.
    mesh.cluster = None;
    let keyring = swarm::credentials::Throwaway::keyring(&cluster.dir)?;
    let totp = swarm::credentials::read_secret(
        &keyring,
        &cluster.dir.join("totp.secret"),
        swarm::protocol::sealed::Kind::TotpSecret,
    )?;
    let cert = swarm::credentials::read_cert(&cluster.dir.join("admin.cert"))?;
    let seed = swarm::operators::seed(&totp, cert.body().serial, &cert.body().name);
    let member = cluster.nodes[0].addr;
    let node = Node::start(mesh).await?;
    // A step's code logs in once: the next step's if this one's was used.
    let mut step = 0;
    loop {
        let code = swarm::operators::code_at(&seed, swarm::credentials::unix_now() + 30 * step);
        match node.login(member, &code).await {
            Ok(_) => break,
            Err(e) if step < 2 => {
                tracing::debug!(error = %e, "admin login refused: the next step");
                step += 1;
            }
            Err(e) => bail!("the admin operator could not log in: {e}"),
        }
    }
    let control = node
        .control_through(member)
        .await
        .context("no link to the cluster as the admin operator")?;
    Ok((node, control))
}
