//! The Runtime API's HTTP handling on arbitrary bytes from a (hostile) runtime: every
//! input gets an answer or a closed connection, never a panic.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tern_runtime::api::{serve_connection, ApiShared};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fuzz_target!(|data: &[u8]| {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
        return;
    };
    rt.block_on(async {
        let (_queue_tx, queue_rx) = tokio::sync::mpsc::channel(1);
        let (shared, _phase) = ApiShared::new(queue_rx, None);
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let conn = tokio::spawn(serve_connection(server, shared));
        let _ = client.write_all(data).await;
        let _ = client.shutdown().await;
        let mut answer = Vec::new();
        // `next` long-polls for an invocation that never comes: bound the wait.
        let _ = tokio::time::timeout(Duration::from_millis(50), client.read_to_end(&mut answer))
            .await;
        drop(client);
        let _ = tokio::time::timeout(Duration::from_millis(50), conn).await;
    });
});
