//! A model group with retries and a fallback group: the primary fails on cue, the fallback
//! answers, and the route says what it took. With `OTEL_EXPORTER=console` and the `otel`
//! callback, each attempt prints as its own `raw_gen_ai_request` span.
//!
//! `cargo run -p traceway --example fallbacks`

use std::time::Duration;
use traceway::types::{ChatCompletionRequest, ChatMessage, Role};
use traceway::{CallOptions, Client, DeploymentConfig, Reply, Request, RouterSettings};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut router = RouterSettings {
        num_retries: 1,
        retry_after: Duration::from_millis(50),
        ..RouterSettings::default()
    };
    router
        .fallbacks
        .insert("primary".into(), vec!["backup".into()]);
    let client = Client::builder()
        .callbacks(["otel"])
        .router(router)
        .deployment(DeploymentConfig {
            model_name: "primary".into(),
            model: "mock/flaky".into(),
            mock_response: Some("error:503:primary is down".into()),
            ..DeploymentConfig::default()
        })
        .deployment(DeploymentConfig {
            model_name: "backup".into(),
            model: "mock/steady".into(),
            mock_response: Some("answered by the backup".into()),
            ..DeploymentConfig::default()
        })
        .build()?;
    let request =
        ChatCompletionRequest::new("primary", vec![ChatMessage::new(Role::User, "hello")]);
    let routed = client
        .call(Request::Chat(request), CallOptions::default())
        .await?;
    if let Reply::Full(traceway::Response::Chat(r)) = routed.reply {
        println!("{}", r.choices[0].message.text());
    }
    println!(
        "group {}, {} retries, {} fallbacks",
        routed.info.model_group, routed.info.retries, routed.info.fallbacks
    );
    if let Some(t) = client.tracing() {
        t.telemetry.shutdown()?;
    }
    Ok(())
}
