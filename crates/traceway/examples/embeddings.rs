//! Embeddings through the same client, against the built-in mock model (deterministic vectors).
//!
//! `cargo run -p traceway --example embeddings`

use traceway::Client;
use traceway::types::{EmbeddingInput, EmbeddingRequest, Extra};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client = Client::builder().build()?;
    let reply = client
        .embeddings(EmbeddingRequest {
            model: "mock/embedder".into(),
            input: EmbeddingInput::Many(vec!["first text".into(), "second text".into()]),
            encoding_format: None,
            dimensions: Some(4),
            user: None,
            extra: Extra::new(),
        })
        .await?;
    for e in &reply.data {
        println!("{}: {}", e.index, e.embedding);
    }
    Ok(())
}
