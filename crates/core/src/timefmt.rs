//! Timestamp formats used on the wire.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Lambda's `LastModified` format: `2024-01-02T03:04:05.678+0000`.
pub fn last_modified(unix_ms: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}+0000",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// The common log format of API Gateway's `requestContext.time`:
/// `12/Mar/2020:19:03:58 +0000`.
pub fn request_time(unix_ms: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:02}/{}/{:04}:{:02}:{:02}:{:02} +0000",
        t.day(),
        MONTHS[usize::from(u8::from(t.month())) - 1],
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// RFC 3339 for native APIs and logs.
pub fn rfc3339(unix_ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_time_uses_the_common_log_format() {
        assert_eq!(
            request_time(1_583_348_638_390),
            "04/Mar/2020:19:03:58 +0000"
        );
    }

    #[test]
    fn last_modified_uses_lambda_format() {
        assert_eq!(
            last_modified(1_700_000_000_123),
            "2023-11-14T22:13:20.123+0000"
        );
    }
}
