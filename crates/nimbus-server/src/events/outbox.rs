//! Moving a store's outbox into queues, for the relays of object and key-value events.
//!
//! A store records events in the commit that makes a change (its outbox); a relay reads them
//! in order, enqueues what each one delivers, and settles them. How far it got is a cursor
//! written in the same queue commit as the messages, conditional on the cursor it read, so a
//! crash between that commit and settling the outbox relays nothing twice, and two relays
//! sharing a backend cannot both relay an event.

use super::{queue_error, to_json};
use nimbus_core::error::Error;
use nimbus_events::NewMessage;
use nimbus_store::{Committed, Condition, EventTable, Expect, Queue, TableOp};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Cursor {
    through: u64,
}

/// What became of a batch.
pub(super) enum Forwarded {
    /// Its messages are queued (or were, by an earlier attempt): settle through `last`.
    Done { last: u64 },
    /// Another relay moved the cursor meanwhile: read again.
    Conflict,
    /// Nothing was pending.
    Empty,
}

/// Queue the messages of the `pending` events (in sequence order, numbered by `seq`) that
/// the cursor `name` has not passed, moving it past the last one.
pub(super) async fn forward<E>(
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
