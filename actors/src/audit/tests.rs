use std::time::Duration;

use super::*;
use crate::at_rest::{create_key_file, Unlock};
use swarm_protocol::sealed::keyring::KdfParams;

fn record(n: u64) -> AuditRecord {
    AuditRecord {
        at_ms: n,
        kind: AuditKind::Login,
        who: format!("op{n}"),
        serial: n,
        roles: vec!["operator".into()],
        source: "127.0.0.1:1".into(),
        tag: "swarm.Login".into(),
        target: String::new(),
        detail: "ok".into(),
    }
}

#[test]
fn records_are_appended_sealed_and_any_damage_names_the_record() {
    let dir = std::env::temp_dir().join(format!("swarm-audit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("k");
    create_key_file(&key).unwrap();
    let cheap = KdfParams {
        m_kib: 64,
        t: 1,
        p: 1,
    };
    let ring = Keyring::create(&dir.join("keyring"), &Unlock::KeyFile(key), cheap).unwrap();
    let path = dir.join("n1.audit");
    let audit = Audit::open(&path, ring.clone()).unwrap();
    for n in 0..3 {
        audit.record(record(n));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while read(&path, &ring).unwrap().len() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "records never written"
        );
        std::thread::yield_now();
    }
    // Reopened, it continues the index.
    drop(audit);
    let again = Audit::open(&path, ring.clone()).unwrap();
    again.record(record(3));
    while read(&path, &ring).unwrap().len() < 4 {
        assert!(std::time::Instant::now() < deadline, "record never written");
        std::thread::yield_now();
    }
    let all = read(&path, &ring).unwrap();
    assert_eq!(all, (0..4).map(record).collect::<Vec<_>>());

    // A record torn by a crash mid-append is cut off when the log opens.
    drop(again);
    let whole = std::fs::read(&path).unwrap();
    let mut torn = whole.clone();
    torn.extend_from_slice(&[0, 0, 1, 0, 7, 7]);
    std::fs::write(&path, &torn).unwrap();
    let reopened = Audit::open(&path, ring.clone()).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), whole);
    drop(reopened);
    let bytes = std::fs::read(&path).unwrap();
    assert!(!bytes.windows(3).any(|w| w == b"op1"), "in clear");

    // A flipped byte in record 2; record 1 removed; the end cut.
    let spans: Vec<(usize, usize)> = {
        let mut at = 0;
        let mut v = Vec::new();
        while at < bytes.len() {
            let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            v.push((at, at + 4 + len));
            at += 4 + len;
        }
        v
    };
    let mut flipped = bytes.clone();
    flipped[spans[2].0 + 30] ^= 1;
    std::fs::write(&path, &flipped).unwrap();
    let err = read(&path, &ring).unwrap_err().to_string();
    assert!(
        err.contains("n1.audit record 2 failed authentication"),
        "{err}"
    );
    let mut removed = bytes[..spans[1].0].to_vec();
    removed.extend_from_slice(&bytes[spans[1].1..]);
    std::fs::write(&path, &removed).unwrap();
    let err = read(&path, &ring).unwrap_err().to_string();
    assert!(err.contains("record 1 failed authentication"), "{err}");
    std::fs::write(&path, &bytes[..bytes.len() - 5]).unwrap();
    let err = read(&path, &ring).unwrap_err().to_string();
    assert!(err.contains("record 3 is truncated"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
