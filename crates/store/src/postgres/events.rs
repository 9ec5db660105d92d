//! The asynchronous-invocation queue on PostgreSQL (schema migration 4), shared by
//! every server of a cluster. Row locks keep them apart: a claim takes due events
//! `FOR UPDATE SKIP LOCKED`, a settle changes an event only while its claimer still
//! holds the lease, and an idempotency key is written by one upsert that waits for
//! any other writer of the same key.

use std::collections::HashMap;

use postgres::{IsolationLevel, Row, Transaction};

use super::{affected, to_i64, to_u32, to_u64, PostgresStore};
use crate::events::{
    Attempt, ClaimedEvent, Enqueued, EventState, EventStatus, NewEvent, QueueDepth, Settle,
};
use crate::store::StoreError;

const STATUS_COLUMNS: &str = "request_id, namespace, function, qualifier, state, enqueued_ms,
    updated_ms, next_at_ms, function_attempts, system_attempts, dead_letter, payload, response";

fn status_row(r: &Row) -> Result<EventStatus, StoreError> {
    let state: &str = r.try_get(4)?;
    Ok(EventStatus {
        request_id: r.try_get(0)?,
        namespace: r.try_get(1)?,
        function: r.try_get(2)?,
        qualifier: r.try_get(3)?,
        state: EventState::parse(state).unwrap_or(EventState::Failed),
        enqueued_ms: r.try_get(5)?,
        updated_ms: r.try_get(6)?,
        next_at_ms: r.try_get(7)?,
        function_attempts: to_u32(r.try_get(8)?),
        system_attempts: to_u32(r.try_get(9)?),
        dead_letter: r.try_get(10)?,
        payload: r.try_get(11)?,
        response: r.try_get(12)?,
        attempts: Vec::new(),
    })
}

/// Fills in the attempts of `events`, oldest first, with one query.
fn add_attempts(tx: &mut Transaction<'_>, events: &mut [EventStatus]) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = events.iter().map(|e| e.request_id.as_str()).collect();
    let rows = tx.query(
        "SELECT request_id, started_ms, ended_ms, outcome, error_type, error_message
         FROM async_attempts WHERE request_id = ANY($1) ORDER BY request_id, n",
        &[&ids],
    )?;
    let mut by_event: HashMap<String, Vec<Attempt>> = HashMap::new();
    for r in &rows {
        by_event.entry(r.try_get(0)?).or_default().push(Attempt {
            started_ms: r.try_get(1)?,
            ended_ms: r.try_get(2)?,
            outcome: r.try_get(3)?,
            error_type: r.try_get(4)?,
            error_message: r.try_get(5)?,
        });
    }
    for event in events {
        event.attempts = by_event.remove(&event.request_id).unwrap_or_default();
    }
    Ok(())
}

/// A consistent read-only view, so an event and its attempts agree.
fn snapshot<'a>(client: &'a mut postgres::Client) -> Result<Transaction<'a>, StoreError> {
    Ok(client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()?)
}

