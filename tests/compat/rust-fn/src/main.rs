//! Echoes what AWS's Rust runtime (`lambda_runtime`) parsed from the invocation: the
//! event and the Lambda context, including the client context.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};

async fn handler(event: LambdaEvent<Value>) -> Result<Value, Error> {
    let ctx = event.context;
    let client_context = ctx.client_context.map(|cc| {
        json!({
            "installation_id": cc.client.installation_id,
            "app_title": cc.client.app_title,
            "custom": cc.custom,
        })
    });
    Ok(json!({
        "event": event.payload,
        "request_id": ctx.request_id,
        "invoked_function_arn": ctx.invoked_function_arn,
        "client_context": client_context,
    }))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(handler)).await
}
