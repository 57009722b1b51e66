//! The head leader's bounded pool of password checks: a few long-lived
//! threads (argon2id, 19 MiB and a core for ~30-60 ms each) and as many
//! permits; a check that finds no free permit is refused at once (busy),
//! never queued. Each thread keeps one block of argon2 working memory and
//! reuses it, so the pool costs `threads` x 19 MiB, however many checks
//! it runs (fresh allocations per check left up to two blocks per thread
//! with the allocator).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use swarm_protocol::sealed::keyring::KdfScratch;

use super::password::PasswordHash;

/// A check to run: the hash (`None`: the dummy), the password, where to
/// answer, and the permit it holds while it runs.
type Job = (
    Option<PasswordHash>,
    zeroize::Zeroizing<String>,
    tokio::sync::oneshot::Sender<bool>,
    tokio::sync::OwnedSemaphorePermit,
);

/// The pool. Its threads end once it is dropped.
#[derive(Debug)]
pub struct PasswordChecks {
    /// One per thread: a check runs only with one.
    permits: Arc<tokio::sync::Semaphore>,
    /// Where checks go to the threads (never more than `permits` in it).
    jobs: std::sync::mpsc::Sender<Job>,
    /// Derivations run, known names' and dummies' alike.
    derivations: Arc<AtomicU64>,
}

/// Every check of the pool is in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

impl PasswordChecks {
    /// A pool of `threads` checks at once (at least 1).
    #[must_use]
    pub fn new(threads: usize) -> Self {
        let threads = threads.max(1);
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let derivations = Arc::new(AtomicU64::new(0));
        for i in 0..threads {
            let queue = Arc::clone(&queue);
            let counted = Arc::clone(&derivations);
            let spawned = std::thread::Builder::new()
                .name(format!("swarm-login-{i}"))
                .spawn(move || {
                    // This thread's working memory, reused by every check.
                    let mut scratch = KdfScratch::default();
                    loop {
                        let job = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
                        let Ok((hash, password, answer, permit)) = job else {
                            return;
                        };
                        let ok = match hash {
                            Some(hash) => hash.verify_in(&password, &mut scratch),
                            // As long as a known name's check, never right.
                            None => {
                                let _ = PasswordHash::dummy().verify_in(&password, &mut scratch);
                                false
                            }
                        };
                        counted.fetch_add(1, Ordering::Relaxed);
                        drop(permit);
                        let _ = answer.send(ok);
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "a password-check thread did not start");
            }
        }
        Self {
            permits: Arc::new(tokio::sync::Semaphore::new(threads)),
            jobs,
            derivations,
        }
    }

    /// How many argon2id derivations the pool ran: one per check, for a
    /// name without a password as for one with.
    #[must_use]
    pub fn derivations(&self) -> u64 {
        self.derivations.load(Ordering::Relaxed)
    }

    /// Checks `password` against `hash` (`None`: against a dummy hash of
    /// the same cost, never right) on a free thread of the pool; answers
    /// whether it is right.
    ///
    /// # Errors
    ///
    /// [`Busy`] at once if every thread is checking.
    pub fn check(
        &self,
        hash: Option<PasswordHash>,
        password: zeroize::Zeroizing<String>,
    ) -> Result<impl std::future::Future<Output = bool> + 'static, Busy> {
        let permit = Arc::clone(&self.permits)
            .try_acquire_owned()
            .map_err(|_| Busy)?;
        let (answer, answered) = tokio::sync::oneshot::channel();
        self.jobs
            .send((hash, password, answer, permit))
            .map_err(|_| Busy)?;
        Ok(async move { answered.await.unwrap_or(false) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn a_full_pool_refuses_at_once_and_frees_its_permits() {
        let pool = PasswordChecks::new(1);
        let hash = PasswordHash::new("correct horse battery").unwrap();
        let first = pool
            .check(
                Some(hash.clone()),
                "correct horse battery".to_owned().into(),
            )
            .unwrap();
        assert_eq!(
            pool.check(None, "x".to_owned().into()).err(),
            Some(Busy),
            "a second check while the only thread checks"
        );
        assert!(first.await);
        let second = pool.check(Some(hash), "wrong".to_owned().into()).unwrap();
        assert!(!second.await);
        assert!(!pool.check(None, "x".to_owned().into()).unwrap().await);
        assert_eq!(pool.derivations(), 3);
    }

    /// Knowing whether a name has a password must not be read from how
    /// long a login takes: a name without one costs one derivation (of the
    /// dummy, at the default cost: `password.rs`), as a name with one does. (How close the two take in
    /// time against a real leader: the `stress_` login-timing test.)
    #[actix_rt::test]
    async fn an_unknown_name_costs_one_derivation_of_the_default_cost_like_a_known_one() {
        let pool = PasswordChecks::new(1);
        let hash = PasswordHash::new("correct horse battery").unwrap();
        assert!(
            !pool
                .check(Some(hash), "wrong".to_owned().into())
                .unwrap()
                .await
        );
        assert_eq!(pool.derivations(), 1);
        assert!(!pool.check(None, "wrong".to_owned().into()).unwrap().await);
        assert_eq!(pool.derivations(), 2, "the unknown name's dummy derivation");
    }
}
