//! A SigV4-signed HTTP client for the tern server, with keep-alive: one `ureq::Agent`
//! (one pooled connection) per `Api` value. Requests are signed before the clock starts,
//! so latencies are "request bytes out → response body in" as a client sees them.

use std::io::Read;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use base64::Engine;
use serde_json::{json, Value};

pub const REGION: &str = "us-east-1";
pub const ACCOUNT: &str = "000000000000";

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Request sent → body read.
    pub elapsed: Duration,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One sync invoke as the client saw it.
#[derive(Debug)]
pub struct Invoked {
    pub elapsed: Duration,
    pub body: Value,
    /// Decoded `X-Amz-Log-Result` (only with `tail`).
    pub log: String,
}

/// The numbers of a REPORT line.
#[derive(Debug, Default, Clone, Copy)]
pub struct Report {
    pub duration_ms: f64,
    pub init_ms: Option<f64>,
}

impl Invoked {
    /// The REPORT line of the log tail.
    pub fn report(&self) -> anyhow::Result<Report> {
        let line = self
            .log
            .lines()
            .rev()
            .find(|l| l.starts_with("REPORT "))
            .ok_or_else(|| anyhow!("no REPORT line in the log tail: {:?}", self.log))?;
        let field = |name: &str| -> Option<f64> {
            line.split('\t')
                .find_map(|f| f.trim().strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches(" ms").parse().ok())
        };
        Ok(Report {
            duration_ms: field("Duration:")
                .ok_or_else(|| anyhow!("REPORT line without Duration: {line}"))?,
            init_ms: field("Init Duration:"),
        })
    }

    /// The id of the instance that served the request (the bench's functions return
    /// their log stream name `<date>/[<version>]<instance id>`).
    pub fn instance_id(&self) -> Option<String> {
        let stream = match &self.body {
            Value::String(s) => s.as_str(),
            other => other.get("instance")?.as_str()?,
        };
        instance_of_stream(stream)
    }

    /// What the handler measured of itself (`handler_ns` in its result), in ms.
    pub fn handler_ms(&self) -> Option<f64> {
        self.body
            .get("handler_ns")
            .and_then(Value::as_f64)
            .map(|ns| ns / 1e6)
    }
}

/// The instance id in a log stream name `<date>/[<version>]<instance id>`.
pub fn instance_of_stream(stream: &str) -> Option<String> {
    let id = stream.rsplit_once(']')?.1;
    (!id.is_empty()).then(|| id.to_string())
}

#[derive(Clone)]
pub struct Api {
    agent: ureq::Agent,
    pub endpoint: String,
    host: String,
    key: String,
    secret: String,
}

