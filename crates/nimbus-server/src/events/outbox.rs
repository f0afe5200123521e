//! Moving a store's outbox into queues, for the relays of object and key-value events.
//!
//! A store records events in the commit that makes a change (its outbox); a relay reads them
//! in order, enqueues what each one delivers, and settles them. How far it got is a cursor
//! written in the same queue commit as the messages, conditional on the cursor it read, so a
//! crash between that commit and settling the outbox relays nothing twice, and two relays
//! sharing a backend cannot both relay an event.

use super::{queue_error, to_json};
use nimbus_core::ErrorCode;
use nimbus_core::error::Error;
use nimbus_events::NewMessage;
use nimbus_store::{Committed, Condition, EventTable, Expect, Queue, TableOp};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// Events relayed per queue commit.
const BATCH: usize = 256;

/// A store's outbox as its relay sees it.
#[async_trait::async_trait]
pub(super) trait Outbox: Send + Sync {
    type Event: Send + Sync;
    /// The store's error.
    type Error: std::error::Error + Send + Sync + 'static;
    /// What it holds, for logs and errors ("object events").
    const WHAT: &'static str;
    /// The relay's row in [`EventTable::Cursors`].
    const CURSOR: &'static str;
    /// Up to `max` recorded events not yet settled, by sequence number.
    async fn pending(&self, max: usize) -> Result<Vec<Self::Event>, Self::Error>;
    /// Forget events through sequence number `through`.
    async fn settle(&self, through: u64) -> Result<(), Self::Error>;
    /// Returns once an event may have been recorded.
    async fn recorded(&self);
    fn seq(event: &Self::Event) -> u64;
    /// The messages that deliver `event` (none if its target is gone).
    fn messages(&self, event: &Self::Event) -> Vec<NewMessage>;
}

/// Relay `outbox` into `queue` until `stop`, waking when it records events.
pub(super) async fn relay<O: Outbox>(outbox: &O, queue: &dyn Queue, stop: &CancellationToken) {
    super::relay_forever(
        stop,
        O::WHAT,
        || relay_once(outbox, queue),
        || outbox.recorded(),
    )
    .await;
}

/// Relay one batch; how many events it settled.
async fn relay_once<O: Outbox>(outbox: &O, queue: &dyn Queue) -> Result<usize, Error> {
    let failed = |doing: &str, error: O::Error| {
        Error::new(ErrorCode::Internal, format!("cannot {doing} {}", O::WHAT)).caused_by(error)
    };
    let pending = outbox
        .pending(BATCH)
        .await
        .map_err(|e| failed("read the", e))?;
    let last = match forward(queue, O::CURSOR, &pending, O::seq, |e| outbox.messages(e)).await? {
        Forwarded::Empty => return Ok(0),
        Forwarded::Conflict => return Ok(1),
        Forwarded::Done { last } => last,
    };
    outbox
        .settle(last)
        .await
        .map_err(|e| failed("settle the", e))?;
    Ok(pending.len())
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Cursor {
    through: u64,
}

/// What became of a batch.
enum Forwarded {
    /// Its messages are queued (or were, by an earlier attempt): settle through `last`.
    Done { last: u64 },
    /// Another relay moved the cursor meanwhile: read again.
    Conflict,
    /// Nothing was pending.
    Empty,
}

/// Queue the messages of the `pending` events (in sequence order, numbered by `seq`) that
/// the cursor `name` has not passed, moving it past the last one.
async fn forward<E>(
    queue: &dyn Queue,
    name: &str,
    pending: &[E],
    seq: impl Fn(&E) -> u64,
    mut messages: impl FnMut(&E) -> Vec<NewMessage>,
) -> Result<Forwarded, Error> {
    let Some(last) = pending.last().map(&seq) else {
        return Ok(Forwarded::Empty);
    };
    let stored = queue
        .entry(EventTable::Cursors, name)
        .await
        .map_err(queue_error)?;
    let through = stored
        .as_deref()
        .and_then(|raw| serde_json::from_slice::<Cursor>(raw).ok())
        .map_or(0, |c| c.through);
    if last <= through {
        return Ok(Forwarded::Done { last });
    }
    let batch: Vec<NewMessage> = pending
        .iter()
        .filter(|e| seq(e) > through)
        .flat_map(&mut messages)
        .collect();
    let condition = Condition {
        table: EventTable::Cursors,
        key: name.to_owned(),
        expect: stored.map_or(Expect::Absent, Expect::Value),
    };
    let cursor = TableOp::Put {
        table: EventTable::Cursors,
        key: name.to_owned(),
        value: to_json(&Cursor { through: last })?,
    };
    match queue
        .commit_if(condition, batch, vec![cursor])
        .await
        .map_err(queue_error)?
    {
        Committed::Done(_) => Ok(Forwarded::Done { last }),
        Committed::Conflict(_) => Ok(Forwarded::Conflict),
    }
}
