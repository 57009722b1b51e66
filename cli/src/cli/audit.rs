//! `swarm audit`: a node's sealed audit log (operator logins, their
//! mutating commands, policy refusals), read with its keyring.

use std::path::Path;

use anyhow::Result;
use swarm::audit::{read, AuditRecord};

use super::secrets;

pub(crate) fn run(config: &Path, since: Option<u64>, json: bool) -> Result<()> {
    let file = secrets::load(config)?;
    let keyring = file.open_keyring()?;
    let path = file.audit_path()?;
    let since_ms = since.map_or(0, |s| s.saturating_mul(1000));
    // The node may be appending while this reads: a record cut at the end
    // is read again a moment later before it counts as damage.
    let mut attempt = 0;
    let all = loop {
        match read(&path, &keyring) {
            Err(swarm::at_rest::AtRestError::Record {
                source: swarm_protocol::sealed::SealedError::Truncated { .. },
                ..
            }) if attempt < 3 => {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            other => break other?,
        }
    };
    let records: Vec<AuditRecord> = all.into_iter().filter(|r| r.at_ms >= since_ms).collect();
    if json {
        println!("{}", serde_json::to_string(&records)?);
        return Ok(());
    }
    println!(
        "{:<20} {:<14} {:<12} {:<22} {:<18} {:<14} DETAIL",
        "TIME", "KIND", "WHO", "SOURCE", "TAG", "TARGET"
    );
    for r in &records {
        println!(
            "{:<20} {:<14} {:<12} {:<22} {:<18} {:<14} {}",
            swarm::credentials::format_time(r.at_ms / 1000),
            serde_json::to_value(&r.kind)?.as_str().unwrap_or("?"),
            r.who,
            r.source,
            r.tag,
            if r.target.is_empty() { "-" } else { &r.target },
            r.detail
        );
    }
    Ok(())
}
