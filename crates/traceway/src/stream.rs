//! Streams of chunks: the upstream SSE body turned into chunks, and the stream handed to the
//! caller, which records the whole stream onto its spans when it ends or is dropped.

use crate::error::{Error, ErrorKind};
use crate::provider::{Chunk, FrameDecoder, StreamEvent, StreamParser};
use crate::telemetry::StreamTrace;
use crate::transport::{ByteStream, UpstreamResponse};
use futures_core::Stream;
use futures_util::StreamExt;
use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// A boxed stream of chunks.
pub(crate) type BoxChunks = Pin<Box<dyn Stream<Item = Result<Chunk, Error>> + Send>>;

struct UpstreamState {
    body: ByteStream,
    decoder: Box<dyn FrameDecoder>,
    parser: Box<dyn StreamParser>,
    pending: VecDeque<Result<Chunk, Error>>,
    provider: &'static str,
    idle_timeout: Duration,
    ended: bool,
    saw_end: bool,
}

impl UpstreamState {
    fn take_events(&mut self, events: Vec<crate::sse::SseEvent>) {
        for ev in events {
            let parsed = match self.parser.parse(&ev) {
                Ok(p) => p,
                Err(e) => {
                    self.pending.push_back(Err(e));
                    self.ended = true;
                    return;
                }
            };
            for step in parsed {
                match step {
                    StreamEvent::Chunk(c) => {
                        if chunk_finishes(&c) {
                            self.saw_end = true;
                        }
                        self.pending.push_back(Ok(c));
                    }
                    StreamEvent::Done => {
                        self.saw_end = true;
                        self.ended = true;
                        return;
                    }
                    StreamEvent::Skip => {}
                }
            }
        }
    }

    fn broken(&self, what: String) -> Error {
        Error::new(ErrorKind::Connection, what).with_provider(self.provider)
    }
}

fn chunk_finishes(c: &Chunk) -> bool {
    match c {
        Chunk::Chat(c) => c.choices.iter().any(|ch| ch.finish_reason.is_some()),
        Chunk::Completion(c) => c.choices.iter().any(|ch| ch.finish_reason.is_some()),
    }
}

/// Turns an upstream SSE response into chunks; a stall longer than `idle_timeout` between
/// bytes, a broken connection or a body that ends before the stream finished is an error.
pub(crate) fn upstream_chunks(
    response: UpstreamResponse,
    provider: &'static str,
    decoder: Box<dyn FrameDecoder>,
    parser: Box<dyn StreamParser>,
    idle_timeout: Duration,
) -> BoxChunks {
    let state = UpstreamState {
        body: response.into_stream(),
        decoder,
        parser,
        pending: VecDeque::new(),
        provider,
        idle_timeout,
        ended: false,
        saw_end: false,
    };
    Box::pin(futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(item) = st.pending.pop_front() {
                return Some((item, st));
            }
            if st.ended {
                return None;
            }
            match tokio::time::timeout(st.idle_timeout, st.body.next()).await {
                Ok(Some(Ok(bytes))) => match st.decoder.push(&bytes) {
                    Ok(events) => st.take_events(events),
                    Err(mut err) => {
                        st.ended = true;
                        err.message =
                            format!("{} sent a broken stream: {}", st.provider, err.message);
                        return Some((Err(err.with_provider(st.provider)), st));
                    }
                },
                Ok(Some(Err(e))) => {
                    st.ended = true;
                    let err = st.broken(format!(
                        "{}'s stream broke mid-way: {}",
                        st.provider, e.detail
                    ));
                    return Some((Err(err), st));
                }
                Ok(None) => {
                    match st.decoder.finish() {
                        Ok(Some(ev)) => st.take_events(vec![ev]),
                        Ok(None) => {}
                        Err(e) => {
                            st.pending.push_back(Err(e));
                            st.ended = true;
                        }
                    }
                    if !st.ended && !st.saw_end {
                        st.pending.push_back(Err(Error::new(
                            ErrorKind::InvalidResponse,
                            format!("{} closed the stream before it finished", st.provider),
                        )
                        .with_provider(st.provider)));
                    }
                    st.ended = true;
                }
                Err(_) => {
                    st.ended = true;
                    let err = Error::new(
                        ErrorKind::Timeout,
                        format!(
                            "{} sent nothing for {:?} mid-stream",
                            st.provider, st.idle_timeout
                        ),
                    )
                    .with_provider(st.provider);
                    return Some((Err(err), st));
                }
            }
        }
    }))
}

/// The stream a caller reads: chunks in OpenAI's format, ending after the last one.
///
/// When the caller did not ask for `stream_options.include_usage`, the usage-only chunk the
/// gateway asked the upstream for is recorded on the spans but not passed on.
pub struct ChunkStream {
    inner: BoxChunks,
    trace: Option<StreamTrace>,
    strip_usage: bool,
    done: bool,
    /// Holds the deployment in flight until the stream ends and takes its usage.
    usage: Option<crate::client::UsageSink>,
}

impl ChunkStream {
    pub(crate) fn new(
        inner: BoxChunks,
        trace: Option<StreamTrace>,
        strip_usage: bool,
        usage: Option<crate::client::UsageSink>,
    ) -> Self {
        ChunkStream {
            inner,
            trace,
            strip_usage,
            done: false,
            usage,
        }
    }
}

impl Stream for ChunkStream {
    type Item = Result<Chunk, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            match this.inner.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(mut chunk))) => {
                    if let Some(t) = this.trace.as_mut() {
                        t.on_chunk(&chunk);
                    }
                    if let Some(sink) = this.usage.as_mut() {
                        sink.on_chunk(&chunk);
                    }
                    if this.strip_usage {
                        match &mut chunk {
                            Chunk::Chat(c) => {
                                if c.choices.is_empty() && c.usage.is_some() {
                                    continue;
                                }
                                c.usage = None;
                            }
                            Chunk::Completion(c) => {
                                if c.choices.is_empty() && c.usage.is_some() {
                                    continue;
                                }
                                c.usage = None;
                            }
                        }
                    }
                    return Poll::Ready(Some(Ok(chunk)));
                }
                Poll::Ready(Some(Err(e))) => {
                    this.done = true;
                    if let Some(mut sink) = this.usage.take() {
                        sink.fail(&e);
                    }
                    if let Some(mut t) = this.trace.take() {
                        t.fail(&e);
                    }
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => {
                    this.done = true;
                    this.usage = None;
                    if let Some(mut t) = this.trace.take() {
                        t.finish();
                    }
                    return Poll::Ready(None);
                }
            }
        }
    }
}
