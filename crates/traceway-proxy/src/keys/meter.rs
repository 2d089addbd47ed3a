//! Token metering of virtual-key calls, for tpm limits and spend: a complete response's usage
//! is counted at once; a stream's when it ends (or the client goes away). A stream is asked for
//! its usage chunk even when the client did not ask; that chunk is then kept from the client here.

use super::{Meter, Tokens};
use futures_util::Stream;
use std::pin::Pin;
use std::task::{Context, Poll};
use traceway::{Chunk, Error, Request, Response};

/// Asks a streamed request for its usage chunk; returns whether the client would not have
/// got it (so the meter must keep it from them).
pub fn ask_for_usage(request: &mut Request) -> bool {
    if !request.is_stream() || request.wants_usage_chunk() {
        return false;
    }
    let opts = match request {
        Request::Chat(r) => &mut r.stream_options,
        Request::Completion(r) => &mut r.stream_options,
        Request::Embedding(_) => return false,
    };
    opts.get_or_insert_with(Default::default).include_usage = Some(true);
    true
}

/// A complete response's tokens.
pub fn response_tokens(r: &Response) -> Tokens {
    match r {
        Response::Chat(r) => r.usage.as_ref().map(usage_tokens).unwrap_or_default(),
        Response::Completion(r) => r.usage.as_ref().map(usage_tokens).unwrap_or_default(),
        Response::Embedding(r) => r.usage.as_ref().map_or_else(Tokens::default, |u| Tokens {
            input: u.prompt_tokens,
            output: 0,
            total: u.total_tokens,
        }),
    }
}

fn usage_tokens(u: &traceway::types::Usage) -> Tokens {
    Tokens {
        input: u.prompt_tokens,
        output: u.completion_tokens,
        total: u.total_tokens,
    }
}

/// A stream of chunks that counts its usage into a [`Meter`] when it ends or is dropped.
pub struct Metered<S> {
    inner: S,
    meter: Option<Meter>,
    /// Keep the usage chunk (and usage fields) from the client, who did not ask for them.
    strip: bool,
    tokens: Tokens,
}

impl<S> Metered<S> {
    /// Meters `inner`; `strip` when the client did not ask for usage.
    pub fn new(inner: S, meter: Meter, strip: bool) -> Self {
        Metered {
            inner,
            meter: Some(meter),
            strip,
            tokens: Tokens::default(),
        }
    }

    fn flush(&mut self) {
        if let Some(m) = self.meter.take()
            && self.tokens.total > 0
        {
            m.record_later(self.tokens);
        }
    }
}

impl<S> Drop for Metered<S> {
    fn drop(&mut self) {
        self.flush();
    }
}

impl<S> Stream for Metered<S>
where
    S: Stream<Item = Result<Chunk, Error>> + Unpin,
{
    type Item = Result<Chunk, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            match Pin::new(&mut this.inner).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(mut chunk))) => {
                    let (usage, no_choices) = match &mut chunk {
                        Chunk::Chat(c) => {
                            (c.usage.as_ref().map(usage_tokens), c.choices.is_empty())
                        }
                        Chunk::Completion(c) => {
                            (c.usage.as_ref().map(usage_tokens), c.choices.is_empty())
                        }
                    };
                    if let Some(t) = usage {
                        // The last usage chunk is the whole call's; an earlier one never exceeds it.
                        if t.total >= this.tokens.total {
                            this.tokens = t;
                        }
                    }
                    if this.strip && usage.is_some() {
                        if no_choices {
                            continue;
                        }
                        match &mut chunk {
                            Chunk::Chat(c) => c.usage = None,
                            Chunk::Completion(c) => c.usage = None,
                        }
                    }
                    return Poll::Ready(Some(Ok(chunk)));
                }
                Poll::Ready(other) => {
                    this.flush();
                    return Poll::Ready(other);
                }
            }
        }
    }
}
