//! The asynchronous-invocation queue on SQLite (schema migration 4). One node
//! dispatches, so a claim is a plain update inside the connection's lock.

use rusqlite::{params, OptionalExtension, Row, Transaction};

use super::SqliteStore;
use crate::events::{Attempt, ClaimedEvent, Enqueued, EventState, EventStatus, NewEvent, Settle};
use crate::store::StoreError;

fn count(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

const STATUS_COLUMNS: &str = "request_id, namespace, function, qualifier, state, enqueued_ms,
    updated_ms, next_at_ms, function_attempts, system_attempts, dead_letter, payload, response";

fn status_row(r: &Row<'_>) -> rusqlite::Result<EventStatus> {
    let state: String = r.get(4)?;
    Ok(EventStatus {
        request_id: r.get(0)?,
        namespace: r.get(1)?,
        function: r.get(2)?,
        qualifier: r.get(3)?,
        state: EventState::parse(&state).unwrap_or(EventState::Failed),
        enqueued_ms: r.get(5)?,
        updated_ms: r.get(6)?,
        next_at_ms: r.get(7)?,
        function_attempts: count(r.get(8)?),
        system_attempts: count(r.get(9)?),
        dead_letter: r.get::<_, i64>(10)? != 0,
        payload: r.get(11)?,
        response: r.get(12)?,
        attempts: Vec::new(),
    })
}

fn attempts(tx: &rusqlite::Connection, request_id: &str) -> Result<Vec<Attempt>, StoreError> {
    let mut stmt = tx.prepare_cached(
        "SELECT started_ms, ended_ms, outcome, error_type, error_message FROM async_attempts
         WHERE request_id = ?1 ORDER BY n",
    )?;
    let rows = stmt.query_map(params![request_id], |r| {
        Ok(Attempt {
            started_ms: r.get(0)?,
            ended_ms: r.get(1)?,
            outcome: r.get(2)?,
            error_type: r.get(3)?,
            error_message: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The request id an idempotency key already names, if it was stored at or after
/// `since_ms`.
fn known_key(
    tx: &Transaction<'_>,
    ev: &NewEvent,
    key: &str,
    since_ms: i64,
) -> Result<Option<String>, StoreError> {
    Ok(tx
        .query_row(
            "SELECT request_id FROM idempotency_keys
             WHERE namespace = ?1 AND function = ?2 AND key = ?3 AND created_ms >= ?4",
            params![ev.namespace, ev.function, key, since_ms],
            |r| r.get(0),
        )
        .optional()?)
}

/// Stores `events` inside `tx` (the queue's one insert, shared by enqueue and a
/// schedule's fire transaction) and answers for each, in order.
pub(super) fn insert_events(
    tx: &Transaction<'_>,
    events: &[NewEvent],
    dedupe_since_ms: i64,
) -> Result<Vec<Enqueued>, StoreError> {
    let mut out = Vec::with_capacity(events.len());
    for ev in events {
        if let Some(key) = &ev.idempotency_key {
            if let Some(first) = known_key(tx, ev, key, dedupe_since_ms)? {
                out.push(Enqueued::Duplicate { request_id: first });
                continue;
            }
            tx.prepare_cached(
                "INSERT INTO idempotency_keys (namespace, function, key, request_id, created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (namespace, function, key) DO UPDATE SET
                    request_id = excluded.request_id, created_ms = excluded.created_ms",
            )?
            .execute(params![
                ev.namespace,
                ev.function,
                key,
                ev.request_id,
                ev.enqueued_ms
            ])?;
        }
        tx.prepare_cached(
            "INSERT INTO async_events (request_id, namespace, function, qualifier, payload,
                enqueued_ms, updated_ms, state, next_at_ms, incarnation)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, 'queued', ?6, ?7)",
        )?
        .execute(params![
            ev.request_id,
            ev.namespace,
            ev.function,
            ev.qualifier,
            ev.payload,
            ev.enqueued_ms,
            ev.incarnation
        ])?;
        out.push(Enqueued::New);
    }
    Ok(out)
}

impl SqliteStore {
    pub(super) fn events_enqueue(
        &self,
        events: &[NewEvent],
        dedupe_since_ms: i64,
    ) -> Result<Vec<Enqueued>, StoreError> {
        let mut conn = self.lock();
        // An accepted event must survive a power loss: this commit is fsynced (FULL)
        // before it returns. The group commit in front of it makes that one fsync per
        // batch of events.
        conn.pragma_update(None, "synchronous", "FULL")?;
        let stored = Self::enqueue_in(&mut conn, events, dedupe_since_ms);
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        stored
    }

    fn enqueue_in(
        conn: &mut rusqlite::Connection,
        events: &[NewEvent],
        dedupe_since_ms: i64,
    ) -> Result<Vec<Enqueued>, StoreError> {
        let tx = conn.transaction()?;
        let out = insert_events(&tx, events, dedupe_since_ms)?;
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
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        // The namespaces to skip go in as one JSON array (few, and a fixed statement).
        let skip = serde_json::to_string(skip_namespaces)?;
        let claimed = {
            let mut stmt = tx.prepare_cached(
                // Due and lost events are picked apart, each in index order and
                // limited, so a claim never sorts the whole backlog.
                "SELECT request_id, namespace, function, qualifier, payload, enqueued_ms,
                        function_attempts, system_attempts, state, next_at_ms, incarnation
                 FROM (
                    SELECT * FROM (
                        SELECT * FROM async_events
                         WHERE state IN ('queued', 'retrying') AND next_at_ms <= ?1
                           AND namespace NOT IN (SELECT value FROM json_each(?3))
                         ORDER BY next_at_ms LIMIT ?2)
                    UNION ALL
                    SELECT * FROM (
                        SELECT * FROM async_events
                         WHERE state = 'running' AND lease_until_ms < ?1
                           AND namespace NOT IN (SELECT value FROM json_each(?3))
                         ORDER BY lease_until_ms LIMIT ?2))
                 ORDER BY next_at_ms LIMIT ?2",
            )?;
            let rows = stmt.query_map(
                params![now_ms, i64::try_from(limit).unwrap_or(i64::MAX), skip],
                |r| {
                    Ok(ClaimedEvent {
                        request_id: r.get(0)?,
                        namespace: r.get(1)?,
                        function: r.get(2)?,
                        qualifier: r.get(3)?,
                        payload: r.get(4)?,
                        enqueued_ms: r.get(5)?,
                        function_attempts: count(r.get(6)?),
                        system_attempts: count(r.get(7)?),
                        lease_expired: r.get::<_, String>(8)? == "running",
                        incarnation: r.get(10)?,
                    })
                },
            )?;
            rows.collect::<Result<Vec<_>, _>>()?
        };
        {
            let mut update = tx.prepare_cached(
                "UPDATE async_events SET state = 'running', lease_owner = ?2,
                    lease_until_ms = ?3, updated_ms = ?4
                 WHERE request_id = ?1",
            )?;
            for ev in &claimed {
                update.execute(params![ev.request_id, owner, lease_until_ms, now_ms])?;
            }
        }
        tx.commit()?;
        Ok(claimed)
    }

    pub(super) fn events_settle(
        &self,
        request_id: &str,
        owner: &str,
        attempts: &[Attempt],
        settle: &Settle,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let row = settle.row();
        let (state, next_at, function_inc, system_inc, dead_letter, response) = (
            row.state,
            row.next_at_ms,
            row.function_inc,
            row.system_inc,
            row.dead_letter,
            row.response,
        );
        let updated = tx.execute(
            "UPDATE async_events SET state = ?3, next_at_ms = COALESCE(?4, next_at_ms),
                function_attempts = function_attempts + ?5,
                system_attempts = system_attempts + ?6,
                dead_letter = ?7, response = COALESCE(?8, response),
                payload = CASE WHEN ?3 IN ('succeeded', 'failed', 'expired') AND ?7 = 0
                               THEN x'' ELSE payload END,
                lease_owner = NULL, lease_until_ms = 0, updated_ms = ?9
             WHERE request_id = ?1 AND state = 'running' AND lease_owner = ?2",
            params![
                request_id,
                owner,
                state.as_str(),
                next_at,
                function_inc,
                system_inc,
                i64::from(dead_letter),
                response,
                now_ms
            ],
        )?;
        if updated == 0 {
            return Ok(false);
        }
        for a in attempts {
            tx.execute(
                "INSERT INTO async_attempts (request_id, n, started_ms, ended_ms, outcome,
                    error_type, error_message)
                 VALUES (?1, (SELECT COALESCE(MAX(n), 0) + 1 FROM async_attempts
                              WHERE request_id = ?1), ?2, ?3, ?4, ?5, ?6)",
                params![
                    request_id,
                    a.started_ms,
                    a.ended_ms,
                    a.outcome,
                    a.error_type,
                    a.error_message
                ],
            )?;
        }
        tx.commit()?;
        Ok(true)
    }

    pub(super) fn events_get(&self, request_id: &str) -> Result<Option<EventStatus>, StoreError> {
        let conn = self.lock();
        let found = conn
            .query_row(
                &format!("SELECT {STATUS_COLUMNS} FROM async_events WHERE request_id = ?1"),
                params![request_id],
                status_row,
            )
            .optional()?;
        let Some(mut status) = found else {
            return Ok(None);
        };
        status.attempts = attempts(&conn, request_id)?;
        Ok(Some(status))
    }

    pub(super) fn events_dead_letters(
        &self,
        namespace: &str,
        function: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<EventStatus>, StoreError> {
        let conn = self.lock();
        let mut found = {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {STATUS_COLUMNS} FROM async_events
                 WHERE dead_letter = 1 AND namespace = ?1 AND function = ?2 AND request_id > ?3
                 ORDER BY request_id LIMIT ?4"
            ))?;
            let rows = stmt.query_map(
                params![
                    namespace,
                    function,
                    after.unwrap_or(""),
                    i64::try_from(limit).unwrap_or(i64::MAX)
                ],
                status_row,
            )?;
            rows.collect::<Result<Vec<_>, _>>()?
        };
        for status in &mut found {
            status.attempts = attempts(&conn, &status.request_id)?;
        }
        Ok(found)
    }
}