/// Stores `events` inside `tx` (the queue's one insert, shared by enqueue and a
/// schedule's fire transaction) and answers for each, in order.
pub(super) fn insert_events(
    tx: &mut Transaction<'_>,
    events: &[NewEvent],
    dedupe_since_ms: i64,
) -> Result<Vec<Enqueued>, StoreError> {
    let mut out = vec![Enqueued::New; events.len()];

    // Keys first, in one order every server shares, so two batches holding the
    // same keys wait for each other instead of deadlocking. The sort is stable:
    // of one key's events in a batch, the first still wins.
    let mut keyed: Vec<(usize, &NewEvent, &str)> = events
        .iter()
        .enumerate()
        .filter_map(|(i, ev)| Some((i, ev, ev.idempotency_key.as_deref()?)))
        .collect();
    keyed.sort_by(|a, b| {
        (&a.1.namespace, &a.1.function, a.2).cmp(&(&b.1.namespace, &b.1.function, b.2))
    });
    if !keyed.is_empty() {
        // Takes the key unless a request stored it at or after `dedupe_since_ms`;
        // returns a row only if it took it.
        let take_key = tx.prepare(
            "INSERT INTO idempotency_keys (namespace, function, key, request_id, created_ms)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (namespace, function, key) DO UPDATE SET
                request_id = excluded.request_id, created_ms = excluded.created_ms
             WHERE idempotency_keys.created_ms < $6
             RETURNING request_id",
        )?;
        let holder = tx.prepare(
            "SELECT request_id FROM idempotency_keys
             WHERE namespace = $1 AND function = $2 AND key = $3",
        )?;
        for (i, ev, key) in keyed {
            let took = tx.query_opt(
                &take_key,
                &[
                    &ev.namespace,
                    &ev.function,
                    &key,
                    &ev.request_id,
                    &ev.enqueued_ms,
                    &dedupe_since_ms,
                ],
            )?;
            if took.is_none() {
                let first = tx
                    .query_one(&holder, &[&ev.namespace, &ev.function, &key])?
                    .try_get(0)?;
                out[i] = Enqueued::Duplicate { request_id: first };
            }
        }
    }

    // Every new event of the group in one statement (one round trip, not one per
    // event): the columns go in as arrays.
    let new: Vec<&NewEvent> = events
        .iter()
        .zip(&out)
        .filter(|(_, result)| **result == Enqueued::New)
        .map(|(ev, _)| ev)
        .collect();
    if !new.is_empty() {
        let column = |f: fn(&NewEvent) -> &str| new.iter().map(|ev| f(ev)).collect::<Vec<&str>>();
        let payloads: Vec<&[u8]> = new.iter().map(|ev| ev.payload.as_slice()).collect();
        let times: Vec<i64> = new.iter().map(|ev| ev.enqueued_ms).collect();
        tx.execute(
            "INSERT INTO async_events (request_id, namespace, function, qualifier, payload,
                enqueued_ms, updated_ms, state, next_at_ms, incarnation)
             SELECT r, n, f, q, p, t, t, 'queued', t, i
               FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bytea[],
                           $6::int8[], $7::text[]) AS u(r, n, f, q, p, t, i)",
            &[
                &column(|ev| &ev.request_id),
                &column(|ev| &ev.namespace),
                &column(|ev| &ev.function),
                &column(|ev| &ev.qualifier),
                &payloads,
                &times,
                &column(|ev| &ev.incarnation),
            ],
        )?;
    }
    Ok(out)
}

