//! The event a schedule sends for a slot: its fixed payload, or by default the
//! EventBridge "Scheduled Event" a Lambda function gets from an EventBridge rule.

use chrono::{SecondsFormat, TimeZone, Utc};
use sha2::{Digest, Sha256};
use tern_core::schedule::ScheduleRecord;

/// The event of `rec` for the slot at `slot_ms`, as JSON bytes.
pub fn payload(rec: &ScheduleRecord, slot_ms: i64, region: &str, account: &str) -> Vec<u8> {
    if let Some(fixed) = &rec.payload {
        return fixed.clone().into_bytes();
    }
    serde_json::json!({
        "version": "0",
        "id": event_id(rec, slot_ms),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": slot_time(slot_ms),
        "region": region,
        "resources": [rule_arn(region, account, &rec.name)],
        "detail": {},
    })
    .to_string()
    .into_bytes()
}

/// `arn:aws:events:<region>:<account>:rule/<name>`, the ARN EventBridge gives the
/// rule that fires.
pub fn rule_arn(region: &str, account: &str, name: &str) -> String {
    format!("arn:aws:events:{region}:{account}:rule/{name}")
}

/// A slot as RFC 3339 in UTC to the second (`2026-12-07T13:00:00Z`), as EventBridge
/// writes `time`.
pub fn slot_time(slot_ms: i64) -> String {
    Utc.timestamp_millis_opt(slot_ms)
        .single()
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// The same id for the same schedule and slot, so a slot delivered twice (at least
/// once) carries one id a handler can deduplicate on.
fn event_id(rec: &ScheduleRecord, slot_ms: i64) -> String {
    let digest = Sha256::new()
        .chain_update(rec.namespace.as_bytes())
        .chain_update([0])
        .chain_update(rec.name.as_bytes())
        .chain_update([0])
        .chain_update(slot_ms.to_be_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(payload: Option<&str>) -> ScheduleRecord {
        ScheduleRecord {
            namespace: "default".into(),
            name: "nightly".into(),
            function: "f".into(),
            qualifier: None,
            expression: "rate(1 day)".into(),
            timezone: None,
            payload: payload.map(str::to_string),
            enabled: true,
            created_ms: 0,
            last_modified_ms: 0,
        }
    }

    #[test]
    fn the_default_event_is_an_eventbridge_scheduled_event() {
        let slot = 1_796_648_400_000; // 2026-12-07T13:00:00Z
        let bytes = payload(&rec(None), slot, "eu-west-1", "000000000000");
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
        assert_eq!(v["source"], "aws.events");
        assert_eq!(v["detail-type"], "Scheduled Event");
        assert_eq!(v["time"], "2026-12-07T13:00:00Z");
        assert_eq!(v["account"], "000000000000");
        assert_eq!(v["region"], "eu-west-1");
        assert_eq!(
            v["resources"],
            serde_json::json!(["arn:aws:events:eu-west-1:000000000000:rule/nightly"])
        );
        assert_eq!(v["detail"], serde_json::json!({}));
        let again: serde_json::Value =
            serde_json::from_slice(&payload(&rec(None), slot, "eu-west-1", "000000000000"))
                .expect("JSON");
        assert_eq!(v["id"], again["id"], "one id per slot");
        let other: serde_json::Value = serde_json::from_slice(&payload(
            &rec(None),
            slot + 1000,
            "eu-west-1",
            "000000000000",
        ))
        .expect("JSON");
        assert_ne!(v["id"], other["id"]);
    }

    #[test]
    fn a_fixed_payload_is_sent_as_it_is() {
        assert_eq!(payload(&rec(Some("{\"a\":1}")), 0, "r", "a"), b"{\"a\":1}");
    }
}
