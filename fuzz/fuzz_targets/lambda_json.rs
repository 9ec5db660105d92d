//! The Lambda JSON request shapes and the checks applied to them, on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_core::function::LogSettings;
use tern_core::wire::{
    CreateFunctionRequest, UpdateFunctionCodeRequest, UpdateFunctionConfigurationRequest,
};
use tern_invoke::validate;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = serde_json::from_slice::<CreateFunctionRequest>(data) {
        if let Some(env) = req.environment.and_then(|e| e.variables) {
            let _ = validate::environment(&env);
        }
        if let Some(logging) = &req.logging_config {
            let _ = validate::logging_config(&LogSettings::default(), logging);
        }
        if let Some(tracing) = &req.tracing_config {
            let _ = validate::tracing_mode(tracing);
        }
        let _ = req.handler.as_deref().map(validate::handler);
        let _ = req.description.as_deref().map(validate::description);
    }
    let _ = serde_json::from_slice::<UpdateFunctionCodeRequest>(data);
    let _ = serde_json::from_slice::<UpdateFunctionConfigurationRequest>(data);
    let _ = validate::client_context(&String::from_utf8_lossy(data));
});
