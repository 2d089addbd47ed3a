//! A small Chrome DevTools Protocol driver for the browser tests: starts a headless Chromium
//! with a throwaway profile, attaches to its page over a WebSocket, and offers the few commands
//! the tests need (evaluate, click, type, key presses, viewport, screenshots). Every wait is
//! bounded, and a failure names what was awaited and what the page showed.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// Set to `required` (as `.ci/run` does) to fail instead of skipping when no Chromium is found.
pub const REQUIRE_ENV: &str = "TRACEWAY_BROWSER_TESTS";
/// A Chromium (or Chrome) binary to use instead of searching `PATH`.
pub const CHROMIUM_ENV: &str = "TRACEWAY_CHROMIUM";

const BINARIES: &[&str] = &[
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
];
const WAIT: Duration = Duration::from_secs(20);

/// The Chromium binary, if one is installed.
pub fn find_chromium() -> Option<PathBuf> {
    if let Ok(p) = std::env::var(CHROMIUM_ENV) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| BINARIES.iter().map(move |b| dir.join(b)))
        .find(|p| p.is_file())
}

/// A running headless Chromium; killed, and its profile removed, on drop.
pub struct Browser {
    child: Child,
    profile: PathBuf,
    port: u16,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Browser {
    /// Starts `binary` headless, with no network of its own beyond what the page asks for.
    pub fn launch(binary: &Path) -> Browser {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let profile =
            std::env::temp_dir().join(format!("traceway-chromium-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&profile).unwrap();
        let mut child = Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--force-color-profile=srgb",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        // Chromium prints its DevTools address on stderr; the reader keeps draining it so the
        // pipe never fills, and keeps the lines for failure messages.
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel::<u16>();
        let lines = stderr.clone();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("DevTools listening on ws://127.0.0.1:").nth(1)
                    && let Some(port) = rest.split('/').next().and_then(|p| p.parse().ok())
                {
                    let _ = tx.send(port);
                }
                lines.lock().unwrap().push(line);
            }
        });
        let port = match rx.recv_timeout(WAIT) {
            Ok(port) => port,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "Chromium did not print its DevTools address within {WAIT:?}; stderr:\n{}",
                    stderr.lock().unwrap().join("\n")
                );
            }
        };
        Browser {
            child,
            profile,
            port,
            stderr,
        }
    }

    /// Attaches to the browser's first page.
    pub async fn page(&self) -> Page {
        let list_url = format!("http://127.0.0.1:{}/json/list", self.port);
        let deadline = Instant::now() + WAIT;
        let ws = loop {
            let targets: Value = match reqwest::get(&list_url).await {
                Ok(r) => r.json().await.unwrap_or(Value::Null),
                Err(_) => Value::Null,
            };
            let found = targets.as_array().and_then(|ts| {
                ts.iter()
                    .find(|t| t["type"] == "page")
                    .and_then(|t| t["webSocketDebuggerUrl"].as_str())
                    .map(str::to_owned)
            });
            if let Some(ws) = found {
                break ws;
            }
            assert!(
                Instant::now() < deadline,
                "Chromium has no page target: {targets}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let page = Page::connect(&ws).await;
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            page.call(domain, json!({})).await;
        }
        // Screenshots are taken in the light scheme whatever the machine prefers.
        page.call(
            "Emulation.setEmulatedMedia",
            json!({"features": [{"name": "prefers-color-scheme", "value": "light"}]}),
        )
        .await;
        page
    }
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// One page, driven over its DevTools WebSocket.
pub struct Page {
    out: mpsc::UnboundedSender<String>,
    pending: Pending,
    events: Arc<Mutex<Vec<Value>>>,
    next_id: AtomicU64,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Page {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Page {
    async fn connect(ws_url: &str) -> Page {
        let (ws, _) = tokio_tungstenite::connect_async(ws_url)
            .await
            .unwrap_or_else(|e| panic!("cannot open the DevTools socket {ws_url}: {e}"));
        let (mut sink, mut stream) = ws.split();
        let (out, mut out_rx) = mpsc::unbounded_channel::<String>();
        let pending: Pending = Arc::default();
        let events: Arc<Mutex<Vec<Value>>> = Arc::default();
        let (p, e) = (pending.clone(), events.clone());
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    msg = out_rx.recv() => match msg {
                        Some(text) => if sink.send(Message::Text(text.into())).await.is_err() { break },
                        None => break,
                    },
                    msg = stream.next() => match msg {
                        Some(Ok(Message::Text(text))) => {
                            let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else { continue };
                            match v.get("id").and_then(Value::as_u64) {
                                Some(id) => {
                                    if let Some(tx) = p.lock().unwrap().remove(&id) {
                                        let _ = tx.send(v);
                                    }
                                }
                                None => e.lock().unwrap().push(v),
                            }
                        }
                        Some(Ok(_)) => {}
                        _ => break,
                    },
                }
            }
        });
        Page {
            out,
            pending,
            events,
            next_id: AtomicU64::new(1),
            task,
        }
    }

    /// Sends one command and returns its `result`; panics on a protocol error or no answer.
    pub async fn call(&self, method: &str, params: Value) -> Value {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        self.out.send(msg).expect("the DevTools connection is open");
        let answer = tokio::time::timeout(WAIT, rx)
            .await
            .unwrap_or_else(|_| panic!("{method}: no answer within {WAIT:?}"))
            .unwrap_or_else(|_| panic!("{method}: the DevTools connection closed"));
        if let Some(err) = answer.get("error") {
            panic!("{method} failed: {err}");
        }
        answer["result"].clone()
    }

    /// Evaluates `expr` in the page (promises awaited) and returns its value.
    pub async fn eval(&self, expr: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expr, "awaitPromise": true, "returnByValue": true}),
            )
            .await;
        if let Some(ex) = r.get("exceptionDetails") {
            panic!("evaluating {expr}: {ex}");
        }
        r["result"]["value"].clone()
    }

    /// Waits until `expr` is truthy, returning its value; names `what` and shows the page on timeout.
    pub async fn wait_for(&self, expr: &str, what: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let v = self.eval(expr).await;
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return v;
            }
            if Instant::now() > deadline {
                let text = self
                    .eval("document.body ? document.body.innerText : ''")
                    .await;
                panic!(
                    "timed out after {WAIT:?} waiting for {what} ({expr}); the page shows:\n{}",
                    text.as_str().unwrap_or("")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Loads `url` and waits for the document to finish loading.
    pub async fn goto(&self, url: &str) {
        self.call("Page.navigate", json!({"url": url})).await;
        self.wait_for(
            "document.readyState === 'complete' && location.href !== 'about:blank'",
            "the page to load",
        )
        .await;
    }

    /// Sets the viewport (CSS pixels); `mobile` emulates a phone's viewport handling.
    pub async fn viewport(&self, width: u32, height: u32, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        )
        .await;
    }

    /// Clicks the middle of the element `expr` evaluates to, with real mouse events.
    pub async fn click(&self, expr: &str) {
        let js = format!(
            "(() => {{ const el = {expr}; if (!el) return null; el.scrollIntoView({{block: 'center', inline: 'center'}}); const r = el.getBoundingClientRect(); return [r.left + r.width / 2, r.top + r.height / 2]; }})()"
        );
        let at = self.wait_for(&js, &format!("{expr} to exist")).await;
        let (x, y) = (at[0].as_f64().unwrap(), at[1].as_f64().unwrap());
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}),
            )
            .await;
        }
    }

    /// Focuses the element `expr` evaluates to and types `text` into it.
    pub async fn type_into(&self, expr: &str, text: &str) {
        self.wait_for(&format!("(() => {{ const el = {expr}; if (!el) return false; el.focus(); return document.activeElement === el; }})()"), &format!("{expr} to take focus"))
            .await;
        self.call("Input.insertText", json!({"text": text})).await;
    }

    /// Presses a key (`Enter`, `Escape`, `Tab`) on whatever has focus.
    pub async fn press(&self, key: &str) {
        let (code, text) = match key {
            "Enter" => (13, "\r"),
            "Escape" => (27, ""),
            "Tab" => (9, ""),
            other => panic!("no key code for {other}"),
        };
        let mut down = json!({"type": "keyDown", "key": key, "code": key, "windowsVirtualKeyCode": code, "nativeVirtualKeyCode": code});
        if !text.is_empty() {
            down["text"] = json!(text);
        }
        self.call("Input.dispatchKeyEvent", down).await;
        self.call(
            "Input.dispatchKeyEvent",
            json!({"type": "keyUp", "key": key, "code": key, "windowsVirtualKeyCode": code, "nativeVirtualKeyCode": code}),
        )
        .await;
    }

    /// Saves a PNG of the whole page (up to `max_height` CSS pixels tall) to `path`.
    pub async fn screenshot(&self, path: &Path, max_height: f64) {
        // Let fonts, layout and any entry animation settle first.
        self.eval("new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(r, 150))))")
            .await;
        let metrics = self.call("Page.getLayoutMetrics", json!({})).await;
        let width = metrics["cssLayoutViewport"]["clientWidth"]
            .as_f64()
            .unwrap();
        let height = metrics["cssContentSize"]["height"]
            .as_f64()
            .unwrap()
            .min(max_height);
        let shot = self
            .call(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true,
                       "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}}),
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        std::fs::write(path, png)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }

    /// Script errors and console errors so far (network errors such as an expected 401 left out).
    pub fn errors(&self) -> Vec<String> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e["method"].as_str()? {
                "Runtime.exceptionThrown" => Some(e["params"]["exceptionDetails"].to_string()),
                "Runtime.consoleAPICalled" if e["params"]["type"] == "error" => {
                    Some(e["params"]["args"].to_string())
                }
                "Log.entryAdded"
                    if e["params"]["entry"]["level"] == "error"
                        && e["params"]["entry"]["source"] != "network" =>
                {
                    Some(e["params"]["entry"].to_string())
                }
                _ => None,
            })
            .collect()
    }
}
