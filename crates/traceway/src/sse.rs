//! An incremental server-sent-events parser for upstream streams.
//!
//! Bytes arrive in arbitrary pieces; events end at a blank line; `data:` lines of one event are
//! joined with `\n`. Lines may end in `\n`, `\r\n` or `\r`.

/// One parsed event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The joined `data:` lines.
    pub data: String,
}

/// Accumulates bytes and yields complete events.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    event: Option<String>,
    data: Option<String>,
}

/// The most a single event may hold before the stream is treated as broken.
const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// Why a stream could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// An event grew past the limit without ending.
    #[error("an upstream stream event exceeded {MAX_EVENT_BYTES} bytes")]
    TooLarge,
    /// A line was not UTF-8.
    #[error("an upstream stream line was not valid UTF-8")]
    InvalidUtf8,
}

impl SseParser {
    /// A parser with nothing buffered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes, returning the events they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        self.buf.extend_from_slice(bytes);
        let mut events = Vec::new();
        let mut start = 0;
        let mut i = 0;
        while i < self.buf.len() {
            let b = self.buf[i];
            if b == b'\n' || b == b'\r' {
                // A lone '\r' at the end of the buffer may be the first half of "\r\n".
                if b == b'\r' && i + 1 == self.buf.len() {
                    break;
                }
                let line = std::str::from_utf8(&self.buf[start..i])
                    .map_err(|_| SseError::InvalidUtf8)?
                    .to_owned();
                let next = if b == b'\r' && self.buf.get(i + 1) == Some(&b'\n') {
                    i + 2
                } else {
                    i + 1
                };
                if let Some(ev) = self.line(&line) {
                    events.push(ev);
                }
                start = next;
                i = next;
            } else {
                i += 1;
            }
        }
        self.buf.drain(..start);
        if self.buf.len() + self.data.as_ref().map_or(0, String::len) > MAX_EVENT_BYTES {
            return Err(SseError::TooLarge);
        }
        Ok(events)
    }

    /// Ends the stream: an event left without its blank line is still delivered.
    pub fn finish(&mut self) -> Result<Option<SseEvent>, SseError> {
        if !self.buf.is_empty() {
            let line = std::str::from_utf8(&self.buf)
                .map_err(|_| SseError::InvalidUtf8)?
                .to_owned();
            self.buf.clear();
            if let Some(ev) = self.line(&line) {
                return Ok(Some(ev));
            }
        }
        Ok(self.dispatch())
    }

    fn line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            "event" => self.event = Some(value.to_owned()),
            _ => {}
        }
        None
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let data = self.data.take();
        let event = self.event.take();
        data.map(|data| SseEvent { event, data })
    }
}

impl crate::provider::FrameDecoder for SseParser {
    fn push(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, crate::Error> {
        SseParser::push(self, bytes).map_err(invalid_stream)
    }

    fn finish(&mut self) -> Result<Option<SseEvent>, crate::Error> {
        SseParser::finish(self).map_err(invalid_stream)
    }
}

fn invalid_stream(e: SseError) -> crate::Error {
    crate::Error::new(crate::ErrorKind::InvalidResponse, e.to_string())
}

/// Splits newline-delimited JSON (Ollama's stream framing) into one frame per non-empty line.
#[derive(Debug, Default)]
pub struct NdjsonDecoder {
    buf: Vec<u8>,
}

impl crate::provider::FrameDecoder for NdjsonDecoder {
    fn push(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, crate::Error> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=pos).collect();
            let text = std::str::from_utf8(&line)
                .map_err(|_| invalid_stream(SseError::InvalidUtf8))?
                .trim();
            if !text.is_empty() {
                out.push(SseEvent {
                    event: None,
                    data: text.to_owned(),
                });
            }
        }
        if self.buf.len() > MAX_EVENT_BYTES {
            return Err(invalid_stream(SseError::TooLarge));
        }
        Ok(out)
    }

    fn finish(&mut self) -> Result<Option<SseEvent>, crate::Error> {
        let rest = std::mem::take(&mut self.buf);
        let text = std::str::from_utf8(&rest)
            .map_err(|_| invalid_stream(SseError::InvalidUtf8))?
            .trim();
        Ok((!text.is_empty()).then(|| SseEvent {
            event: None,
            data: text.to_owned(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        for c in chunks {
            out.extend(p.push(c).unwrap());
        }
        out.extend(p.finish().unwrap());
        out
    }

    #[test]
    fn splits_events_across_arbitrary_chunk_boundaries() {
        let text = b"data: {\"a\":1}\n\ndata: [DONE]\n\n";
        let whole = all(&[text]);
        for cut in 0..text.len() {
            assert_eq!(all(&[&text[..cut], &text[cut..]]), whole, "cut at {cut}");
        }
        assert_eq!(whole.len(), 2);
        assert_eq!(whole[1].data, "[DONE]");
    }

    #[test]
    fn handles_crlf_comments_event_names_and_multiline_data() {
        let ev = all(&[b": keepalive\r\nevent: message_start\r\ndata: a\r\ndata: b\r\n\r\n"]);
        assert_eq!(
            ev,
            vec![SseEvent {
                event: Some("message_start".into()),
                data: "a\nb".into()
            }]
        );
    }

    #[test]
    fn delivers_a_trailing_event_without_blank_line() {
        assert_eq!(all(&[b"data: x"])[0].data, "x");
    }

    #[test]
    fn ndjson_lines_become_frames_across_chunk_boundaries() {
        use crate::provider::FrameDecoder;
        let mut d = NdjsonDecoder::default();
        let mut frames = d.push(b"{\"a\":1}\n{\"b\"").unwrap();
        frames.extend(d.push(b":2}\n\n{\"c\":3}").unwrap());
        frames.extend(d.finish().unwrap());
        let data: Vec<&str> = frames.iter().map(|f| f.data.as_str()).collect();
        assert_eq!(data, ["{\"a\":1}", "{\"b\":2}", "{\"c\":3}"]);
    }

    #[test]
    fn rejects_invalid_utf8() {
        let mut p = SseParser::new();
        assert_eq!(p.push(b"data: \xff\n\n"), Err(SseError::InvalidUtf8));
    }
}