impl Api {
    pub fn new(endpoint: &str, key: &str, secret: &str) -> Api {
        Api {
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(120))
                .max_idle_connections_per_host(1)
                .build(),
            endpoint: endpoint.to_string(),
            host: endpoint.trim_start_matches("http://").to_string(),
            key: key.to_string(),
            secret: secret.to_string(),
        }
    }

    /// The same credentials on a connection of its own.
    pub fn fresh_connection(&self) -> Api {
        Api::new(&self.endpoint, &self.key, &self.secret)
    }

    fn sign(
        &self,
        method: &str,
        path: &str,
        query: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Vec<(String, String)> {
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        tern_core::sigv4::sign_outgoing(
            &tern_core::sigv4::Signer {
                access_key: &self.key,
                secret: &self.secret,
                region: REGION,
                service: "lambda",
            },
            method,
            &self.host,
            path,
            query,
            &headers,
            body,
        )
    }

    /// A signed request; any HTTP status is a response, transport errors are errors.
    pub fn request(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> anyhow::Result<Response> {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let signed = self.sign(method, path, query, headers, body);
        let mut req = self
            .agent
            .request(method, &format!("{}{}", self.endpoint, path_and_query));
        for (k, v) in &signed {
            req = req.set(k, v);
        }
        self.send(req, method, body)
            .with_context(|| format!("{method} {path_and_query}"))
    }

    /// An unsigned GET (health check: the HTTP round trip without auth or invoke).
    pub fn get_unsigned(&self, path: &str) -> anyhow::Result<Response> {
        let req = self.agent.get(&format!("{}{path}", self.endpoint));
        self.send(req, "GET", b"")
            .with_context(|| format!("GET {path}"))
    }

    fn send(&self, req: ureq::Request, method: &str, body: &[u8]) -> anyhow::Result<Response> {
        let started = Instant::now();
        let result = if body.is_empty() && method == "GET" {
            req.call()
        } else {
            req.send_bytes(body)
        };
        let resp = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => return Err(e.into()),
        };
        let status = resp.status();
        let headers = resp
            .headers_names()
            .into_iter()
            .filter_map(|n| Some((n.clone(), resp.header(&n)?.to_string())))
            .collect();
        let mut body = Vec::new();
        resp.into_reader()
            .take(64 << 20)
            .read_to_end(&mut body)
            .context("reading the response body")?;
        Ok(Response {
            status,
            headers,
            body,
            elapsed: started.elapsed(),
        })
    }

    fn expect(resp: Response, status: u16, what: &str) -> anyhow::Result<Response> {
        if resp.status != status {
            bail!("{what}: HTTP {} {}", resp.status, resp.text());
        }
        Ok(resp)
    }

    pub fn create_function(
        &self,
        name: &str,
        runtime: &str,
        handler: &str,
        memory_mb: u32,
        zip: &[u8],
    ) -> anyhow::Result<()> {
        self.create_function_with(name, runtime, handler, memory_mb, zip, json!({}))
    }

    /// CreateFunction with `extra` members (such as `SnapStart`) added to the request.
    pub fn create_function_with(
        &self,
        name: &str,
        runtime: &str,
        handler: &str,
        memory_mb: u32,
        zip: &[u8],
        extra: Value,
    ) -> anyhow::Result<()> {
        let mut body = json!({
            "FunctionName": name,
            "Runtime": runtime,
            "Handler": handler,
            "MemorySize": memory_mb,
            "Role": format!("arn:aws:iam::{ACCOUNT}:role/tern-bench"),
            "Code": {"ZipFile": base64::engine::general_purpose::STANDARD.encode(zip)},
        });
        if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
            body.extend(extra);
        }
        let resp = self.request(
            "POST",
            "/2015-03-31/functions",
            &[("content-type", "application/json")],
            body.to_string().as_bytes(),
        )?;
        Self::expect(resp, 201, &format!("CreateFunction {name}")).map(drop)
    }

    /// PublishLayerVersion; returns the version's ARN.
    pub fn publish_layer(&self, name: &str, zip: &[u8]) -> anyhow::Result<String> {
        let body = json!({
            "Content": {"ZipFile": base64::engine::general_purpose::STANDARD.encode(zip)},
        });
        let resp = self.request(
            "POST",
            &format!("/2018-10-31/layers/{name}/versions"),
            &[("content-type", "application/json")],
            body.to_string().as_bytes(),
        )?;
        let resp = Self::expect(resp, 201, &format!("PublishLayerVersion {name}"))?;
        let v: Value = serde_json::from_slice(&resp.body)?;
        v["LayerVersionArn"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow::anyhow!("PublishLayerVersion {name}: no LayerVersionArn"))
    }

    /// UpdateFunctionConfiguration with `Layers`.
    pub fn set_layers(&self, name: &str, arns: &[String]) -> anyhow::Result<()> {
        let body = json!({ "Layers": arns });
        let resp = self.request(
            "PUT",
            &format!("/2015-03-31/functions/{name}/configuration"),
            &[("content-type", "application/json")],
            body.to_string().as_bytes(),
        )?;
        Self::expect(resp, 200, &format!("UpdateFunctionConfiguration {name}")).map(drop)
    }

    /// UpdateFunctionConfiguration with a new environment; the server retires the
    /// function's instances, so the next invoke is a cold start.
    pub fn set_env(&self, name: &str, vars: &[(&str, &str)]) -> anyhow::Result<()> {
        let vars: serde_json::Map<String, Value> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(*v)))
            .collect();
        let body = json!({ "Environment": { "Variables": vars } });
        let resp = self.request(
            "PUT",
            &format!("/2015-03-31/functions/{name}/configuration"),
            &[("content-type", "application/json")],
            body.to_string().as_bytes(),
        )?;
        Self::expect(resp, 200, &format!("UpdateFunctionConfiguration {name}")).map(drop)
    }

    /// A signed sync invoke with an empty JSON event, prepared for sending many times.
    pub fn invoke(&self, name: &str, tail: bool) -> anyhow::Result<Invoked> {
        self.invoke_with(name, tail, b"{}")
    }

    /// Invokes with a hello-world that sleeps `ms` first (holding its instance busy).
    pub fn invoke_sleep(&self, name: &str, ms: u64) -> anyhow::Result<Invoked> {
        self.invoke_with(name, false, format!("{{\"sleep_ms\": {ms}}}").as_bytes())
    }

    /// A sync invoke with `payload` as the event.
    pub fn invoke_with(&self, name: &str, tail: bool, payload: &[u8]) -> anyhow::Result<Invoked> {
        let headers: &[(&str, &str)] = if tail {
            &[("x-amz-log-type", "Tail")]
        } else {
            &[]
        };
        let resp = self.request(
            "POST",
            &format!("/2015-03-31/functions/{name}/invocations"),
            headers,
            payload,
        )?;
        let elapsed = resp.elapsed;
        if let Some(e) = resp.header("x-amz-function-error") {
            bail!("invoke {name}: function error {e}: {}", resp.text());
        }
        let log = match resp.header("x-amz-log-result") {
            Some(l) => String::from_utf8_lossy(
                &base64::engine::general_purpose::STANDARD
                    .decode(l)
                    .context("X-Amz-Log-Result is not base64")?,
            )
            .into_owned(),
            None => String::new(),
        };
        let resp = Self::expect(resp, 200, &format!("invoke {name}"))?;
        Ok(Invoked {
            elapsed,
            body: serde_json::from_slice(&resp.body).unwrap_or(Value::Null),
            log,
        })
    }

    /// An asynchronous invoke (`X-Amz-Invocation-Type: Event`): the server answers 202
    /// once the event is durably stored. Any status is a response.
    pub fn invoke_event(&self, name: &str, payload: &[u8]) -> anyhow::Result<Response> {
        self.request(
            "POST",
            &format!("/2015-03-31/functions/{name}/invocations"),
            &[("x-amz-invocation-type", "Event")],
            payload,
        )
    }

    /// The status of an asynchronous invocation (`GET /tern/v1/invocations/{id}`).
    pub fn invocation_status(&self, request_id: &str) -> anyhow::Result<Value> {
        let resp = self.request(
            "GET",
            &format!("/tern/v1/invocations/{request_id}"),
            &[],
            b"",
        )?;
        let resp = Self::expect(resp, 200, &format!("status of {request_id}"))?;
        serde_json::from_slice(&resp.body)
            .with_context(|| format!("status of {request_id}: not JSON: {}", resp.text()))
    }

    /// A metric's value summed over its label sets, from `/metrics` (0 if absent or
    /// unreadable).
    pub fn metric(&self, name: &str) -> f64 {
        let Ok(resp) = self.get_unsigned("/metrics") else {
            return 0.0;
        };
        resp.text()
            .lines()
            .filter(|l| l.starts_with(name) && !l.starts_with('#'))
            .filter(|l| l[name.len()..].starts_with([' ', '{']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Cold starts so far by function and by what served them (`tern_cold_starts_total`'s
    /// `served_by` label: template, started_ahead, held_sandbox, new_sandbox).
    pub fn cold_starts_served_by(
        &self,
    ) -> anyhow::Result<std::collections::HashMap<(String, String), u64>> {
        let text = self.get_unsigned("/metrics")?.text();
        let label = |line: &str, name: &str| -> Option<String> {
            let at = line.find(&format!("{name}=\""))? + name.len() + 2;
            Some(line[at..].split('"').next()?.to_string())
        };
        Ok(text
            .lines()
            .filter(|l| l.starts_with("tern_cold_starts_total{"))
            .filter_map(|l| {
                let n = l.rsplit(' ').next()?.parse::<f64>().ok()? as u64;
                Some(((label(l, "function")?, label(l, "served_by")?), n))
            })
            .collect())
    }

    /// What served the one cold start of `function` between two readings of
    /// [`Api::cold_starts_served_by`].
    pub fn served_by_between(
        before: &std::collections::HashMap<(String, String), u64>,
        after: &std::collections::HashMap<(String, String), u64>,
        function: &str,
    ) -> String {
        after
            .iter()
            .find(|(k, n)| k.0 == function && **n > before.get(*k).copied().unwrap_or(0))
            .map(|((_, by), _)| by.clone())
            .unwrap_or_else(|| "unknown".to_string())
    }

    /// Prometheus counter `tern_cold_starts_total` of one function (0 if absent).
    pub fn cold_starts(&self, function: &str) -> anyhow::Result<u64> {
        let text = self.get_unsigned("/metrics")?.text();
        let label = format!("function=\"{function}\"");
        Ok(text
            .lines()
            .filter(|l| l.starts_with("tern_cold_starts_total{") && l.contains(&label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .map(|v| v as u64)
            .sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_line_fields() {
        let inv = Invoked {
            elapsed: Duration::ZERO,
            body: json!({"handler_ns": 1500}),
            log: "START RequestId: x\nEND RequestId: x\nREPORT RequestId: x\tDuration: 0.70 ms\tBilled Duration: 1 ms\tMemory Size: 128 MB\tMax Memory Used: 10 MB\tInit Duration: 77.91 ms\n".into(),
        };
        let r = inv.report().expect("report");
        assert_eq!((r.duration_ms, r.init_ms), (0.70, Some(77.91)));
        assert_eq!(inv.handler_ms(), Some(0.0015));
        assert_eq!(inv.instance_id(), None);
    }

    #[test]
    fn instance_id_from_the_log_stream_name() {
        let inv = Invoked {
            elapsed: Duration::ZERO,
            body: json!("2026/12/01/[$LATEST]pw-python3-11-0a1b2c3d-7"),
            log: String::new(),
        };
        assert_eq!(
            inv.instance_id().as_deref(),
            Some("pw-python3-11-0a1b2c3d-7")
        );
    }
}
