//! Table triggers (`[[trigger.table]]`): a relay per trigger that follows its table's change
//! records, and consumers that deliver them.
//!
//! The table store writes a change record in the very commit that changes an item (see
//! `nimbus_store::tables`), so there is no change without its record. The relay reads a
//! trigger's table from its cursor on, builds each record in Lambda's shape, drops those its
//! filter refuses, and enqueues the rest on the trigger's queue (`@function:table`) as FIFO
//! messages grouped by item key — so the records of one item are delivered one at a time, in
//! commit order, and a failing record holds back the later records of its item (as a shard
//! iterator does) while other items go on. The cursor is written in the same queue commit as
//! the messages, conditional on the cursor read, so a crash between the two relays nothing
//! twice and two relays (of an old and a new version, or of two nodes) cannot both relay a
//! record.
//!
//! Lambda-style functions get each batch as DynamoDB's Lambda event and may report a partial
//! failure with `batchItemFailures` (a checkpoint, see [`BatchMode::Stream`]); Wasm functions
//! get each record as a CloudEvent. Failures follow the function's delivery policy; what it
//! gives up on goes to the queue's dead-letter queue.

use super::consumer::{BatchMode, Consumer};
use super::triggers::Trigger;
use super::{Events, queue_error, queue_key, to_json};
use crate::deployments::DeployedApp;
use bytes::Bytes;
use nimbus_core::error::Error;
use nimbus_core::{ErrorCode, StartingPosition, TableTriggerSpec};
use nimbus_events::{MessageKind, MessageMeta, NewMessage, Pattern};
use nimbus_store::tables::{ChangeRecord, TableError, TableId, TableStore};
use nimbus_store::{Committed, Condition, EventTable, Expect, TableOp};
use nimbus_tables::streams::{lambda_record, sequence_number};
use nimbus_tables::table::TableSchema;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio_util::sync::CancellationToken;

/// Records relayed per queue commit.
const BATCH: usize = 256;

/// Relays and consumers of every table trigger of a deployed version.
pub(crate) struct TableTriggers {
    pub(crate) tables: Arc<dyn TableStore>,
}

impl Trigger for TableTriggers {
    fn start(&self, events: &Arc<Events>, app: &Arc<DeployedApp>) {
        for trigger in &app.spec.events.table_triggers {
            let (Some(pool), Some(spec)) = (
                app.pools.get(trigger.function.as_str()),
                app.spec.functions.get(&trigger.function),
            ) else {
                continue;
            };
            let filter = match trigger.filter.as_deref().map(Pattern::parse).transpose() {
                Ok(filter) => filter,
                Err(error) => {
                    tracing::error!(app = app.name(), table = trigger.table, %error, "a table trigger's filter cannot be read; the trigger does not start");
                    continue;
                }
            };
            let relay = Relay {
                tables: self.tables.clone(),
                events: events.clone(),
                app: app.name().to_owned(),
                trigger: trigger.clone(),
                filter,
            };
            events.tasks.spawn(relay.run(app.workers.clone()));
            let batch = if pool.event_shape().takes_batches() {
                BatchMode::Stream {
                    size: trigger.batch_size as usize,
                    window: trigger.batching_window,
                }
            } else {
                BatchMode::Each(trigger.batch_size as usize)
            };
            Consumer {
                events: events.clone(),
                app: app.name().to_owned(),
                queue: trigger.queue(),
                function: spec.clone(),
                version: app.version.number,
                pool: pool.clone(),
                batch,
            }
            .spawn(trigger.concurrency, &app.workers);
        }
    }
}

/// How far a trigger's relay got: the sequence of the last record it relayed (or skipped).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Cursor {
    through: u64,
}

struct Relay {
    tables: Arc<dyn TableStore>,
    events: Arc<Events>,
    app: String,
    trigger: TableTriggerSpec,
    filter: Option<Pattern>,
}

impl Relay {
    fn id(&self) -> TableId {
        TableId::new(self.app.as_str(), self.trigger.table.as_str())
    }

    /// The cursor's row in [`EventTable::Cursors`].
    fn cursor_key(&self) -> String {
        format!("{}{}", cursor_prefix(&self.app), self.trigger.queue())
    }

    /// Relay until `stop`, waking when the store records changes.
    async fn run(self, stop: CancellationToken) {
        let what = format!(
            "the records of table {:?} of app {:?} to function {:?}",
            self.trigger.table,
            self.app,
            self.trigger.function.as_str()
        );
        let seen = AtomicU64::new(0);
        super::relay_forever(
            &stop,
            &what,
            || self.relay_once(),
            || async {
                let now = self
                    .tables
                    .changes_recorded(seen.load(Ordering::Relaxed))
                    .await;
                seen.store(now, Ordering::Relaxed);
            },
        )
        .await;
    }

