//! The admin API of a node process: HTTPS under the admin CA, a password
//! and TOTP login (a wrong code refused), every view as JSON, actions
//! decided as the operator's, and `/metrics` parsed by a Prometheus text
//! parser with its counters moving as traffic flows.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use swarm_cli::local::LocalCluster;

use crate::util::{admin_code, admin_code_in, exe, operator_code_in, scratch, until_ok};

pub const PASSWORD: &str = "correct horse battery staple";

/// An HTTPS client that trusts the cluster's admin CA (and nothing else).
pub fn client(dir: &std::path::Path) -> awc::Client {
    awc::Client::builder()
        .connector(awc::Connector::new().rustls_0_23(Arc::new(tls(dir))))
        .timeout(Duration::from_secs(30))
        .finish()
}

/// TLS that trusts the cluster's admin CA (`admin-ca.crt` in `dir`).
pub fn tls(dir: &std::path::Path) -> rustls::ClientConfig {
    use rustls_pki_types::pem::PemObject;
    let pem = std::fs::read(dir.join("admin-ca.crt")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// Sets the admin operator's password through the CLI (certificate and
/// TOTP over the mesh), retrying while the head group forms.
pub fn set_password(cluster: &LocalCluster) {
    let seed = cluster.nodes[0].addr.to_string();
    until_ok("operator passwd", || {
        let mut passwd = Command::new(exe());
        passwd
            .args(["operator", "passwd", "--config"])
            .arg(cluster.admin_config())
            .args(["--node", &seed, "--totp", &admin_code(&cluster.dir)])
            .args(["--password-env", "SWARM_TEST_PASSWORD"])
            .env("SWARM_TEST_PASSWORD", PASSWORD);
        passwd
    });
}

pub(crate) async fn get(client: &awc::Client, url: &str, token: &str) -> (u16, Vec<u8>) {
    let mut response = client.get(url).bearer_auth(token).send().await.unwrap();
    let body = response.body().limit(64 << 20).await.unwrap();
    (response.status().as_u16(), body.to_vec())
}

async fn post(
    client: &awc::Client,
    url: &str,
    token: Option<&str>,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let mut request = client.post(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let mut response = request.send_json(&body).await.unwrap();
    let json = response
        .json::<serde_json::Value>()
        .await
        .unwrap_or_default();
    (response.status().as_u16(), json)
}

/// The next chunk of a streamed body.
pub(crate) async fn next<S: futures_core::Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| futures_core::Stream::poll_next(std::pin::Pin::new(&mut *stream), cx))
        .await
}

/// Opens `base`'s event stream with `token` and reads until its first
/// event is whole: the stream, and the bytes read so far (they start
/// with a view).
pub(crate) async fn open_stream(
    client: &awc::Client,
    base: &str,
    token: &str,
    timeout: Duration,
) -> (
    impl futures_core::Stream<Item = Result<impl AsRef<[u8]>, awc::error::PayloadError>> + Unpin,
    Vec<u8>,
) {
    let mut stream = client
        .get(format!("{base}/api/stream"))
        .bearer_auth(token)
        .timeout(timeout)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status().as_u16(), 200);
    let mut events = Vec::new();
    while !String::from_utf8_lossy(&events).contains("\n\n") {
        events.extend_from_slice(next(&mut stream).await.expect("an event").unwrap().as_ref());
    }
    assert!(String::from_utf8_lossy(&events).starts_with("event: view\ndata: {"));
    (stream, events)
}

