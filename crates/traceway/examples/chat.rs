//! A traced chat call and a streamed one against the built-in mock model.
//!
//! `cargo run -p traceway --example chat` prints the answer and, with the default
//! `OTEL_EXPORTER=console`, each call's spans. Point `OTEL_EXPORTER_OTLP_ENDPOINT` at a
//! collector to send them there instead.

use futures_util::StreamExt;
use traceway::Client;
use traceway::types::{ChatCompletionRequest, ChatMessage, Role};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client = Client::builder().callbacks(["otel"]).build()?;
    let question = vec![ChatMessage::new(Role::User, "Hello from the library")];
    let reply = client
        .chat(ChatCompletionRequest::new("mock/echo", question.clone()))
        .await?;
    println!("answer: {}", reply.choices[0].message.text());

    let mut stream = client
        .chat_stream(ChatCompletionRequest::new("mock/echo", question))
        .await?;
    print!("streamed:");
    while let Some(chunk) = stream.next().await {
        if let Some(text) = chunk?.choices.first().and_then(|c| c.delta.content.clone()) {
            print!("{text}");
        }
    }
    println!();
    if let Some(t) = client.tracing() {
        t.telemetry.shutdown()?;
    }
    Ok(())
}
