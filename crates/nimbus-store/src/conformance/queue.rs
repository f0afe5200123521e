//! The [`Queue`] conformance suite. Every call goes through [`retry`], so the suite also holds
//! for a backend whose calls sometimes fail (see [`super::unreliable`]): a failed call must
//! change nothing.

use crate::queue::{
    Committed, Condition, Durability, EventTable, Expect, Queue, QueueError, QueueResult, TableOp,
};
use bytes::Bytes;
use nimbus_core::message::{Dead, DeadReason, Leased, MessageKind, MessageMeta, NewMessage};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const LEASE: Duration = Duration::from_secs(30);

/// Run every case, each on a fresh queue from `make`.
pub async fn run_all<Q: Queue + 'static>(make: impl Fn() -> Q) {
    lease_ack_nack_and_stale_tokens(&make()).await;
    expired_leases_are_redelivered(&make()).await;
    extended_leases_hold(&make()).await;
    fifo_groups_deliver_in_order_one_at_a_time(&make()).await;
    dead_letters_keep_their_reason_and_redrive(&make()).await;
    peek_stats_and_purge(&make()).await;
    tables_commit_with_messages(&make()).await;
    conditional_commits_decide_once(Arc::new(make())).await;
    lease_waits_for_messages_and_honours_cancel(Arc::new(make())).await;
    closed_queues_refuse_work(&make()).await;
}

/// Retry `call` while it fails with a backend error (what the driver does), at most 10 times.
pub async fn retry<T, F, Fut>(mut call: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = QueueResult<T>>,
{
    for _ in 0..10 {
        match call().await {
            Ok(value) => return value,
            Err(QueueError::Backend(_)) => continue,
            Err(error) => panic!("{error}"),
        }
    }
    panic!("a queue call failed 10 times in a row")
}

fn now_ms() -> u64 {
    nimbus_core::clock::Clock::now_ms(&nimbus_core::clock::SystemClock)
}

pub fn message(queue: &str, body: &str, group: Option<&str>) -> NewMessage {
    let mut meta = MessageMeta::new(MessageKind::Message, now_ms());
    meta.group = group.map(str::to_owned);
    NewMessage {
        queue: queue.into(),
        meta,
        body: Bytes::from(body.to_owned()),
    }
}

async fn commit(queue: &impl Queue, messages: Vec<NewMessage>) -> Vec<(String, u64)> {
    retry(|| queue.commit(messages.clone(), vec![])).await
}

async fn lease(queue: &impl Queue, name: &str, max: usize, visibility: Duration) -> Vec<Leased> {
    retry(|| queue.try_lease(name, max, visibility)).await
}

fn bodies(leased: &[Leased]) -> Vec<&[u8]> {
    leased.iter().map(|l| &l.body[..]).collect()
}

pub async fn lease_ack_nack_and_stale_tokens(queue: &impl Queue) {
    let ids = commit(
        queue,
        vec![message("a/q", "one", None), message("a/q", "two", None)],
    )
    .await;
    assert_eq!(ids.len(), 2);
    assert!(ids[0].1 < ids[1].1, "ids increase in commit order");
    let leased = lease(queue, "a/q", 10, LEASE).await;
    assert_eq!(bodies(&leased), [&b"one"[..], b"two"]);
    assert_eq!(leased[0].attempt, 1);
    assert!(
        lease(queue, "a/q", 10, LEASE).await.is_empty(),
        "leased messages are invisible"
    );
    assert!(retry(|| queue.ack(&leased[0])).await);
    assert!(!retry(|| queue.ack(&leased[0])).await, "acked twice");
    assert!(retry(|| queue.nack(&leased[1], Duration::ZERO)).await);
    let again = lease(queue, "a/q", 10, LEASE).await;
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].id, again[0].attempt), (leased[1].id, 2));
    assert!(
        !retry(|| queue.ack(&leased[1])).await,
        "a stale lease cannot settle"
    );
    assert!(!retry(|| queue.nack(&leased[1], Duration::ZERO)).await);
    assert!(retry(|| queue.ack(&again[0])).await);
    let stats = retry(|| queue.stats("a/")).await;
    assert_eq!(stats.len(), 1);
    assert_eq!(
        (stats[0].ready, stats[0].in_flight, stats[0].delayed),
        (0, 0, 0)
    );
}

