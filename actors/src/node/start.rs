//! [`Node::start`]'s steps: bind and check the node's own identity, take
//! each room's part of the configuration, start the transport (and with
//! membership the cluster), then the membership rooms (head, control,
//! tasks) and the services every node exposes. Each step hands the rooms
//! it starts the doors they need; no room reaches another through the mesh.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor as _, Addr};
use tokio::net::TcpListener;

use super::Node;
use crate::audit::Trail;
use crate::cluster::{Cluster, ClusterConfig, CLUSTER_ACTOR};
use crate::config::MeshConfig;
use crate::control::Control;
use crate::directory::{Directory, Entry};
use crate::error::{HeadStartError, StartError};
use crate::head::{Head, HeadConfig, Store};
use crate::mesh::{unix_now, Detected, Mesh};
use crate::operators::sessions::{Keys, Sessions};
use crate::supervision::{Host, Leave, Registry, HOST_ACTOR};
use crate::tasks::Tasks;

/// The bound sockets, and the address the node announces.
pub(super) struct Sockets {
    tcp: TcpListener,
    udp: Option<std::net::UdpSocket>,
    /// Bound to a wildcard address with nothing to announce: a seed tells
    /// the node its address.
    detect: bool,
    seeds: Vec<SocketAddr>,
}

/// Checks that the node's certificate is its key's and valid under its CA,
/// binds the listener (and with membership the gossip socket), and fills
/// in the bound and announced addresses.
pub(super) async fn bind_checked(config: &mut MeshConfig) -> Result<Sockets, StartError> {
    let hs = &config.handshake;
    if hs.cert.body().static_key != *hs.key.public() {
        return Err(StartError::KeyMismatch);
    }
    hs.trust
        .verify(&hs.cert, unix_now(), Some(hs.key.public()))?;
    let (tcp, udp) = bind(config).await?;
    let listen = tcp.local_addr().map_err(|source| StartError::Bind {
        addr: config.listen,
        source,
    })?;
    config.listen = listen;
    let advertised = config.advertise.unwrap_or(listen);
    let detect = advertised.ip().is_unspecified();
    let seeds = config
        .cluster
        .as_ref()
        .map(|c| c.seeds.clone())
        .unwrap_or_default();
    if detect && seeds.is_empty() {
        return Err(StartError::NoAdvertise { listen });
    }
    // The hello announces no address until one is known.
    config.handshake.listen = if detect {
        String::new()
    } else {
        advertised.to_string()
    };
    Ok(Sockets {
        tcp,
        udp,
        detect,
        seeds,
    })
}

/// The rooms' parts of the configuration, checked against the node's
/// certificate before anything starts.
pub(super) struct Rooms {
    cluster: Option<ClusterConfig>,
    /// The head's configuration and its store, opened (and checked
    /// whole) before any actor starts: a damaged one stops the start with
    /// nothing to tear down.
    pub(super) head: Option<(HeadConfig, Store)>,
    pub(super) summary_interval: Duration,
}

impl Rooms {
    /// Takes membership and the head out of `config`.
    pub(super) fn take(config: &mut MeshConfig) -> Result<Self, StartError> {
        let cluster = config.cluster.take();
        let head = config.head.take();
        let roles = &config.handshake.cert.body().roles;
        if cluster.is_some()
            && !roles
                .iter()
                .any(|r| crate::policy::NODE_ROLES.contains(&r.as_str()))
        {
            return Err(StartError::NotANode {
                roles: roles.clone(),
            });
        }
        let is_head = roles.iter().any(|r| r == "head");
        if let Some(head) = &head {
            if cluster.is_none() || !is_head {
                return Err(HeadStartError::NotAHead {
                    dir: head.dir.clone(),
                }
                .into());
            }
        }
        let head = match head {
            Some(head) => {
                let store = crate::head::open_store(&head)?;
                Some((head, store))
            }
            None => None,
        };
        Ok(Self {
            cluster,
            head,
            summary_interval: config.summary_interval,
        })
    }
}

/// Stops an arbiter when dropped: held by a task of the node's own
/// thread, which drops it when that thread stops.
struct StopsWith(actix::ArbiterHandle);