/// The sum of every series of `name`.
fn total(text: &str, name: &str) -> f64 {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

/// The metric names the README lists under `/metrics`.
fn readme_metrics() -> Vec<String> {
    let readme = include_str!("../../README.md");
    let start = readme
        .find("- **`/metrics`**")
        .expect("the README's /metrics item");
    let section = &readme[start..];
    let section = &section[..section.find("![").unwrap_or(section.len())];
    let mut names: Vec<String> = section
        .split('`')
        .filter(|t| {
            t.starts_with("swarm_")
                && t.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The value of the series `name` with label `actor` = `actor`.
fn metric(text: &str, name: &str, actor: &str) -> Option<f64> {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && s.labels.get("actor") == Some(actor))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

#[test]
fn the_admin_api_logs_in_with_password_and_totp_serves_every_view_acts_and_exports_metrics() {
    let dir = scratch("admin-api");
    let mut cluster = LocalCluster::start_control_admin(&exe(), &dir, 1, 1, &[]).unwrap();
    cluster.remove_dir_on_drop(true);
    let base = format!("https://{}", cluster.nodes[0].admin.unwrap());
    set_password(&cluster);
    actix_rt::System::new().block_on(async move {
        let client = client(&cluster.dir);
        let login = format!("{base}/api/login");
        // Nothing without a session; a wrong code (or password) is refused
        // without saying which.
        let (status, _) = get(&client, &format!("{base}/api/cluster"), "nonsense").await;
        assert_eq!(status, 401);
        let wrong = serde_json::json!({ "name": "admin", "password": PASSWORD, "code": "000000" });
        let (status, body) = post(&client, &login, None, wrong).await;
        assert_eq!(status, 401, "{body}");
        assert!(body["error"].as_str().unwrap().contains("wrong name, password or TOTP code"), "{body}");
        let wrong = serde_json::json!({ "name": "admin", "password": "not the password", "code": admin_code_in(&cluster.dir, 1) });
        let (status, body) = post(&client, &login, None, wrong).await;
        assert_eq!(status, 401, "{body}");
        // The next step's code (the passwd command used this one's).
        let right = serde_json::json!({ "name": "admin", "password": PASSWORD, "code": admin_code_in(&cluster.dir, 1) });
        let (status, body) = post(&client, &login, None, right).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["roles"], serde_json::json!(["operator", "admin"]));
        let token = body["token"].as_str().unwrap().to_owned();

        // Every view; the nodes view fills once both nodes answer.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut poll = tokio::time::interval(Duration::from_millis(200));
        loop {
            poll.tick().await;
            let (status, body) = get(&client, &format!("{base}/api/view/nodes"), &token).await;
            assert_eq!(status, 200);
            let nodes: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let answered = nodes.as_array().unwrap().iter().filter(|n| n["local"].is_object()).count();
            if answered == 2 {
                break;
            }
            assert!(Instant::now() < deadline, "nodes: {nodes}");
        }
        for view in ["actors", "links", "services", "tasks", "events", "trace"] {
            let (status, body) = get(&client, &format!("{base}/api/view/{view}"), &token).await;
            assert_eq!(status, 200, "{view}: {}", String::from_utf8_lossy(&body));
            serde_json::from_slice::<serde_json::Value>(&body).unwrap();
        }
        let (status, _) = get(&client, &format!("{base}/api/view/nonsense"), &token).await;
        assert_eq!(status, 404);
        let (_, body) = get(&client, &format!("{base}/api/view/actors"), &token).await;
        let actors: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
        assert!(actors.iter().any(|a| a["name"] == "swarm.inspect" && a["system"] == true));

        // /metrics: OpenMetrics text a Prometheus parser reads, whose
        // counters move as messages flow (each inspection is one).
        let (status, text) = get(&client, &format!("{base}/metrics"), &token).await;
        assert_eq!(status, 200);
        let text = String::from_utf8(text).unwrap();
        let before = metric(&text, "swarm_actor_messages_total", "swarm.inspect").unwrap();
        for name in [
            "swarm_node_uptime_s",
            "swarm_members_alive",
            "swarm_mesh_forbidden_total",
            "swarm_raft_term",
            "swarm_tasks_submitted_total",
            "swarm_link_msgs_in_total",
            "swarm_actor_handling_seconds_bucket",
        ] {
            assert!(text.contains(name), "{name} missing:\n{text}");
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut poll = tokio::time::interval(Duration::from_millis(200));
        loop {
            poll.tick().await;
            let _ = get(&client, &format!("{base}/api/cluster"), &token).await;
            let (_, text) = get(&client, &format!("{base}/metrics"), &token).await;
            let now = metric(&String::from_utf8(text).unwrap(), "swarm_actor_messages_total", "swarm.inspect").unwrap();
            if now > before {
                break;
            }
            assert!(Instant::now() < deadline, "swarm_actor_messages_total stays {before}");
        }

        // An action: as the operator's (admin) it reaches the host; an
        // unknown actor is the host's answer, not a refusal.
        let worker = cluster.nodes[1].id.to_string();
        let action = serde_json::json!({ "action": "restart", "node": worker, "name": "no-such-actor" });
        let (status, body) = post(&client, &format!("{base}/api/action"), Some(&token), action).await;
        assert_eq!(status, 409, "{body}");
        assert!(!body["error"].as_str().unwrap().contains("forbidden"), "{body}");

        // A POST with the session cookie needs the request header (a page
        // of another site cannot set it).
        let cookie = format!("swarm_session={token}");
        let body = serde_json::json!({ "action": "untrace", "node": worker, "name": "x" });
        let response = client
            .post(format!("{base}/api/action"))
            .insert_header(("Cookie", cookie.as_str()))
            .send_json(&body)
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 403);
        let response = client
            .post(format!("{base}/api/action"))
            .insert_header(("Cookie", cookie.as_str()))
            .insert_header(("X-Swarm-Request", "1"))
            .send_json(&body)
            .await
            .unwrap();
        assert_ne!(response.status().as_u16(), 403);

        // The stream pushes the cluster view; a logout ends it (and the
        // session).
        let (mut stream, mut events) =
            open_stream(&client, &base, &token, Duration::from_secs(30)).await;
        let (status, _) = post(&client, &format!("{base}/api/logout"), Some(&token), serde_json::json!({})).await;
        assert_eq!(status, 200);
        while let Some(chunk) = next(&mut stream).await {
            events.extend_from_slice(chunk.unwrap().as_ref());
        }
        let events = String::from_utf8_lossy(&events);
        assert!(events.ends_with("event: ended\ndata: {}\n\n"), "{events}");
        let (status, _) = get(&client, &format!("{base}/api/whoami"), &token).await;
        assert_eq!(status, 401);
    });
}

/// `swarm admin login` for the operator of `config` called `name`: its
/// bearer token (retrying while the head group forms).
fn certificate_login(cluster: &LocalCluster, config: &std::path::Path, name: &str) -> String {
    let seed = cluster.nodes[0].addr.to_string();
    let out = until_ok("admin login", || {
        let mut login = Command::new(exe());
        login
            .args(["admin", "login", "--json", "--config"])
            .arg(config)
            .args(["--node", &seed])
            .args(["--totp", &operator_code_in(&cluster.dir, name, 0)]);
        login
    });
    let session: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert!(session["url"]
        .as_str()
        .unwrap()
        .starts_with("https://127.0.0.1:"));
    session["token"].as_str().unwrap().to_owned()
}

#[test]
fn a_certificate_login_opens_a_session_and_each_node_decides_with_the_operators_roles() {
    let dir = scratch("admin-api-cert");
    let mut cluster = LocalCluster::start_control_admin(&exe(), &dir, 1, 1, &[]).unwrap();
    cluster.remove_dir_on_drop(true);
    let base = format!("https://{}", cluster.nodes[0].admin.unwrap());
    let admin = certificate_login(&cluster, &cluster.admin_config(), "admin");
    let viewer = certificate_login(&cluster, &cluster.viewer_config(), "viewer");
    // A node certificate opens no session: it needs no second factor.
    let out = Command::new(exe())
        .args(["admin", "login", "--config"])
        .arg(cluster.driver_config())
        .args(["--node", &cluster.nodes[0].addr.to_string()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("operator certificates"));
    actix_rt::System::new().block_on(async move {
        let client = client(&cluster.dir);
        let (status, body) = get(&client, &format!("{base}/api/whoami"), &admin).await;
        assert_eq!(status, 200);
        let who: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(who["name"], "admin");
        // Every metric the README names is exported.
        let metrics = |token: String| {
            let (client, url) = (client.clone(), format!("{base}/metrics"));
            async move {
                let (status, text) = get(&client, &url, &token).await;
                assert_eq!(status, 200);
                String::from_utf8(text).unwrap()
            }
        };
        // (Link rows appear once the collector's first refresh saw links.)
        let names = readme_metrics();
        assert!(names.len() >= 30, "{names:?}");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut poll = tokio::time::interval(Duration::from_millis(100));
        let before = loop {
            poll.tick().await;
            let text = metrics(admin.clone()).await;
            let missing = names
                .iter()
                .find(|name| !text.lines().any(|l| l.starts_with(name.as_str())));
            match missing {
                None => break text,
                Some(name) => assert!(
                    Instant::now() < deadline,
                    "{name} is in the README but not exported:\n{text}"
                ),
            }
        };

        // The viewer reads every node...
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut poll = tokio::time::interval(Duration::from_millis(200));
        loop {
            poll.tick().await;
            let (status, body) = get(&client, &format!("{base}/api/view/nodes"), &viewer).await;
            assert_eq!(status, 200);
            let nodes: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
            if nodes.iter().filter(|n| n["local"].is_object()).count() == 2 {
                break;
            }
            assert!(Instant::now() < deadline, "{nodes:?}");
        }
        // ...but the worker refuses its restart: only admin operators
        // restart, whoever's node asks.
        let worker = cluster.nodes[1].id.to_string();
        let action = serde_json::json!({ "action": "restart", "node": worker, "name": "anything" });
        let (status, body) = post(
            &client,
            &format!("{base}/api/action"),
            Some(&viewer),
            action.clone(),
        )
        .await;
        assert_eq!(status, 403, "{body}");
        assert!(
            body["error"].as_str().unwrap().contains("admin operators"),
            "{body}"
        );
        // The admin's is decided on: the host has no such actor.
        let (status, body) =
            post(&client, &format!("{base}/api/action"), Some(&admin), action).await;
        assert_eq!(status, 409, "{body}");
        assert!(
            body["error"].as_str().unwrap().contains("anything"),
            "{body}"
        );
        // The worker's audit log names the operators, not the node that
        // asked for them: the admin's restart, the viewer's refusal.
        // (The node's writer thread appends them: poll.)
        let config = cluster.dir.join("n2.toml");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut poll = tokio::time::interval(Duration::from_millis(100));
        loop {
            poll.tick().await;
            let records =
                crate::util::swarm_json(&["audit", "--config", config.to_str().unwrap(), "--json"]);
            let has = |kind: &str, who: &str| {
                records.as_array().unwrap().iter().any(|r| {
                    r["kind"] == kind && r["who"] == who && r["tag"] == "swarm.HostRestart"
                })
            };
            if has("command", "admin") && has("forbidden", "viewer") {
                break;
            }
            assert!(Instant::now() < deadline, "{records}");
        }
        // This node's own refusal of the viewer, counted.
        let head = cluster.nodes[0].id.to_string();
        let action = serde_json::json!({ "action": "restart", "node": head, "name": "anything" });
        let (status, _) = post(
            &client,
            &format!("{base}/api/action"),
            Some(&viewer),
            action,
        )
        .await;
        assert_eq!(status, 403);

        // The counters move as traffic flows: inspections (asks to
        // swarm.inspect), the links' messages and bytes, the refusal.
        let moving = [
            "swarm_actor_messages_total",
            "swarm_actor_asks_total",
            "swarm_link_msgs_in_total",
            "swarm_link_msgs_out_total",
            "swarm_link_bytes_in_total",
            "swarm_link_bytes_out_total",
            "swarm_mesh_forbidden_total",
            "swarm_node_uptime_s",
        ];
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut poll = tokio::time::interval(Duration::from_millis(300));
        loop {
            poll.tick().await;
            let _ = get(&client, &format!("{base}/api/cluster"), &admin).await;
            let now = metrics(admin.clone()).await;
            let still: Vec<&str> = moving
                .iter()
                .copied()
                .filter(|m| total(&now, m) <= total(&before, m))
                .collect();
            if still.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "{still:?} did not move");
        }
    });
}