pub async fn expired_leases_are_redelivered(queue: &impl Queue) {
    commit(queue, vec![message("a/q", "x", None)]).await;
    let first = lease(queue, "a/q", 1, Duration::from_millis(1)).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second = lease(queue, "a/q", 1, LEASE).await;
    assert_eq!((second[0].id, second[0].attempt), (first[0].id, 2));
    assert!(!retry(|| queue.ack(&first[0])).await, "the expired lease");
    assert!(retry(|| queue.ack(&second[0])).await);
}

pub async fn extended_leases_hold(queue: &impl Queue) {
    commit(queue, vec![message("a/q", "x", None)]).await;
    let first = lease(queue, "a/q", 1, Duration::from_millis(50)).await;
    assert!(retry(|| queue.extend(&first[0], LEASE)).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(lease(queue, "a/q", 1, LEASE).await.is_empty());
    let never_issued = Leased {
        attempt: 2,
        ..first[0].clone()
    };
    assert!(!retry(|| queue.extend(&never_issued, LEASE)).await);
    assert!(retry(|| queue.ack(&first[0])).await);
}

pub async fn fifo_groups_deliver_in_order_one_at_a_time(queue: &impl Queue) {
    commit(
        queue,
        vec![
            message("a/f", "a1", Some("a")),
            message("a/f", "b1", Some("b")),
            message("a/f", "a2", Some("a")),
            message("a/f", "b2", Some("b")),
        ],
    )
    .await;
    let heads = lease(queue, "a/f", 10, LEASE).await;
    assert_eq!(bodies(&heads), [&b"a1"[..], b"b1"]);
    // A retried head keeps its group blocked: a2 must not overtake a1.
    assert!(retry(|| queue.nack(&heads[0], Duration::ZERO)).await);
    assert!(retry(|| queue.ack(&heads[1])).await);
    let next = lease(queue, "a/f", 10, LEASE).await;
    let mut got = bodies(&next);
    got.sort();
    assert_eq!(got, [&b"a1"[..], b"b2"]);
}

pub async fn dead_letters_keep_their_reason_and_redrive(queue: &impl Queue) {
    commit(
        queue,
        vec![message("a/q", "keep", None), message("a/q", "dies", None)],
    )
    .await;
    let leased = lease(queue, "a/q", 10, LEASE).await;
    let dead = Dead {
        reason: DeadReason::RetriesExhausted,
        origin: "a/q".into(),
        error: "function_error: boom".into(),
        at_ms: now_ms(),
    };
    assert!(retry(|| queue.dead_letter(&leased[1], "a/q.dlq", dead.clone())).await);
    assert!(
        !retry(|| queue.dead_letter(&leased[1], "a/q.dlq", dead.clone())).await,
        "moved once"
    );
    let peeked = retry(|| queue.peek("a/q.dlq", 10)).await;
    assert_eq!(peeked.len(), 1);
    assert_eq!(peeked[0].body, "dies");
    assert_eq!(peeked[0].meta.dead.as_ref(), Some(&dead));
    assert_eq!(peeked[0].meta.attempts, 1);
    assert!(!peeked[0].in_flight);
    // Something sent to a dead-letter queue directly has no origin and stays.
    commit(queue, vec![message("a/q.dlq", "direct", None)]).await;
    assert_eq!(retry(|| queue.redrive("a/q.dlq")).await, 1);
    let left = retry(|| queue.peek("a/q.dlq", 10)).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].body, "direct");
    assert!(retry(|| queue.ack(&leased[0])).await);
    let redriven = lease(queue, "a/q", 10, LEASE).await;
    assert_eq!(bodies(&redriven), [&b"dies"[..]]);
    assert_eq!(redriven[0].attempt, 1, "attempts are reset");
    assert!(redriven[0].meta.dead.is_none());
    assert!(redriven[0].id > leased[1].id, "a redriven message is new");
}