impl PostgresStore {
    pub(super) fn events_enqueue(
        &self,
        events: &[NewEvent],
        dedupe_since_ms: i64,
    ) -> Result<Vec<Enqueued>, StoreError> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        let out = insert_events(&mut tx, events, dedupe_since_ms)?;
        tx.commit()?;
        Ok(out)
    }

    pub(super) fn events_claim(
        &self,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: usize,
        skip_namespaces: &[String],
    ) -> Result<Vec<ClaimedEvent>, StoreError> {
        // One statement, so one transaction: rows another claimer has locked are
        // skipped, not waited for, and `was` is the state before this claim. Due and
        // lost events are picked apart so the due ones come in index order: one
        // query with OR sorts the whole backlog on every claim. Lost events left
        // over stay locked only until the statement ends.
        let rows = self.client()?.query(
            "WITH due AS (
                SELECT request_id, state AS was, next_at_ms FROM async_events
                 WHERE state IN ('queued', 'retrying') AND next_at_ms <= $1
                   AND NOT (namespace = ANY($5))
                 ORDER BY next_at_ms LIMIT $2
                 FOR UPDATE SKIP LOCKED
             ), lost AS (
                SELECT request_id, state AS was, next_at_ms FROM async_events
                 WHERE state = 'running' AND lease_until_ms < $1
                   AND NOT (namespace = ANY($5))
                 ORDER BY next_at_ms LIMIT $2
                 FOR UPDATE SKIP LOCKED
             ), picked AS (
                SELECT * FROM due UNION ALL SELECT * FROM lost
                ORDER BY next_at_ms LIMIT $2
             ), claimed AS (
                UPDATE async_events e SET state = 'running', lease_owner = $3,
                    lease_until_ms = $4, updated_ms = $1
                  FROM picked WHERE e.request_id = picked.request_id
                RETURNING e.request_id, e.namespace, e.function, e.qualifier, e.payload,
                    e.enqueued_ms, e.function_attempts, e.system_attempts, picked.was,
                    picked.next_at_ms, e.incarnation
             )
             SELECT request_id, namespace, function, qualifier, payload, enqueued_ms,
                    function_attempts, system_attempts, was, incarnation
               FROM claimed ORDER BY next_at_ms, request_id",
            &[
                &now_ms,
                &to_i64(limit),
                &owner,
                &lease_until_ms,
                &skip_namespaces,
            ],
        )?;
        rows.iter()
            .map(|r| {
                Ok(ClaimedEvent {
                    request_id: r.try_get(0)?,
                    namespace: r.try_get(1)?,
                    function: r.try_get(2)?,
                    qualifier: r.try_get(3)?,
                    payload: r.try_get(4)?,
                    enqueued_ms: r.try_get(5)?,
                    function_attempts: to_u32(r.try_get(6)?),
                    system_attempts: to_u32(r.try_get(7)?),
                    lease_expired: r.try_get::<_, &str>(8)? == "running",
                    incarnation: r.try_get(9)?,
                })
            })
            .collect()
    }

    pub(super) fn events_settle(
        &self,
        request_id: &str,
        owner: &str,
        attempts: &[Attempt],
        settle: &Settle,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let row = settle.row();
        let (state, next_at, function_inc, system_inc, dead_letter, response) = (
            row.state,
            row.next_at_ms,
            row.function_inc,
            row.system_inc,
            row.dead_letter,
            row.response,
        );
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        // The update locks the event row, so attempts of one event are numbered one
        // settle at a time.
        let updated = tx.execute(
            "UPDATE async_events SET state = $3, next_at_ms = COALESCE($4, next_at_ms),
                function_attempts = function_attempts + $5,
                system_attempts = system_attempts + $6,
                dead_letter = $7, response = COALESCE($8, response),
                payload = CASE WHEN $3 IN ('succeeded', 'failed', 'expired') AND NOT $7
                               THEN ''::bytea ELSE payload END,
                lease_owner = NULL, lease_until_ms = 0, updated_ms = $9
             WHERE request_id = $1 AND state = 'running' AND lease_owner = $2",
            &[
                &request_id,
                &owner,
                &state.as_str(),
                &next_at,
                &function_inc,
                &system_inc,
                &dead_letter,
                &response,
                &now_ms,
            ],
        )?;
        if updated == 0 {
            return Ok(false);
        }
        for a in attempts {
            tx.execute(
                "INSERT INTO async_attempts (request_id, n, started_ms, ended_ms, outcome,
                    error_type, error_message)
                 VALUES ($1, (SELECT COALESCE(MAX(n), 0) + 1 FROM async_attempts
                              WHERE request_id = $1), $2, $3, $4, $5, $6)",
                &[
                    &request_id,
                    &a.started_ms,
                    &a.ended_ms,
                    &a.outcome,
                    &a.error_type,
                    &a.error_message,
                ],
            )?;
        }
        tx.commit()?;
        Ok(true)
    }

    pub(super) fn events_get(&self, request_id: &str) -> Result<Option<EventStatus>, StoreError> {
        let mut client = self.client()?;
        let mut tx = snapshot(&mut client)?;
        let row = tx.query_opt(
            &format!("SELECT {STATUS_COLUMNS} FROM async_events WHERE request_id = $1"),
            &[&request_id],
        )?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mut found = [status_row(&row)?];
        add_attempts(&mut tx, &mut found)?;
        tx.commit()?;
        let [status] = found;
        Ok(Some(status))
    }

    pub(super) fn events_dead_letters(
        &self,
        namespace: &str,
        function: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<EventStatus>, StoreError> {
        let mut client = self.client()?;
        let mut tx = snapshot(&mut client)?;
        let rows = tx.query(
            &format!(
                "SELECT {STATUS_COLUMNS} FROM async_events
                 WHERE dead_letter AND namespace = $1 AND function = $2 AND request_id > $3
                 ORDER BY request_id LIMIT $4"
            ),
            &[&namespace, &function, &after.unwrap_or(""), &to_i64(limit)],
        )?;
        let mut found = rows.iter().map(status_row).collect::<Result<Vec<_>, _>>()?;
        add_attempts(&mut tx, &mut found)?;
        tx.commit()?;
        Ok(found)
    }

    pub(super) fn events_purge(
        &self,
        namespace: &str,
        function: &str,
        request_id: Option<&str>,
    ) -> Result<usize, StoreError> {
        let row = self.client()?.query_one(
            "WITH gone AS (
                DELETE FROM async_events WHERE dead_letter AND namespace = $1
                   AND function = $2 AND ($3::TEXT IS NULL OR request_id = $3)
                RETURNING request_id
             ), history AS (
                DELETE FROM async_attempts WHERE request_id IN (SELECT request_id FROM gone)
             )
             SELECT COUNT(*) FROM gone",
            &[&namespace, &function, &request_id],
        )?;
        Ok(usize::try_from(row.try_get::<_, i64>(0)?).unwrap_or(0))
    }

    pub(super) fn events_prune(
        &self,
        before_ms: i64,
        dead_before_ms: i64,
        keys_before_ms: i64,
    ) -> Result<usize, StoreError> {
        let row = self.client()?.query_one(
            "WITH gone AS (
                DELETE FROM async_events
                 WHERE (state IN ('succeeded', 'failed', 'expired') AND NOT dead_letter
                        AND updated_ms < $1)
                    OR (dead_letter AND updated_ms < $3)
                RETURNING request_id
             ), history AS (
                DELETE FROM async_attempts WHERE request_id IN (SELECT request_id FROM gone)
             ), keys AS (
                DELETE FROM idempotency_keys WHERE created_ms < $2
             )
             SELECT COUNT(*) FROM gone",
            &[&before_ms, &keys_before_ms, &dead_before_ms],
        )?;
        Ok(usize::try_from(row.try_get::<_, i64>(0)?).unwrap_or(0))
    }

    pub(super) fn events_renew(
        &self,
        owner: &str,
        lease_until_ms: i64,
    ) -> Result<usize, StoreError> {
        let n = self.client()?.execute(
            "UPDATE async_events SET lease_until_ms = $2
             WHERE state = 'running' AND lease_owner = $1",
            &[&owner, &lease_until_ms],
        )?;
        Ok(affected(n))
    }

    pub(super) fn events_abandon(&self, except_owner: &str) -> Result<usize, StoreError> {
        let n = self.client()?.execute(
            "UPDATE async_events SET lease_until_ms = 0
             WHERE state = 'running' AND lease_owner IS DISTINCT FROM $1",
            &[&except_owner],
        )?;
        Ok(affected(n))
    }

    pub(super) fn events_redrive(
        &self,
        namespace: &str,
        function: &str,
        request_id: Option<&str>,
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        let n = self.client()?.execute(
            "UPDATE async_events SET state = 'queued', dead_letter = FALSE, next_at_ms = $4,
                function_attempts = 0, system_attempts = 0, lease_owner = NULL,
                lease_until_ms = 0, updated_ms = $4, enqueued_ms = $4
             WHERE dead_letter AND namespace = $1 AND function = $2
               AND ($3::TEXT IS NULL OR request_id = $3)",
            &[&namespace, &function, &request_id, &now_ms],
        )?;
        Ok(affected(n))
    }

    pub(super) fn events_depths(&self) -> Result<Vec<QueueDepth>, StoreError> {
        let rows = self.client()?.query(
            "SELECT namespace, COUNT(*), MIN(enqueued_ms) FROM async_events
             WHERE state IN ('queued', 'running', 'retrying')
             GROUP BY namespace ORDER BY namespace",
            &[],
        )?;
        rows.iter()
            .map(|r| {
                Ok(QueueDepth {
                    namespace: r.try_get(0)?,
                    pending: to_u64(r.try_get(1)?),
                    oldest_enqueued_ms: r.try_get(2)?,
                })
            })
            .collect()
    }
}
