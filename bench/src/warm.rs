//! Warm invoke latency and the platform's own overhead. The hello-world handlers time
//! their own body and return it as `handler_ns`; overhead = client latency − that.
//! A second series with the log tail splits the overhead at the REPORT Duration
//! (the server's time from handing the event to the instance until its result).

use std::time::Duration;

use serde::Serialize;

use crate::client::Api;
use crate::stats::{ms, Summary};

#[derive(Debug, Serialize)]
pub struct WarmResult {
    pub function: String,
    pub runtime: String,
    /// How the server ran (idle instances frozen between requests, or not), and how
    /// requests came (back to back, or with a pause between them).
    pub variant: String,
    /// Pause before each timed request (0: back to back).
    pub pause_ms: u64,
    /// HTTP request out → response in, without the log tail.
    pub client: Summary,
    /// The handler body's own time.
    pub handler: Summary,
    /// Client latency minus handler time: what the platform adds.
    pub overhead: Summary,
    /// With `X-Amz-Log-Type: Tail`: REPORT Duration minus handler time: Runtime API
    /// round trip, the bootstrap's own work, (un)marshalling.
    pub instance_side: Summary,
    /// With the log tail: client latency minus REPORT Duration: HTTP, SigV4, routing,
    /// instance checkout and release, log and metrics bookkeeping.
    pub server_side: Summary,
}

pub fn run(
    api: &Api,
    function: &str,
    runtime: &str,
    variant: &str,
    samples: usize,
    pause: Duration,
) -> anyhow::Result<WarmResult> {
    for _ in 0..samples.min(50) {
        api.invoke(function, false)?;
    }
    let (mut client, mut handler, mut overhead) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..samples {
        std::thread::sleep(pause);
        let inv = api.invoke(function, false)?;
        let h = inv.handler_ms().unwrap_or(0.0);
        client.push(ms(inv.elapsed));
        handler.push(h);
        overhead.push(ms(inv.elapsed) - h);
    }
    let (mut instance_side, mut server_side) = (Vec::new(), Vec::new());
    for _ in 0..samples {
        std::thread::sleep(pause);
        let inv = api.invoke(function, true)?;
        let report = inv.report()?;
        let h = inv.handler_ms().unwrap_or(0.0);
        instance_side.push(report.duration_ms - h);
        server_side.push(ms(inv.elapsed) - report.duration_ms);
    }
    Ok(WarmResult {
        function: function.to_string(),
        runtime: runtime.to_string(),
        variant: variant.to_string(),
        pause_ms: pause.as_millis() as u64,
        client: Summary::of_ms(&client),
        handler: Summary::of_ms(&handler),
        overhead: Summary::of_ms(&overhead),
        instance_side: Summary::of_ms(&instance_side),
        server_side: Summary::of_ms(&server_side),
    })
}

/// The HTTP floor: an unsigned GET of the health endpoint on the same kind of
/// keep-alive connection (no auth, no invoke).
pub fn http_floor(api: &Api, samples: usize) -> anyhow::Result<Summary> {
    let mut v = Vec::new();
    for i in 0..samples + 50 {
        let r = api.get_unsigned("/tern/v1/health")?;
        if r.status != 200 {
            anyhow::bail!("health check: HTTP {}", r.status);
        }
        if i >= 50 {
            v.push(r.elapsed);
        }
    }
    Ok(Summary::of(&v))
}