impl Drop for StopsWith {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// What a drained node's leave waits on.
pub(super) struct Drained {
    pub(super) asked: tokio::sync::watch::Receiver<bool>,
    pub(super) left: tokio::sync::watch::Sender<bool>,
}

/// Starts the transport (the directory, operator sessions and the mesh;
/// the announced address detected, the first relay reached), with
/// membership the cluster, and the host that starts actors on request.
pub(super) async fn transport(
    config: MeshConfig,
    sockets: Sockets,
    rooms: &Rooms,
) -> Result<(Node, Addr<Host>, Option<Drained>), StartError> {
    let listen = config.listen;
    let relayed = config.relayed;
    let detect_within = config.handshake_timeout;
    // Relays learned through membership come later; configured ones are dialed now.
    let wait_for_relays =
        (config.relayed && !config.relays.is_empty()).then_some(config.handshake_timeout);
    let directory = Directory::default();
    if !config.counters {
        directory.set_uncounted(true);
    }
    let audit = Trail::new(config.audit.clone());
    let policy = Arc::clone(&config.policy);
    let keys = Arc::new(Keys::default());
    let mesh = Mesh::start(config.mesh(), sockets.tcp, directory.clone(), keys.clone());
    if rooms.head.is_some() {
        // A head's Raft and its links to other heads get a thread of their
        // own before any link is made (`crate::head::Head::start`); it
        // stops with this one (a node whose thread stops is gone whole,
        // as a killed process is).
        let thread = actix::Arbiter::new().handle();
        mesh.set_priority_thread(thread.clone());
        actix::spawn(async move {
            let _stops = StopsWith(thread);
            std::future::pending::<()>().await;
        });
    }
    let sessions = Sessions::new(keys, mesh.clone());
    if sockets.detect {
        match mesh.detect_address(&sockets.seeds, detect_within).await {
            Detected::Confirmed(addr) => {
                tracing::info!(%addr, "announcing the address a seed dialed back");
                mesh.set_detected(addr);
            }
            // Nobody dials a relayed node; the address names it in membership.
            Detected::Unconfirmed(addr) if relayed => {
                tracing::info!(%addr, "announcing the address a seed saw (reached through relays)");
                mesh.set_detected(addr);
            }
            _ => {
                mesh.shutdown();
                return Err(StartError::NoAdvertise { listen });
            }
        }
    }
    if let Some(within) = wait_for_relays {
        // The first metadata then names the relays others reach it by.
        first_relay(&mesh, within).await;
    }
    let cluster = match (sockets.udp, rooms.cluster.clone()) {
        (Some(socket), Some(config)) => Some(Cluster::start(
            mesh.clone(),
            directory.clone(),
            socket,
            config,
        )?),
        _ => None,
    };
    let types = Registry::new(mesh.id());
    let (left_tx, left) = tokio::sync::watch::channel(false);
    let node = Node {
        mesh,
        directory,
        sessions,
        audit,
        policy,
        cluster,
        arbiter: actix::Arbiter::current(),
        types,
        control: None,
        head: None,
        tasks: None,
        left,
    };
    // The host hears the head's `HostLeave`; the node leaves and shuts
    // down once it is assembled (`leave_when_drained`).
    let (asked_tx, asked) = tokio::sync::watch::channel(false);
    let leave: Option<Leave> = node.cluster.is_some().then(|| {
        let leave: Leave = Arc::new(move || {
            asked_tx.send_replace(true);
        });
        leave
    });
    let host = Host::new(
        node.types.clone(),
        node.directory.clone(),
        node.arbiter.clone(),
        leave,
    )
    .start();
    // Starting actors on request is for the control plane and operators.
    let entry = Arc::new(Entry::declared(host.clone()).stamped::<crate::supervision::HostSpawn>());
    let exposed = node.directory.insert(HOST_ACTOR.to_owned(), entry);
    debug_assert!(exposed, "a new node's directory is empty");
    let drained = node.cluster.is_some().then_some(Drained {
        asked,
        left: left_tx,
    });
    Ok((node, host, drained))
}

impl Node {
    /// With membership: bridges membership into the mesh, exposes the
    /// cluster actor, and starts the head (on head nodes), the control
    /// plane's client with its lease keeper, and the task scheduler.
    pub(super) async fn start_membership(
        &mut self,
        cluster: Cluster,
        head: Option<(HeadConfig, Store)>,
        host: &Addr<Host>,
    ) -> Result<(), StartError> {
        super::bridge(
            self.mesh.clone(),
            self.directory.events().clone(),
            cluster.clone(),
        );
        let entry = Entry::declared(cluster.agent());
        let exposed = self
            .directory
            .insert(CLUSTER_ACTOR.to_owned(), Arc::new(entry));
        debug_assert!(exposed, "a new node's directory is empty");
        if let Some((head, store)) = head {
            let doors = crate::head::Doors {
                mesh: self.mesh.clone(),
                sessions: self.sessions.clone(),
                directory: self.directory.clone(),
                audit: self.audit.clone(),
            };
            let head = Head::start(doors, cluster.clone(), head, store).await?;
            self.head = Some(head);
        }
        let control = Control::new(self.mesh.clone(), self.sessions.clone(), cluster.clone());
        crate::control::lease::spawn(control.clone(), host.clone(), self.id());
        // Idle actors passivate through the head group.
        let passivations = control.clone();
        let me = self.id();
        let report: crate::supervision::passivation::ReportPassive =
            Arc::new(move |name: String, epoch: u64| {
                let control = passivations.clone();
                Box::pin(async move {
                    let report = crate::head::wire::passivation::Passivated {
                        node: me,
                        name,
                        epoch,
                    };
                    use crate::head::wire::ControlError;
                    use crate::supervision::passivation::NotPassive;
                    control
                        .call(report, std::time::Duration::from_secs(5))
                        .await
                        .map_err(|e| match e {
                            ControlError::Forbidden { .. }
                            | ControlError::Refused { .. }
                            | ControlError::NoSuchName { .. } => NotPassive::Refused(e.to_string()),
                            other => NotPassive::Unknown(other.to_string()),
                        })
                })
            });
        host.do_send(crate::supervision::SetReporter(report));
        // Durable actors keep their journals in the head group by default.
        let journals = crate::durable::EmbeddedStore::new(control.clone(), self.id());
        crate::durable::install(self.id(), Arc::new(journals));
        self.control = Some(control);
        self.tasks = Some(Tasks::start(self.mesh.clone(), self.directory.clone(), cluster).await);
        Ok(())
    }

