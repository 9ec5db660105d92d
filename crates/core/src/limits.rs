//! Lambda's default limits (DESIGN D9). The server config may override the ones that are
//! per-server settings; the rest are protocol constants.

pub const MEMORY_MIN_MB: u32 = 128;
pub const MEMORY_MAX_MB: u32 = 10_240;
pub const MEMORY_DEFAULT_MB: u32 = 128;
pub const TIMEOUT_MIN_S: u32 = 1;
pub const TIMEOUT_MAX_S: u32 = 900;
pub const TIMEOUT_DEFAULT_S: u32 = 3;
pub const TMP_MIN_MB: u32 = 512;
pub const TMP_MAX_MB: u32 = 10_240;
pub const TMP_DEFAULT_MB: u32 = 512;
/// Synchronous invoke request and response payload limit.
pub const SYNC_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;
/// Largest payload of an asynchronous (`Event`) invoke: 1 MB, as on Lambda since 2025.
pub const ASYNC_PAYLOAD_BYTES: usize = 1024 * 1024;
/// Longest `X-Tern-Idempotency-Key`.
pub const IDEMPOTENCY_KEY_CHARS: usize = 256;
/// Total size of all environment variable keys and values.
pub const ENV_VARS_BYTES: usize = 4 * 1024;
/// Zipped deployment package uploaded directly in the request.
pub const ZIP_BYTES: usize = 50 * 1024 * 1024;
/// Unzipped deployment package.
pub const UNZIPPED_BYTES: u64 = 250 * 1024 * 1024;
/// Description length.
pub const DESCRIPTION_MAX: usize = 256;
/// Handler string length.
pub const HANDLER_MAX: usize = 128;
/// Tail of the log returned with `X-Amz-Log-Type: Tail`.
pub const LOG_TAIL_BYTES: usize = 4 * 1024;
/// Lambda's ratio: one full vCPU per this many MB of memory.
pub const MB_PER_VCPU: u32 = 1_769;
/// Published versions one function may hold at once (tern's bound; Lambda bounds them
/// only through its 75 GB code-storage quota). Deleting a version frees its place.
pub const VERSIONS_PER_FUNCTION: u64 = 1_000;
/// Aliases one function may hold at once (tern's bound, as for versions).
pub const ALIASES_PER_FUNCTION: u64 = 1_000;
/// Default number of items per ListFunctions page, and its maximum.
pub const LIST_DEFAULT_ITEMS: usize = 50;
pub const LIST_MAX_ITEMS: usize = 10_000;
