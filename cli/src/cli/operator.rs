//! `swarm operator add`: an operator certificate and its TOTP enrollment
//! (an `otpauth://` URI and a QR code for an authenticator app).

use std::path::Path;

use anyhow::{bail, Result};
use swarm::credentials::{read_secret, CaDir};
use swarm_protocol::sealed::Kind;

use super::ca::{issue_files, Issue};
use super::secrets;

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
        "Every operator command then asks for the current code (or takes --totp CODE); the heads check it with totp.secret."
    );
    Ok(())
}
