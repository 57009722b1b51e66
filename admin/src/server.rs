//! The admin API: HTTPS (actix-web, rustls) on an address of the node's
//! configuration, JSON for every view of the console, `/metrics` for
//! Prometheus, a live stream of the cluster (server-sent events) and the
//! web dashboard that reads it.
//!
//! # Login
//!
//! With a certificate: `swarm admin login --config op.toml --node ADDR`
//! logs in over the mesh (the certificate proven in the Noise handshake,
//! then a TOTP code) and asks the node for a session of its admin API;
//! it prints the bearer token.
//!
//! With a password: `POST /api/login` with `{"name", "password", "code"}`: the operator's
//! certificate name, the password it set (`swarm operator passwd`) and a
//! TOTP code. The node forwards it to the head leader, which checks both
//! factors with the console's lockouts and replay rule and answers a
//! session token; from then on this node asks every member *on the
//! operator's behalf* (see `swarm_actors::operators::delegate`), so each
//! member's policy and audit log see the operator, not the node. The
//! answer sets an `HttpOnly`, `Secure`, `SameSite=Strict` cookie and
//! also carries the session as `token` for `Authorization: Bearer`
//! (scripts, curl). A session lasts as long as the head's token (15
//! minutes) and ends with `POST /api/logout`, or when the operator's
//! certificate is revoked: every request checks the serial against what
//! the node knows (it learns revocations with each lease renewal, a fifth
//! of the lease: 600 ms by default) and every event stream checks it each
//! 200 ms, so a revoked operator's requests are refused and its streams
//! end (an `ended` event) within 2 s of `swarm cert revoke`.
//!
//! # Routes
//!
//! | Route | What |
//! |---|---|
//! | `GET /` | the dashboard |
//! | `POST /api/login`, `POST /api/logout`, `GET /api/whoami` | sessions |
//! | `GET /api/cluster` | the whole [`ClusterView`](swarm_actors::inspector::ClusterView) |
//! | `GET /api/view/{nodes,actors,links,services,tasks,events,trace}` | one view |
//! | `GET /api/stream` | the cluster view once a refresh, as server-sent events |
//! | `GET /api/actor?node=ID&name=NAME` | an actor's inspect-hook state |
//! | `POST /api/action` | `{"action": "restart"/"stop"/"drain"/"trace"/"untrace", "node", "name"}` |
//! | `GET /metrics` | this node's metrics, OpenMetrics text |
//!
//! A `POST` authenticated by the cookie must carry `X-Swarm-Request: 1`
//! (a page of another site cannot set it).

mod routes;
mod sessions;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::Actor as _;
use actix_web::dev::ServerHandle;
use swarm_actors::operators::{AdminSession, OpenAdminSession};
use swarm_actors::Node;

use sessions::Sessions;

/// Where and how a node serves the admin API.
#[derive(Clone)]
pub struct AdminConfig {
    /// The address to listen on.
    pub listen: SocketAddr,
    /// TLS (see [`crate::tls::server_config`]).
    pub tls: Arc<rustls::ServerConfig>,
    /// How often the stream sends the cluster view.
    pub refresh: Duration,
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("listen", &self.listen)
            .field("refresh", &self.refresh)
            .finish_non_exhaustive()
    }
}

/// A running admin API.
#[derive(Debug)]
pub struct AdminServer {
    addr: SocketAddr,
    handle: ServerHandle,
}

impl AdminServer {
    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops it (open streams end).
    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }
}

/// What every request handler shares.
pub(crate) struct Shared {
    pub(crate) node: Node,
    pub(crate) sessions: Sessions,
    pub(crate) refresh: Duration,
    /// Password logins by source address, taken before a login is
    /// forwarded to the head leader: a flood stops here.
    pub(crate) login_buckets:
        std::sync::Mutex<swarm_actors::operators::bucket::Buckets<std::net::IpAddr>>,
}

/// Opens sessions for operators who logged in over the mesh.
struct Opener {
    shared: actix_web::web::Data<Shared>,
    url: String,
}

impl actix::Actor for Opener {
    type Context = actix::Context<Self>;
}

impl actix::Handler<OpenAdminSession> for Opener {
    type Result = Result<AdminSession, String>;

    fn handle(&mut self, msg: OpenAdminSession, _: &mut Self::Context) -> Self::Result {
        let behalf = Arc::new(msg.behalf);
        let expires_ms = behalf.expires_ms();
        let token = routes::open(&self.shared, Arc::clone(&behalf))?;
        tracing::info!(operator = %behalf.name(), source = %behalf.source(), "operator logged in to the admin API with its certificate");
        Ok(AdminSession {
            token,
            url: self.url.clone(),
            expires_ms,
        })
    }
}

/// Starts serving `node`'s admin API (on this actix system).
///
/// # Errors
///
/// If the address cannot be bound.
pub fn start(node: Node, config: AdminConfig) -> std::io::Result<AdminServer> {
    let listener = std::net::TcpListener::bind(config.listen)?;
    let addr = listener.local_addr()?;
    let shared = actix_web::web::Data::new(Shared {
        node: node.clone(),
        sessions: Sessions::new(node.clone()),
        refresh: config.refresh,
        login_buckets: std::sync::Mutex::new(swarm_actors::operators::bucket::Buckets::logins()),
    });
    let opener = Opener {
        shared: shared.clone(),
        url: format!("https://{addr}"),
    }
    .start();
    node.serve_admin_sessions(opener.recipient());
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(shared.clone())
            .app_data(actix_web::web::JsonConfig::default().limit(64 * 1024))
            .wrap(
                actix_web::middleware::DefaultHeaders::new()
                    .add(("X-Content-Type-Options", "nosniff"))
                    .add(("Referrer-Policy", "no-referrer"))
                    .add(("X-Frame-Options", "DENY"))
                    .add((
                        "Content-Security-Policy",
                        "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
                    ))
                    .add(("Strict-Transport-Security", "max-age=31536000")),
            )
            .configure(routes::routes)
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .listen_rustls_0_23(listener, rustls::ServerConfig::clone(&config.tls))?
    .run();
    let handle = server.handle();
    actix_rt::spawn(async move {
        if let Err(e) = server.await {
            tracing::error!(error = %e, "the admin API stopped");
        }
    });
    tracing::info!(%addr, "admin API listening (https)");
    Ok(AdminServer { addr, handle })
}
