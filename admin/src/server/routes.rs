//! The admin API's routes (see the module docs of [`super`]).

use std::sync::Arc;

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use swarm_actors::control::ControlError;
use swarm_actors::operators::Behalf;
use swarm_protocol::NodeId;

use super::sessions::OpSession;
use super::Shared;
use crate::collect::Collector;

/// The session cookie's name.
const COOKIE: &str = "swarm_session";
/// The most bytes of a login's JSON body (a name, a password of at most
/// 1 KiB, a code).
const LOGIN_BODY_LIMIT: usize = 4096;
/// The header a cookie-authenticated `POST` must carry.
const REQUEST_HEADER: &str = "x-swarm-request";
/// How often an event stream checks that its session still holds (not
/// expired, logged out or revoked).
const SESSION_CHECK: std::time::Duration = std::time::Duration::from_millis(200);

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index))
        .route("/app.js", web::get().to(script))
        .route("/style.css", web::get().to(style))
        .service(
            web::resource("/api/login")
                // A login is a few hundred bytes: a bigger body is refused
                // before it is read further.
                .app_data(web::JsonConfig::default().limit(LOGIN_BODY_LIMIT))
                .route(web::post().to(login)),
        )
        .route("/api/logout", web::post().to(logout))
        .route("/api/whoami", web::get().to(whoami))
        .route("/api/cluster", web::get().to(cluster))
        .route("/api/view/{view}", web::get().to(view))
        .route("/api/stream", web::get().to(stream))
        .route("/api/actor", web::get().to(actor_state))
        .route("/api/action", web::post().to(action))
        .route("/metrics", web::get().to(metrics));
}

fn error(status: StatusCode, message: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({ "error": message.into() }))
}

/// A refusal for load: `status` (429 or 503) with a `Retry-After` of
/// `wait` (whole seconds, at least 1).
fn retry_later(
    status: StatusCode,
    wait: std::time::Duration,
    message: impl Into<String>,
) -> HttpResponse {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::RETRY_AFTER, seconds.max(1).to_string()))
        .json(serde_json::json!({ "error": message.into() }))
}

fn json(value: &impl serde::Serialize) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(value)
}

async fn index() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(include_str!("../dashboard/index.html"))
}

async fn script() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .body(include_str!("../dashboard/app.js"))
}

async fn style() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .body(include_str!("../dashboard/style.css"))
}

/// A request refused before it is handled.
struct Denied(StatusCode, String);

impl Denied {
    fn response(self) -> HttpResponse {
        error(self.0, self.1)
    }
}

/// The session a request names, by bearer token or cookie (then a `POST`
/// must carry [`REQUEST_HEADER`]).
fn session(shared: &Shared, req: &HttpRequest) -> Result<(String, Arc<OpSession>), Denied> {
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let id = match bearer {
        Some(id) => id,
        None => {
            let cookie = req.cookie(COOKIE).map(|c| c.value().to_owned());
            let Some(id) = cookie else {
                return Err(Denied(StatusCode::UNAUTHORIZED, "log in first".into()));
            };
            if req.method() == actix_web::http::Method::POST
                && req.headers().get(REQUEST_HEADER).is_none()
            {
                return Err(Denied(
                    StatusCode::FORBIDDEN,
                    format!("a request with the session cookie needs the {REQUEST_HEADER} header"),
                ));
            }
            id
        }
    };
    match shared.sessions.get(&id) {
        Some(s) => Ok((id, s)),
        None => Err(Denied(
            StatusCode::UNAUTHORIZED,
            "the session ended or is unknown: log in again".into(),
        )),
    }
}

#[derive(Deserialize)]
struct LoginBody {
    name: String,
    password: String,
    code: String,
}

