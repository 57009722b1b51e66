//! `swarm operator add`: an operator certificate and its TOTP enrollment
//! (an `otpauth://` URI and a QR code for an authenticator app);
//! `swarm operator passwd`: an operator's admin-API password;
//! `swarm admin tls`: a node's admin-API certificate.

use std::path::Path;

use anyhow::{bail, Result};
use swarm::credentials::{read_secret, CaDir};
use swarm_protocol::sealed::Kind;

use super::ca::{issue_files, Issue};
use super::secrets;
use super::{AdminCommand, OperatorCommand};

/// Runs `swarm operator COMMAND`.
pub(crate) fn run(command: OperatorCommand) -> Result<()> {
    match command {
        OperatorCommand::Add {
            name,
            roles,
            ca_dir,
            out,
            days,
            issuer,
        } => add(&Add {
            name: &name,
            roles: &roles,
            ca_dir: &ca_dir,
            out: &out,
            days,
            issuer: &issuer,
        }),
        OperatorCommand::Passwd {
            config,
            node,
            password_env,
            totp,
        } => {
            totp.install();
            passwd(&config, node, password_env.as_deref())
        }
    }
}

/// Runs `swarm admin COMMAND`.
pub(crate) fn admin(command: AdminCommand) -> Result<()> {
    match command {
        AdminCommand::Login {
            config,
            node,
            json,
            totp,
        } => {
            totp.install();
            admin_login(&config, node, json)
        }
        AdminCommand::Tls {
            name,
            hosts,
            ca_dir,
            out,
            cluster,
        } => admin_tls(&name, &hosts, &ca_dir, &out, &cluster),
    }
}

/// What to issue.
pub(crate) struct Add<'a> {
    pub(crate) name: &'a str,
    pub(crate) roles: &'a [String],
    pub(crate) ca_dir: &'a Path,
    pub(crate) out: &'a Path,
    pub(crate) days: u64,
    pub(crate) issuer: &'a str,
}

pub(crate) fn add(a: &Add<'_>) -> Result<()> {
    let roles = a.roles;
    if !roles.iter().any(|r| r == "operator" || r == "admin") {
        bail!("an operator certificate needs the role operator (and admin to change the cluster)");
    }
    if roles.iter().any(|r| r == "head" || r == "worker") {
        bail!("an operator certificate cannot carry node roles (head, worker): operators never join as nodes");
    }
    let issued = issue_files(&Issue {
        name: a.name,
        roles,
        ca_dir: a.ca_dir,
        out: a.out,
        days: a.days,
        not_before: None,
        serial: None,
    })?;
    let ca = CaDir::new(a.ca_dir);
    let keyring = ca.keyring(&secrets::unlock_existing(&ca.keyring_path())?)?;
    let totp = zeroize::Zeroizing::new(read_secret(&keyring, &ca.totp_path(), Kind::TotpSecret)?);
    let seed = swarm::operators::seed(&totp, issued.serial, a.name);
    let uri = zeroize::Zeroizing::new(swarm::operators::otpauth_uri(&seed, a.issuer, a.name));
    println!(
        "operator {} (serial {}, roles {}): certificate {}, key {} (sealed)",
        a.name,
        issued.serial,
        roles.join(","),
        issued.cert_path.display(),
        issued.key_path.display()
    );
    println!("Enroll its second factor: scan this code with an authenticator app (TOTP, SHA-1, 6 digits, 30 s)");
    match qrcode::QrCode::new(uri.as_bytes()) {
        Ok(code) => {
            let art = code
                .render::<qrcode::render::unicode::Dense1x2>()
                .dark_color(qrcode::render::unicode::Dense1x2::Light)
                .light_color(qrcode::render::unicode::Dense1x2::Dark)
                .quiet_zone(true)
                .build();
            println!("{art}");
        }
        Err(e) => println!("(no QR code: {e})"),
    }
    println!("or enter this URI: {}", uri.as_str());
    println!(
        "Every operator command then asks for the current code (or takes --totp CODE, or SWARM_TOTP); the heads check it with totp.secret."
    );
    Ok(())
}

/// `swarm operator passwd`: hashes the new password here and has the
/// heads keep the hash for the operator whose link this is.
pub(crate) fn passwd(config: &Path, node: std::net::SocketAddr, env: Option<&str>) -> Result<()> {
    let password = match env {
        Some(var) => zeroize::Zeroizing::new(
            std::env::var(var)
                .map_err(|_| anyhow::anyhow!("environment variable {var} is not set"))?,
        ),
        None => {
            let first =
                zeroize::Zeroizing::new(rpassword::prompt_password("new admin-API password: ")?);
            let again = zeroize::Zeroizing::new(rpassword::prompt_password("again: ")?);
            if first != again {
                bail!("the passwords differ");
            }
            first
        }
    };
    let hash =
        swarm::operators::password::PasswordHash::new(&password).map_err(anyhow::Error::msg)?;
    super::control::with_control(config, node, |_, control, _| async move {
        control.set_password(hash).await?;
        Ok(())
    })?;
    println!("password set: log in to the admin API with it and a TOTP code");
    Ok(())
}

