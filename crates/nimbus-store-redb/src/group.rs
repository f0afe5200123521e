//! Group commit: writes that arrive while a commit runs share the next one (one redb commit,
//! one fsync). Whoever finds no commit running leads: it commits what is pending on the
//! blocking pool until nothing is, then answers.

use crate::Inner;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::oneshot;

/// Jobs waiting for the next commit, and whether a leader is committing.
pub(crate) struct GroupCommit<J> {
    pending: Mutex<Vec<J>>,
    leading: AtomicBool,
}

impl<J> Default for GroupCommit<J> {
    fn default() -> Self {
        GroupCommit {
            pending: Mutex::new(Vec::new()),
            leading: AtomicBool::new(false),
        }
    }
}

/// How one kind of job is committed: where its queue lives in [`Inner`], how a batch commits
/// (answering each job), and how an answer is delivered once the commit is decided.
pub(crate) trait Batch: Send + 'static + Sized {
    type Answer: Send + 'static;
    fn group(inner: &Inner) -> &GroupCommit<Self>;
    fn commit(inner: &Inner, batch: Vec<Self>) -> Vec<Self::Answer>;
    fn deliver(answer: Self::Answer);
}

impl<J> GroupCommit<J> {
    fn lock(&self) -> MutexGuard<'_, Vec<J>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Queue `job` for the next commit, leading one if none runs.
pub(crate) fn submit<J: Batch>(inner: &Arc<Inner>, job: J) {
    let group = J::group(inner);
    group.lock().push(job);
    if group.leading.swap(true, Ordering::AcqRel) {
        return;
    }
    let inner = inner.clone();
    tokio::task::spawn_blocking(move || {
        // Held while leading; let go of before the last answers, so a caller that drops the
        // store on its answer finds it closed (and can reopen it) at once.
        let mut held = Some(inner);
        while let Some(inner) = held.take() {
            let group = J::group(&inner);
            let batch = std::mem::take(&mut *group.lock());
            let answers = if batch.is_empty() {
                Vec::new()
            } else {
                J::commit(&inner, batch)
            };
            let again = if group.lock().is_empty() {
                group.leading.store(false, Ordering::Release);
                // A job queued after this check saw us leading and left it to us: lead again,
                // unless someone else already does.
                let stranded = !group.lock().is_empty();
                stranded && !group.leading.swap(true, Ordering::AcqRel)
            } else {
                true
            };
            if again {
                held = Some(inner);
            } else {
                drop(inner);
            }
            for answer in answers {
                J::deliver(answer);
            }
        }
    });
}

/// Decide a batch's writes in turn inside one write transaction, then commit it once; the
/// answers to deliver, and whether the batch committed. `apply` answers one write (seeing
/// every write before it), or fails with a storage error, which aborts the batch: nothing of
/// it commits, and every write of it is answered `failed(the error)` alike.
pub(crate) fn commit_in_turn<W, T>(
    db: &redb::Database,
    batch: Vec<(W, oneshot::Sender<T>)>,
    mut apply: impl FnMut(&redb::WriteTransaction, W) -> Result<T, String>,
    failed: impl Fn(&str) -> T,
) -> (Vec<(oneshot::Sender<T>, T)>, bool) {
    let fail_all = |dones: Vec<oneshot::Sender<T>>, error: &str| {
        let answers = dones.into_iter().map(|done| (done, failed(error)));
        (answers.collect(), false)
    };
    let txn = match db.begin_write() {
        Ok(txn) => txn,
        Err(error) => {
            return fail_all(
                batch.into_iter().map(|(_, done)| done).collect(),
                &error.to_string(),
            );
        }
    };
    let mut dones = Vec::with_capacity(batch.len());
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut jobs = batch.into_iter();
    while let Some((work, done)) = jobs.next() {
        dones.push(done);
        match apply(&txn, work) {
            Ok(outcome) => outcomes.push(outcome),
            Err(error) => {
                drop(txn);
                dones.extend(jobs.map(|(_, done)| done));
                return fail_all(dones, &error);
            }
        }
    }
    if let Err(error) = txn.commit() {
        return fail_all(dones, &error.to_string());
    }
    (dones.into_iter().zip(outcomes).collect(), true)
}