async fn login(
    shared: web::Data<Shared>,
    req: HttpRequest,
    body: web::Json<LoginBody>,
) -> HttpResponse {
    let Some(source) = req.peer_addr().map(|a| a.ip()) else {
        return error(StatusCode::BAD_REQUEST, "no peer address");
    };
    // Before anything is checked or forwarded: this source's bucket.
    let limited = shared
        .login_buckets
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take(
            &swarm_actors::operators::bucket::source_key(source),
            std::time::Instant::now(),
        );
    if let Err(wait) = limited {
        tracing::warn!(%source, "admin API login refused: too many from this source");
        return retry_later(
            StatusCode::TOO_MANY_REQUESTS,
            wait,
            "too many logins from this address: try again later",
        );
    }
    let Some(control) = shared.node.control().cloned() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "this node runs without membership: log in through a member",
        );
    };
    let LoginBody {
        name,
        password,
        code,
    } = body.into_inner();
    let password = zeroize::Zeroizing::new(password);
    if !swarm_actors::operators::password::login_fits(&name, &password, &code) {
        return error(
            StatusCode::UNAUTHORIZED,
            swarm_actors::operators::guard::PASSWORD_REFUSED,
        );
    }
    let answer = control
        .login_password(&name, &password, &code, source)
        .await;
    let behalf = match answer {
        Ok(behalf) => Arc::new(behalf),
        Err(ControlError::Forbidden { reason } | ControlError::Refused { reason }) => {
            tracing::warn!(operator = %name, %source, %reason, "admin API login refused");
            return error(StatusCode::UNAUTHORIZED, reason);
        }
        Err(e @ (ControlError::NotAnOperator | ControlError::Login(_))) => {
            tracing::warn!(operator = %name, %source, "admin API login refused: {e}");
            return error(StatusCode::UNAUTHORIZED, e.to_string());
        }
        Err(ControlError::Busy { retry_after_ms }) => {
            tracing::warn!(operator = %name, %source, "admin API login refused: the head leader is busy");
            return retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                std::time::Duration::from_millis(retry_after_ms),
                "too many logins now: try again later",
            );
        }
        Err(e) => {
            return retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                std::time::Duration::from_secs(1),
                e.to_string(),
            )
        }
    };
    let id = match open(&shared, Arc::clone(&behalf)) {
        Ok(id) => id,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    tracing::info!(operator = %behalf.name(), %source, "operator logged in to the admin API");
    let cookie = actix_web::cookie::Cookie::build(COOKIE, id.clone())
        .path("/")
        .http_only(true)
        .secure(true)
        .same_site(actix_web::cookie::SameSite::Strict)
        .finish();
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .cookie(cookie)
        .json(serde_json::json!({
            "name": behalf.name(),
            "roles": behalf.roles(),
            "expires_ms": behalf.expires_ms(),
            "token": id,
        }))
}

/// Opens a session for `behalf`: a collector asking for it. Answers the
/// session's id.
pub(super) fn open(shared: &Shared, behalf: Arc<Behalf>) -> Result<String, String> {
    let node = shared.node.clone();
    let mut collector =
        Collector::new(node.clone(), node.listen_addr(), node.id()).on_behalf(Arc::clone(&behalf));
    if let Some(control) = node.control() {
        collector = collector.with_control(control.clone());
    }
    shared.sessions.open(behalf, collector)
}

async fn logout(shared: web::Data<Shared>, req: HttpRequest) -> HttpResponse {
    match session(&shared, &req) {
        Ok((id, _)) => {
            shared.sessions.close(&id);
            let mut gone = actix_web::cookie::Cookie::build(COOKIE, "")
                .path("/")
                .finish();
            gone.make_removal();
            HttpResponse::Ok()
                .cookie(gone)
                .json(serde_json::json!({ "ok": true }))
        }
        Err(e) => e.response(),
    }
}

async fn whoami(shared: web::Data<Shared>, req: HttpRequest) -> HttpResponse {
    match session(&shared, &req) {
        Ok((_, s)) => json(&serde_json::json!({
            "name": s.behalf.name(),
            "roles": s.behalf.roles(),
            "expires_ms": s.behalf.expires_ms(),
            "node": shared.node.name(),
        })),
        Err(e) => e.response(),
    }
}

async fn cluster(shared: web::Data<Shared>, req: HttpRequest) -> HttpResponse {
    let s = match session(&shared, &req) {
        Ok((_, s)) => s,
        Err(e) => return e.response(),
    };
    match s.view().await {
        Ok(view) => json(&*view),
        Err(e) => error(StatusCode::BAD_GATEWAY, e),
    }
}

async fn view(
    shared: web::Data<Shared>,
    req: HttpRequest,
    name: web::Path<String>,
) -> HttpResponse {
    let s = match session(&shared, &req) {
        Ok((_, s)) => s,
        Err(e) => return e.response(),
    };
    let view = match s.view().await {
        Ok(view) => view,
        Err(e) => return error(StatusCode::BAD_GATEWAY, e),
    };
    match name.as_str() {
        "nodes" => json(&view.nodes),
        "actors" => json(&view.actors),
        "links" => json(&serde_json::json!({ "links": view.links, "closed": view.closed })),
        "services" => json(&view.services),
        "tasks" => json(&view.tasks),
        "events" => json(&view.events),
        "trace" => json(&serde_json::json!({ "traced": view.traced, "trace": view.trace })),
        other => error(
            StatusCode::NOT_FOUND,
            format!("no view {other:?}: nodes, actors, links, services, tasks, events or trace"),
        ),
    }
}