pub async fn peek_stats_and_purge(queue: &impl Queue) {
    let mut delayed = message("p/q", "later", None);
    delayed.meta.not_before_ms = now_ms() + 3_600_000;
    commit(
        queue,
        vec![
            message("p/q", "one", None),
            message("p/q", "two", None),
            delayed,
            message("p/r", "other", None),
            message("pq/x", "not p/", None),
        ],
    )
    .await;
    let leased = lease(queue, "p/q", 1, LEASE).await;
    let peeked = retry(|| queue.peek("p/q", 2)).await;
    assert_eq!(
        peeked.iter().map(|p| &p.body[..]).collect::<Vec<_>>(),
        [&b"one"[..], b"two"]
    );
    assert!(peeked[0].in_flight && !peeked[1].in_flight);
    assert_eq!(peeked[0].id, leased[0].id);
    let stats = retry(|| queue.stats("p/")).await;
    let names: Vec<&str> = stats.iter().map(|s| s.queue.as_str()).collect();
    assert_eq!(names, ["p/q", "p/r"]);
    assert_eq!(
        (stats[0].ready, stats[0].in_flight, stats[0].delayed),
        (1, 1, 1)
    );
    assert!(stats[0].oldest_enqueued_ms.is_some());
    assert_eq!(retry(|| queue.purge("p/")).await, 4);
    assert!(retry(|| queue.peek("p/q", 10)).await.is_empty());
    assert!(lease(queue, "p/r", 10, LEASE).await.is_empty());
    assert!(!retry(|| queue.ack(&leased[0])).await, "purged");
    assert_eq!(lease(queue, "pq/x", 10, LEASE).await.len(), 1);
}

