//! A streamed chat answer printed as it arrives, against the built-in mock model.
//!
//! `cargo run -p traceway --example stream`

use futures_util::StreamExt;
use std::io::Write;
use traceway::Client;
use traceway::types::{ChatCompletionRequest, ChatMessage, Role};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client = Client::builder().build()?;
    let mut request = ChatCompletionRequest::new(
        "mock/echo",
        vec![ChatMessage::new(Role::User, "streamed word by word")],
    );
    request.extra.insert(
        "mock_response".into(),
        "each of these words is its own chunk".into(),
    );
    let mut stream = client.chat_stream(request).await?;
    while let Some(chunk) = stream.next().await {
        if let Some(text) = chunk?.choices.first().and_then(|c| c.delta.content.clone()) {
            print!("{text}");
            std::io::stdout().flush()?;
        }
    }
    println!();
    Ok(())
}
