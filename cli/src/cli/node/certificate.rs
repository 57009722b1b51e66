//! A running node follows its certificate file: when `swarm cert renew`
//! rewrites it, the node switches to the renewed certificate. On Linux the
//! kernel says when a file in the certificate's directory was written or
//! moved in (inotify), so an idle node does not wake up to look; elsewhere,
//! or without inotify, the file is looked at once a second.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use swarm::Node;

/// Switches `node` to the certificate at `path` each time the file changes.
pub(crate) async fn follow(node: Node, path: PathBuf) {
    let mut seen = stamp(&path);
    let mut changes = Changes::watch(&path);
    loop {
        changes.next().await;
        let now = stamp(&path);
        if now == seen {
            continue;
        }
        seen = now;
        switch(&node, &path);
    }
}

/// Reads the certificate at `path` and switches `node` to it.
fn switch(node: &Node, path: &Path) {
    match swarm::credentials::read_cert(path) {
        Ok(cert) => {
            let serial = cert.body().serial;
            match node.renew_certificate(cert) {
                Ok(()) => tracing::warn!(serial, "switched to the renewed certificate"),
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "the renewed certificate does not fit this node; keeping the current one")
                }
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot read the renewed certificate"),
    }
}

/// When the file was last written, if it can be read.
fn stamp(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// What wakes the follower to compare the file's time.
enum Changes {
    /// The kernel's word that a file in the certificate's directory was
    /// written or moved in.
    #[cfg(target_os = "linux")]
    Notified(tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>),
    /// A tick every [`POLL`].
    Polled(tokio::time::Interval),
}

impl Changes {
    fn watch(path: &Path) -> Self {
        #[cfg(target_os = "linux")]
        match notifications(path) {
            Ok(fd) => return Changes::Notified(fd),
            Err(e) => {
                tracing::info!(error = %e, "no inotify for the certificate file: looking at it once a second");
            }
        }
        Changes::Polled(tokio::time::interval(POLL))
    }

    /// Waits for the next possible change.
    async fn next(&mut self) {
        match self {
            #[cfg(target_os = "linux")]
            Changes::Notified(fd) => match fd.readable().await {
                Ok(mut ready) => {
                    drain(ready.get_inner());
                    ready.clear_ready();
                }
                Err(e) => {
                    tracing::info!(error = %e, "inotify failed: looking at the certificate file once a second");
                    *self = Changes::Polled(tokio::time::interval(POLL));
                }
            },
            Changes::Polled(tick) => {
                tick.tick().await;
            }
        }
    }
}

/// An inotify descriptor watching the directory of `path` (a file
/// replaced by a rename is a new file: watching the file itself would
/// miss it).
#[cfg(target_os = "linux")]
fn notifications(path: &Path) -> std::io::Result<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>> {
    use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)?;
    inotify::add_watch(&fd, dir, WatchFlags::CLOSE_WRITE | WatchFlags::MOVED_TO)?;
    // `new` is deprecated for descriptors the caller could close while
    // registered (its replacement, `register`, is unsafe); this one is
    // owned by the `AsyncFd` and closed only when it is dropped.
    #[allow(deprecated)]
    tokio::io::unix::AsyncFd::new(fd)
}

/// Reads every queued event (which file changed does not matter: the
/// certificate's time is compared).
#[cfg(target_os = "linux")]
fn drain(fd: &std::os::fd::OwnedFd) {
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
    let mut events = rustix::fs::inotify::Reader::new(fd, &mut buf);
    // Ends with EAGAIN once the queue is empty (the descriptor does not block).
    while events.next().is_ok() {}
}

/// How often the file is looked at without inotify.
const POLL: Duration = Duration::from_secs(1);