    /// The stored cursor (raw, for the commit's condition) and where it points; a trigger
    /// seen for the first time starts at its starting position, pinned at once so `LATEST`
    /// means "from when the trigger started".
    async fn cursor(&self) -> Result<(Vec<u8>, u64), Error> {
        let queue = self.events.queue();
        let key = self.cursor_key();
        if let Some(raw) = queue
            .entry(EventTable::Cursors, &key)
            .await
            .map_err(queue_error)?
        {
            let through = read_cursor(&raw)?;
            return Ok((raw, through));
        }
        let through = match self.trigger.starting_position {
            StartingPosition::TrimHorizon => 0,
            StartingPosition::Latest => self
                .tables
                .last_change(&self.id())
                .await
                .map_err(table_error)?
                .unwrap_or(0),
        };
        let value = to_json(&Cursor { through })?;
        let condition = Condition {
            table: EventTable::Cursors,
            key: key.clone(),
            expect: Expect::Absent,
        };
        let put = TableOp::Put {
            table: EventTable::Cursors,
            key,
            value: value.clone(),
        };
        match queue
            .commit_if(condition, Vec::new(), vec![put])
            .await
            .map_err(queue_error)?
        {
            Committed::Done(_) => Ok((value, through)),
            // Another relay pinned it first: use theirs.
            Committed::Conflict(Some(raw)) => {
                let through = read_cursor(&raw)?;
                Ok((raw, through))
            }
            Committed::Conflict(None) => Err(Error::new(
                ErrorCode::Internal,
                "a table trigger's cursor changed while it was pinned",
            )),
        }
    }

    /// Relay one batch; how many records it moved past.
    async fn relay_once(&self) -> Result<usize, Error> {
        let id = self.id();
        let (stored, through) = self.cursor().await?;
        let changes = self
            .tables
            .changes(&id, Some(through), BATCH)
            .await
            .map_err(table_error)?;
        let Some(last) = changes.last().map(|c| c.sequence) else {
            return Ok(0);
        };
        let info = self
            .tables
            .table(&id)
            .await
            .map_err(table_error)?
            .ok_or_else(|| table_error(TableError::NoSuchTable(id.clone())))?;
        let schema = TableSchema::from_meta(&info.meta).map_err(|e| {
            Error::new(
                ErrorCode::Internal,
                format!("a table's description is unreadable: {}", e.message),
            )
        })?;
        let mut messages = Vec::with_capacity(changes.len());
        for change in &changes {
            if let Some(message) = self.message(&schema, change)? {
                messages.push(message);
            }
        }
        let condition = Condition {
            table: EventTable::Cursors,
            key: self.cursor_key(),
            expect: Expect::Value(stored),
        };
        let cursor = TableOp::Put {
            table: EventTable::Cursors,
            key: self.cursor_key(),
            value: to_json(&Cursor { through: last })?,
        };
        match self
            .events
            .queue()
            .commit_if(condition, messages, vec![cursor])
            .await
            .map_err(queue_error)?
        {
            Committed::Done(_) => Ok(changes.len()),
            // Another relay moved the cursor: read it again.
            Committed::Conflict(_) => Ok(1),
        }
    }

    /// The message that delivers `change`, unless the filter refuses it.
    fn message(
        &self,
        schema: &TableSchema,
        change: &ChangeRecord,
    ) -> Result<Option<NewMessage>, Error> {
        let record = lambda_record(schema, change).map_err(|e| {
            Error::new(
                ErrorCode::Internal,
                format!("a change record cannot be read: {}", e.message),
            )
        })?;
        if self
            .filter
            .as_ref()
            .is_some_and(|filter| !filter.matches(&record))
        {
            return Ok(None);
        }
        let event = nimbus_events::dynamodb::cloudevent(
            &self.app,
            &self.trigger.table,
            &record,
            change.at_ms,
        );
        let mut meta = MessageMeta::new(MessageKind::Event, change.at_ms);
        meta.trigger = Some(nimbus_core::Trigger::Datasource);
        meta.content_type = Some(nimbus_events::cloudevent::STRUCTURED_CONTENT_TYPE.to_owned());
        meta.group = Some(format!(
            "{}.{}",
            hex::encode(&change.key.partition),
            hex::encode(&change.key.sort)
        ));
        meta.attributes.insert(
            nimbus_events::dynamodb::SEQUENCE_ATTRIBUTE.to_owned(),
            sequence_number(change.sequence),
        );
        Ok(Some(NewMessage {
            queue: queue_key(&self.app, &self.trigger.queue()),
            meta,
            body: Bytes::from(event.to_json().to_string()),
        }))
    }
}

/// Where the cursors of an app's table triggers are kept in [`EventTable::Cursors`].
pub(crate) fn cursor_prefix(app: &str) -> String {
    format!("tables/{app}/")
}

fn read_cursor(raw: &[u8]) -> Result<u64, Error> {
    serde_json::from_slice::<Cursor>(raw)
        .map(|cursor| cursor.through)
        .map_err(|e| {
            Error::new(
                ErrorCode::Internal,
                "a table trigger's cursor is unreadable",
            )
            .caused_by(e)
        })
}

fn table_error(error: TableError) -> Error {
    if let TableError::NoSuchTable(id) = &error {
        return Error::new(
            ErrorCode::Internal,
            format!(
                "table {:?} of app {:?} no longer exists (deleted through the API?); deploy the \
                 app again to create it, and its trigger resumes",
                id.table, id.app
            ),
        );
    }
    Error::new(
        ErrorCode::Internal,
        "the table store failed; see the server log",
    )
    .caused_by(error)
}