/// `swarm admin tls`: the admin CA (made on first use) issues `name`'s
/// admin-API certificate for `hosts`.
pub(crate) fn admin_tls(
    name: &str,
    hosts: &[String],
    ca_dir: &Path,
    out: &Path,
    cluster: &str,
) -> Result<()> {
    use swarm::credentials::{keyring_path, Keyring};
    anyhow::ensure!(!hosts.is_empty(), "give at least one --host");
    let ca = CaDir::new(ca_dir);
    let unlock = secrets::unlock_existing(&ca.keyring_path())?;
    let ca_ring = ca.keyring(&unlock)?;
    let ca_key_path = ca_dir.join("admin-ca.key");
    let ca_cert_path = ca_dir.join("admin-ca.crt");
    let admin_ca = if ca_key_path.exists() {
        let der = ca_ring.read_file(&ca_key_path, Kind::TlsKey)?;
        swarm_admin::tls::AdminCa::from_key_der(cluster, &der)?
    } else {
        let (admin_ca, pem) = swarm_admin::tls::AdminCa::generate(cluster)?;
        ca_ring.write_file(&ca_key_path, Kind::TlsKey, &admin_ca.key_der())?;
        std::fs::write(&ca_cert_path, pem)?;
        println!(
            "created the admin CA: {} (trust it in browsers and tools), {} (sealed)",
            ca_cert_path.display(),
            ca_key_path.display()
        );
        admin_ca
    };
    let (chain, key) = admin_ca.issue(name, hosts)?;
    swarm_actors::at_rest::create_private_dir(out)?;
    let out_ring = if out.canonicalize().ok() == ca_dir.canonicalize().ok() {
        ca_ring
    } else {
        Keyring::open_or_create(
            &keyring_path(out),
            &unlock,
            swarm_protocol::sealed::keyring::KdfParams::DEFAULT,
        )?
    };
    let cert_path = out.join(format!("{name}.admin.crt"));
    let key_path = out.join(format!("{name}.admin.key"));
    std::fs::write(&cert_path, chain)?;
    out_ring.write_file(&key_path, Kind::TlsKey, &key)?;
    println!(
        "admin API certificate for {name} ({}): {}, key {} (sealed)",
        hosts.join(", "),
        cert_path.display(),
        key_path.display()
    );
    println!("  in its node file: [admin] listen = \"127.0.0.1:9443\", cert = \"{name}.admin.crt\", key = \"{name}.admin.key\"");
    Ok(())
}

/// `swarm login`: logs the operator in and keeps the capability.
pub(crate) fn login(config: &Path, member: std::net::SocketAddr) -> Result<()> {
    let mesh = super::client_config(config)?;
    let claims = actix::System::new().block_on(async move {
        let (node, capability) = secrets::start_client_session(mesh, member, true).await?;
        node.close().await;
        capability
            .and_then(|c| c.unverified_claims())
            .ok_or_else(|| {
                anyhow::anyhow!("only operator certificates log in (nodes need no second factor)")
            })
    })?;
    eprintln!(
        "logged in as {} until {}; later commands use this login (swarm logout forgets it)",
        claims.name,
        swarm::credentials::format_time(claims.expires_ms / 1000)
    );
    Ok(())
}

/// `swarm logout`: forgets the kept login.
pub(crate) fn logout(config: &Path) -> Result<()> {
    let file = secrets::load(config)?;
    let mesh = file.mesh_config()?;
    let name = mesh.handshake.cert.body().name.clone();
    let session = secrets::SessionFile::new(file.open_keyring()?, &name);
    if session.remove()? {
        eprintln!("forgot the login of {name} ({})", session.path().display());
    } else {
        eprintln!("{name} had no login kept");
    }
    Ok(())
}

/// `swarm admin login`: a session of a node's admin API for the operator
/// proven over the mesh (certificate, then TOTP: its kept login or a new
/// one), delegated to that node by the head group.
pub(crate) fn admin_login(config: &Path, member: std::net::SocketAddr, json: bool) -> Result<()> {
    let mesh = super::client_config(config)?;
    let session = actix::System::new().block_on(async move {
        let (node, capability) = secrets::start_client_session(mesh, member, false).await?;
        let result = match capability {
            Some(_) => node.admin_login(member).await.map_err(anyhow::Error::from),
            None => Err(anyhow::anyhow!(
                "admin-API sessions are for logged-in operator certificates (with --totp CODE, or after swarm login)"
            )),
        };
        node.close().await;
        result
    })?;
    if json {
        println!("{}", serde_json::to_string(&session)?);
    } else {
        println!("{}", session.token);
        eprintln!(
            "admin API {} until {}: curl --cacert admin-ca.crt -H \"Authorization: Bearer $TOKEN\" {}/metrics",
            session.url,
            swarm::credentials::format_time(session.expires_ms / 1000),
            session.url
        );
    }
    Ok(())
}