/// Server-sent events: the cluster view as one `view` event a refresh,
/// until the client goes or the session ends (then an `ended` event). The
/// session is checked every [`SESSION_CHECK`] whatever the refresh, also
/// while a view is being collected.
async fn stream(shared: web::Data<Shared>, req: HttpRequest) -> HttpResponse {
    let (id, s) = match session(&shared, &req) {
        Ok(found) => found,
        Err(e) => return e.response(),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<web::Bytes>(2);
    let refresh = shared.refresh;
    let shared = shared.into_inner();
    actix_rt::spawn(async move {
        let mut tick = tokio::time::interval(refresh);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next = async {
                tick.tick().await;
                match s.view().await {
                    Ok(view) => match serde_json::to_string(&*view) {
                        Ok(text) => format!("event: view\ndata: {text}\n\n"),
                        Err(e) => format!(
                            "event: problem\ndata: {}\n\n",
                            serde_json::json!(e.to_string())
                        ),
                    },
                    Err(e) => format!("event: problem\ndata: {}\n\n", serde_json::json!(e)),
                }
            };
            let event = tokio::select! {
                biased;
                // Ended by its time, a revocation, a logout or a newer
                // session pushing it out.
                () = ended(&shared, &id) => {
                    let _ = tx
                        .send(web::Bytes::from_static(b"event: ended\ndata: {}\n\n"))
                        .await;
                    return;
                }
                event = next => event,
            };
            if tx.send(web::Bytes::from(event)).await.is_err() {
                return;
            }
        }
    });
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("X-Accel-Buffering", "no"))
        .content_type("text/event-stream")
        .streaming(Events(rx))
}

/// Returns once session `id` has ended (checked now, then every
/// [`SESSION_CHECK`]).
async fn ended(shared: &Shared, id: &str) {
    while shared.sessions.get(id).is_some() {
        tokio::time::sleep(SESSION_CHECK).await;
    }
}

/// A channel of event bytes as a body stream.
struct Events(tokio::sync::mpsc::Receiver<web::Bytes>);

impl futures_core::Stream for Events {
    type Item = Result<web::Bytes, std::convert::Infallible>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|b| b.map(Ok))
    }
}

#[derive(Deserialize)]
struct ActorQuery {
    node: String,
    name: String,
}

async fn actor_state(
    shared: web::Data<Shared>,
    req: HttpRequest,
    query: web::Query<ActorQuery>,
) -> HttpResponse {
    let s = match session(&shared, &req) {
        Ok((_, s)) => s,
        Err(e) => return e.response(),
    };
    let Ok(node) = query.node.parse::<NodeId>() else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("bad node id {}", query.node),
        );
    };
    let state = s.collector.actor_state(node, &query.name).await;
    json(&serde_json::json!({ "node": query.node, "name": query.name, "state": state }))
}

#[derive(Deserialize)]
struct ActionBody {
    action: String,
    #[serde(default)]
    node: String,
    name: String,
}

async fn action(
    shared: web::Data<Shared>,
    req: HttpRequest,
    body: web::Json<ActionBody>,
) -> HttpResponse {
    let s = match session(&shared, &req) {
        Ok((_, s)) => s,
        Err(e) => return e.response(),
    };
    let node = || {
        body.node
            .parse::<NodeId>()
            .map_err(|_| format!("bad node id {:?}", body.node))
    };
    let c = &s.collector;
    let done = match body.action.as_str() {
        "restart" => match node() {
            Ok(id) => c.restart(id, &body.name).await,
            Err(e) => Err(e),
        },
        "stop" => c.stop(&body.name).await,
        "drain" => match node() {
            Ok(id) => c.drain(id, &body.name).await,
            Err(e) => Err(e),
        },
        "trace" | "untrace" => match node() {
            Ok(id) => {
                let on = body.action == "trace";
                c.trace(id, &body.name, on)
                    .await
                    .map(|()| {
                        format!(
                            "{} {}",
                            if on { "tracing" } else { "stopped tracing" },
                            body.name
                        )
                    })
                    .map_err(|e| format!("trace {}: {e}", body.name))
            }
            Err(e) => Err(e),
        },
        other => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("no action {other:?}: restart, stop, drain, trace or untrace"),
            )
        }
    };
    tracing::info!(operator = %s.behalf.name(), action = %body.action, name = %body.name, ok = done.is_ok(), "admin API action");
    match done {
        Ok(message) => json(&serde_json::json!({ "ok": true, "message": message })),
        Err(message) => {
            let status = if message.contains("forbidden: ") {
                StatusCode::FORBIDDEN
            } else {
                StatusCode::CONFLICT
            };
            HttpResponse::build(status).json(serde_json::json!({ "ok": false, "error": message }))
        }
    }
}

async fn metrics(shared: web::Data<Shared>, req: HttpRequest) -> HttpResponse {
    let s = match session(&shared, &req) {
        Ok((_, s)) => s,
        Err(e) => return e.response(),
    };
    match s.collector.own_snapshot().await {
        Ok(snapshot) => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
            .body(crate::metrics::exposition(&snapshot)),
        Err(e) => error(StatusCode::BAD_GATEWAY, e),
    }
}