    /// What every node exposes: the inspector operators ask, the session
    /// actor operators log in and present their sessions through, and the
    /// counters' log line.
    pub(super) fn start_services(&self, host: &Addr<Host>, summary_interval: Duration) {
        let mut inspector = crate::inspector::Inspector::new(
            self.mesh.clone(),
            self.directory.clone(),
            host.clone(),
        );
        if let Some(head) = &self.head {
            inspector = inspector.head(head.status());
        }
        if let (Some(cluster), Some(tasks)) = (&self.cluster, &self.tasks) {
            inspector = inspector.member(cluster.clone(), tasks.scheduler().clone().recipient());
        }
        let inspector = inspector.start();
        let entry = Entry::declared(inspector);
        self.directory
            .insert(crate::inspector::INSPECT_ACTOR.to_owned(), Arc::new(entry));
        let session = crate::control::session::Session {
            delegation: crate::operators::delegate::Delegation {
                mesh: self.mesh.clone(),
                sessions: self.sessions.clone(),
                directory: self.directory.clone(),
                policy: Arc::clone(&self.policy),
                audit: self.audit.clone(),
            },
            control: self.control.clone(),
            admin: None,
        }
        .start();
        let entry = Entry::declared(session)
            .stamped::<crate::head::wire::operators::AdminLogin>()
            .stamped::<crate::operators::delegate::Delegated>();
        self.directory
            .insert(crate::operators::SESSION_ACTOR.to_owned(), Arc::new(entry));
        crate::summary::spawn(self.mesh.clone(), self.cluster.clone(), summary_interval);
    }
}

/// Waits until a relayed node has a link to a relay, at most `within`.
async fn first_relay(mesh: &Mesh, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    while mesh.via().is_empty() && tokio::time::Instant::now() < deadline {
        tick.tick().await;
    }
    if mesh.via().is_empty() {
        tracing::warn!("no relay reachable yet; other nodes cannot reach this one until one is");
    }
}

/// Binds a TCP listener on `addr` with a backlog of [`ACCEPT_BACKLOG`].
fn listen(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As `TcpListener::bind` does: a restarted node rebinds its port at once.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(ACCEPT_BACKLOG)
}

/// Connections the kernel queues for the listener before it drops new
/// SYNs (capped by `net.core.somaxconn`, 4096 on current Linux): a flood
/// that reconnects its silent connections as fast as the node closes them
/// must not fill the queue, or a real peer's SYN waits a 1 s retransmit
/// (tokio's `TcpListener::bind` uses 1024).
const ACCEPT_BACKLOG: u32 = 4096;

/// Binds the mesh listener and, with membership, the gossip socket on the
/// same port number. With port 0 the OS picks the TCP port; if that port is
/// taken for UDP, another is tried.
async fn bind(
    config: &MeshConfig,
) -> Result<(TcpListener, Option<std::net::UdpSocket>), StartError> {
    let bind_err = |source| StartError::Bind {
        addr: config.listen,
        source,
    };
    let mut attempts = 0;
    loop {
        let tcp = listen(config.listen).map_err(bind_err)?;
        if config.cluster.is_none() {
            return Ok((tcp, None));
        }
        let addr = tcp.local_addr().map_err(bind_err)?;
        match std::net::UdpSocket::bind(addr).and_then(|udp| {
            udp.set_nonblocking(true)?;
            Ok(udp)
        }) {
            Ok(udp) => return Ok((tcp, Some(udp))),
            Err(source) => {
                attempts += 1;
                if config.listen.port() != 0 || attempts >= 16 {
                    return Err(StartError::GossipBind { addr, source });
                }
            }
        }
    }
}
