//! Core dumps off for processes that hold keys: a crash of a node must not
//! leave its data keys, private key and join secret in a core file (or hand
//! them to a crash collector such as systemd-coredump).
//!
//! Two locks: `RLIMIT_CORE` soft and hard limits to 0 (no core file on any
//! unix), and on Linux `prctl(PR_SET_DUMPABLE, 0)`, which also stops a core
//! pipe handler and keeps other processes of the same user from attaching
//! (ptrace) or reading `/proc/PID/mem`.

use anyhow::{Context as _, Result};

/// Turns core dumps off for this process, for good (the hard limit drops
/// to 0, which an unprivileged process cannot raise again).
///
/// # Errors
///
/// If the kernel refuses either call.
pub(crate) fn disable() -> Result<()> {
    #[cfg(unix)]
    {
        use rustix::process::{setrlimit, Resource, Rlimit};
        setrlimit(
            Resource::Core,
            Rlimit {
                current: Some(0),
                maximum: Some(0),
            },
        )
        .context("cannot turn core dumps off (setrlimit RLIMIT_CORE 0)")?;
    }
    #[cfg(target_os = "linux")]
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .context("cannot turn core dumps off (prctl PR_SET_DUMPABLE 0)")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    /// After the call the core limit is 0 (soft and hard) and the process
    /// is not dumpable, as the kernel reports it.
    #[cfg(target_os = "linux")]
    #[test]
    fn disabling_core_dumps_sets_the_core_limit_to_zero_and_clears_dumpable() {
        use rustix::process::{dumpable_behavior, getrlimit, DumpableBehavior, Resource};

        super::disable().unwrap();
        let limit = getrlimit(Resource::Core);
        assert_eq!((limit.current, limit.maximum), (Some(0), Some(0)));
        assert_eq!(dumpable_behavior().unwrap(), DumpableBehavior::NotDumpable);
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
        let core = limits
            .lines()
            .find(|l| l.starts_with("Max core file size"))
            .unwrap();
        assert_eq!(
            core.split_whitespace().collect::<Vec<_>>()[4..6],
            ["0", "0"]
        );
    }
}