pub async fn tables_commit_with_messages(queue: &impl Queue) {
    let put = |key: &str, value: &str| TableOp::Put {
        table: EventTable::Invocations,
        key: key.into(),
        value: value.as_bytes().to_vec(),
    };
    retry(|| {
        queue.commit(
            vec![message("t/q", "m", None)],
            vec![put("t/b", "2"), put("t/a", "1"), put("u/c", "3")],
        )
    })
    .await;
    assert_eq!(lease(queue, "t/q", 10, LEASE).await.len(), 1);
    let entries = retry(|| queue.entries(EventTable::Invocations, "t/")).await;
    assert_eq!(
        entries,
        vec![
            ("t/a".to_owned(), b"1".to_vec()),
            ("t/b".to_owned(), b"2".to_vec())
        ]
    );
    assert_eq!(
        retry(|| queue.entry(EventTable::Invocations, "u/c")).await,
        Some(b"3".to_vec())
    );
    assert_eq!(
        retry(|| queue.entry(EventTable::Schedules, "u/c")).await,
        None,
        "tables are separate"
    );
    let delete = TableOp::Delete {
        table: EventTable::Invocations,
        key: "t/a".into(),
    };
    retry(|| queue.write(vec![delete.clone()], Durability::Immediate)).await;
    assert_eq!(
        retry(|| queue.entry(EventTable::Invocations, "t/a")).await,
        None
    );
    retry(|| queue.write(vec![put("t/lazy", "x")], Durability::Eventual)).await;
    // An eventual write is visible to readers once the backend has applied it.
    let mut seen = None;
    for _ in 0..100 {
        seen = retry(|| queue.entry(EventTable::Invocations, "t/lazy")).await;
        if seen.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(seen, Some(b"x".to_vec()));
}

pub async fn conditional_commits_decide_once<Q: Queue + 'static>(queue: Arc<Q>) {
    let key = "app/f/key-1";
    let claim = |value: &'static str| {
        (
            Condition {
                table: EventTable::Idempotency,
                key: key.into(),
                expect: Expect::Absent,
            },
            TableOp::Put {
                table: EventTable::Idempotency,
                key: key.into(),
                value: value.as_bytes().to_vec(),
            },
        )
    };
    // Many callers race for one key: exactly one wins, the others see the winner's value.
    let mut racers = Vec::new();
    for i in 0..8 {
        let queue = queue.clone();
        racers.push(tokio::spawn(async move {
            let value: &'static str = ["v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7"][i];
            let (condition, op) = claim(value);
            let outcome = retry(|| {
                queue.commit_if(
                    condition.clone(),
                    vec![message("c/q", value, None)],
                    vec![op.clone()],
                )
            })
            .await;
            (value, outcome)
        }));
    }
    let mut winners = Vec::new();
    let mut conflicts = Vec::new();
    for racer in racers {
        match racer.await.expect("racer") {
            (value, Committed::Done(ids)) => {
                assert_eq!(ids.len(), 1);
                winners.push(value);
            }
            (_, Committed::Conflict(current)) => conflicts.push(current),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one conditional commit wins");
    let winner = winners[0].as_bytes().to_vec();
    assert!(conflicts.iter().all(|c| c.as_ref() == Some(&winner)));
    let queued = lease(&*queue, "c/q", 100, LEASE).await;
    assert_eq!(
        bodies(&queued),
        [winner.as_slice()],
        "losers' messages were not committed"
    );
    // Compare-and-set: replace only what was read.
    let swap = |expect: Vec<u8>, value: &str| {
        (
            Condition {
                table: EventTable::Idempotency,
                key: key.into(),
                expect: Expect::Value(expect),
            },
            TableOp::Put {
                table: EventTable::Idempotency,
                key: key.into(),
                value: value.as_bytes().to_vec(),
            },
        )
    };
    let (stale, op) = swap(b"not it".to_vec(), "lost");
    assert_eq!(
        retry(|| queue.commit_if(stale.clone(), vec![], vec![op.clone()])).await,
        Committed::Conflict(Some(winner.clone()))
    );
    let (current, op) = swap(winner.clone(), "next");
    assert_eq!(
        retry(|| queue.commit_if(current.clone(), vec![], vec![op.clone()])).await,
        Committed::Done(vec![])
    );
    assert_eq!(
        retry(|| queue.entry(EventTable::Idempotency, key)).await,
        Some(b"next".to_vec())
    );
}

pub async fn lease_waits_for_messages_and_honours_cancel<Q: Queue + 'static>(queue: Arc<Q>) {
    let cancel = CancellationToken::new();
    let waiter = {
        let queue = queue.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let queue = &*queue;
            retry(|| queue.lease("w/q", 10, LEASE, &cancel)).await
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    commit(&*queue, vec![message("w/q", "woke", None)]).await;
    let got = waiter.await.expect("waiter");
    assert_eq!(bodies(&got), [&b"woke"[..]]);

    let cancelled = {
        let queue = queue.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let queue = &*queue;
            retry(|| queue.lease("w/empty", 10, LEASE, &cancel)).await
        })
    };
    cancel.cancel();
    assert!(
        cancelled.await.expect("cancelled lease").is_empty(),
        "a cancelled lease answers empty"
    );
}

pub async fn closed_queues_refuse_work(queue: &impl Queue) {
    commit(queue, vec![message("z/q", "before", None)]).await;
    queue.close().await;
    let refused = loop {
        match queue
            .commit(vec![message("z/q", "after", None)], vec![])
            .await
        {
            Err(QueueError::Backend(_)) => continue,
            other => break other,
        }
    };
    assert!(
        matches!(refused, Err(QueueError::Stopped)),
        "a closed queue refuses commits with Stopped, got {refused:?}"
    );
}
