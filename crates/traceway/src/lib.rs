//! Traceway: one call shape (OpenAI's chat format) across LLM providers, with every call
//! traced through OpenTelemetry when the `otel` callback is on.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use traceway::{Client, types::{ChatCompletionRequest, ChatMessage, Role}};
//! let client = Client::builder().callbacks(["otel"]).build()?;
//! let reply = client
//!     .chat(ChatCompletionRequest::new("mock/echo", vec![ChatMessage::new(Role::User, "hi")]))
//!     .await?;
//! println!("{}", reply.choices[0].message.text());
//! # Ok(()) }
//! ```

pub mod client;
pub mod completion_as_chat;
pub mod deployment;
pub mod error;
mod lazy_verifier;
pub mod params;
pub mod provider;
pub mod router;
pub mod sse;
pub mod stream;
pub mod telemetry;
mod transport;
pub mod types;

pub use client::{
    BuildError, CallOptions, Client, ClientBuilder, Reply, RouteInfo, Routed, set_callbacks,
};
pub use deployment::{Deployment, DeploymentConfig, Secret};
pub use error::{Error, ErrorKind};
pub use provider::{Chunk, Operation, Request, Response};
pub use router::{RouterSettings, RoutingStrategy};
pub use stream::ChunkStream;
pub use telemetry::{Redaction, Tracing};
