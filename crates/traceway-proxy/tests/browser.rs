//! The web UI in a real headless Chromium: sign in, watch a call arrive, open its span tree,
//! look at the models, create and delete a key — at a desktop width and at a phone width.
//! Screenshots of every main view go to the test's scratch directory under `target/`, or to
//! `docs/screenshots/` (linked from the README) with `TRACEWAY_UPDATE_SCREENSHOTS=1`, so a test
//! run leaves the work tree as it found it.
//!
//! Needs a Chromium (`apt-get install chromium`); without one the test is skipped with a
//! message, unless `TRACEWAY_BROWSER_TESTS=required` (as in `.ci/run`) makes that a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cdp;
mod common;

use cdp::{Browser, Page};
use common::{http, proxy};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

const MASTER: &str = "sk-browser-master";
const CONFIG: &str = "model_list:
  - model_name: mock
    litellm_params:
      model: mock/echo
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_base: http://127.0.0.1:9/v1
      api_key: sk-provider-secret
general_settings:
  master_key: sk-browser-master
  ui_trace_buffer_size: 200
";
const DESKTOP: (u32, u32) = (1280, 800);
const PHONE: (u32, u32) = (390, 844);

fn screenshots() -> PathBuf {
    let dir = if std::env::var("TRACEWAY_UPDATE_SCREENSHOTS").as_deref() == Ok("1") {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots")
    } else {
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots")
    };
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn post(url: String, key: &str, body: Value) -> (u16, Value) {
    let resp = http()
        .post(url)
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn chat(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": text}
    ]})
}

/// `document.querySelectorAll(sel)` as an expression of its length.
fn count(sel: &str) -> String {
    format!("document.querySelectorAll({sel:?}).length")
}

/// An expression for the first element matching `sel` whose text contains `text`.
fn with_text(sel: &str, text: &str) -> String {
    format!(
        "[...document.querySelectorAll({sel:?})].find((el) => el.textContent.includes({text:?}))"
    )
}

async fn no_horizontal_scroll(page: &Page, view: &str) {
    let overflow = page
        .eval("document.documentElement.scrollWidth - window.innerWidth")
        .await;
    assert!(
        overflow.as_f64().unwrap() <= 1.0,
        "{view} scrolls sideways by {overflow}px at a phone width"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_watch_a_call_open_its_trace_and_manage_a_key() {
    let Some(binary) = cdp::find_chromium() else {
        if std::env::var(cdp::REQUIRE_ENV).as_deref() == Ok("required") {
            panic!(
                "no Chromium found (install the `chromium` package, or set {})",
                cdp::CHROMIUM_ENV
            );
        }
        eprintln!(
            "SKIPPED: no Chromium found; install the `chromium` package to run the browser test"
        );
        return;
    };
    let p = proxy(CONFIG, &[]).await;
    let base = p.url();
    let shots = screenshots();
    let browser = Browser::launch(&binary);
    let page = browser.page().await;

    // A team and a key on it, so the list shows key aliases and teams.
    let (status, team) = post(
        format!("{base}/team/new"),
        MASTER,
        json!({"team_alias": "ml-platform", "models": ["mock"]}),
    )
    .await;
    assert_eq!(status, 200, "{team}");
    let (status, notebook) = post(
        format!("{base}/key/generate"),
        MASTER,
        json!({"key_alias": "notebook", "team_id": team["team_id"], "models": ["mock"], "rpm_limit": 60}),
    )
    .await;
    assert_eq!(status, 200, "{notebook}");
    let notebook = notebook["key"].as_str().unwrap().to_owned();

    // ---- sign in (keyboard only) ----
    page.viewport(DESKTOP.0, DESKTOP.1, false).await;
    page.goto(&format!("{base}/ui")).await;
    page.wait_for("document.querySelector('#login-key')", "the sign-in form")
        .await;
    page.screenshot(&shots.join("login-1280.png"), 900.0).await;
    page.type_into("document.querySelector('#login-key')", "sk-not-the-key")
        .await;
    page.press("Enter").await;
    let refused = page
        .wait_for("(() => { const e = document.querySelector('#login-error'); return e && !e.hidden && e.textContent; })()", "the refusal")
        .await;
    assert!(
        refused.as_str().unwrap().contains("not accepted"),
        "{refused}"
    );
    page.type_into("document.querySelector('#login-key')", MASTER)
        .await;
    page.press("Enter").await;
    page.wait_for("location.hash === '#/traces' && document.querySelector('h1') && document.querySelector('h1').textContent === 'Traces'", "the traces view").await;
    let key_in_dom = page
        .eval(&format!(
            "document.documentElement.outerHTML.includes({MASTER:?})"
        ))
        .await;
    assert_eq!(key_in_dom, json!(false), "the key is not left in the page");
    let stored = page
        .eval("localStorage.length + sessionStorage.length")
        .await;
    assert_eq!(stored, json!(0), "nothing is stored in the browser");
    page.wait_for(
        "!document.querySelector('#trace-empty').hidden",
        "the empty state",
    )
    .await;

    // ---- a call appears by itself (live update) ----
    let (status, _) = post(
        format!("{base}/v1/chat/completions"),
        MASTER,
        chat("mock", "Is this thing on?"),
    )
    .await;
    assert_eq!(status, 200);
    page.wait_for(
        &format!("{} === 1", count("#trace-rows tr")),
        "the call to appear",
    )
    .await;
    let row = page
        .eval("document.querySelector('#trace-rows tr').innerText")
        .await;
    assert!(
        row.as_str().unwrap().contains("mock") && row.as_str().unwrap().contains("OK 200"),
        "{row}"
    );

    // More traffic: a failure, a stream, and a call with the team's key.
    let (status, _) = post(
        format!("{base}/v1/chat/completions"),
        MASTER,
        chat("gpt-4o", "Hello?"),
    )
    .await;
    assert!(status >= 500, "the unreachable upstream fails ({status})");
    let mut stream = chat("mock", "Stream a short answer please");
    stream["stream"] = json!(true);
    let resp = http()
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(MASTER)
        .json(&stream)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap();
    let (status, _) = post(
        format!("{base}/v1/chat/completions"),
        &notebook,
        chat("mock", "Summarise the release notes in one line."),
    )
    .await;
    assert_eq!(status, 200);
    page.wait_for(
        &format!("{} === 4", count("#trace-rows tr")),
        "four calls in the list",
    )
    .await;
    let first = page
        .eval("document.querySelector('#trace-rows tr').innerText")
        .await;
    assert!(
        first.as_str().unwrap().contains("notebook")
            && first.as_str().unwrap().contains("ml-platform"),
        "{first}"
    );
    assert!(
        page.eval(&format!("!!{}", with_text("#trace-rows tr", "Error 5")))
            .await
            .as_bool()
            .unwrap()
    );

    // Filters: failed calls only.
    page.eval("(() => { const s = document.querySelector('#filter-status'); s.value = 'error'; s.dispatchEvent(new Event('change')); })()").await;
    page.wait_for(
        &format!("{} === 1", count("#trace-rows tr")),
        "the failed call alone",
    )
    .await;
    page.eval("(() => { const s = document.querySelector('#filter-status'); s.value = ''; s.dispatchEvent(new Event('change')); })()").await;
    page.wait_for(
        &format!("{} === 4", count("#trace-rows tr")),
        "every call again",
    )
    .await;
    page.screenshot(&shots.join("traces-1280.png"), 1200.0)
        .await;

    // ---- its span tree (opened from the keyboard) ----
    page.eval("document.querySelector('#trace-rows a').focus()")
        .await;
    page.press("Enter").await;
    page.wait_for(
        &format!("{} >= 2", count(".waterfall .span-row")),
        "the span tree",
    )
    .await;
    let tree = page.eval("[...document.querySelectorAll('.waterfall .span-name')].map((e) => e.textContent).join('|')").await;
    let tree = tree.as_str().unwrap();
    assert!(
        tree.contains("Received Proxy Server Request") && tree.contains("raw_gen_ai_request"),
        "{tree}"
    );
    let messages = page
        .eval(
            "document.querySelector('.messages') && document.querySelector('.messages').innerText",
        )
        .await;
    assert!(
        messages
            .as_str()
            .unwrap()
            .contains("Summarise the release notes"),
        "{messages}"
    );
    page.click(&with_text(".waterfall .span-row", "raw_gen_ai_request"))
        .await;
    page.wait_for(
        "document.querySelector('#span-title').textContent === 'raw_gen_ai_request'",
        "the attempt's attributes",
    )
    .await;
    let attrs = page
        .eval("document.querySelector('.attrs').innerText")
        .await;
    assert!(
        attrs.as_str().unwrap().contains("litellm.model_id"),
        "{attrs}"
    );
    let trace_url = page
        .eval("location.hash")
        .await
        .as_str()
        .unwrap()
        .to_owned();
    page.screenshot(&shots.join("trace-detail-1280.png"), 2000.0)
        .await;

    // ---- models ----
    page.click(&with_text("#nav a", "Models")).await;
    page.wait_for(
        &format!("{} === 2", count("main tbody tr")),
        "both deployments",
    )
    .await;
    let models = page
        .eval("document.querySelector('main table').innerText")
        .await;
    let models = models.as_str().unwrap();
    assert!(
        models.contains("Last call failed") && models.contains("Healthy"),
        "{models}"
    );
    assert!(!models.contains("sk-provider-secret"));
    page.screenshot(&shots.join("models-1280.png"), 1000.0)
        .await;

    // ---- create a key ----
    page.click(&with_text("#nav a", "Keys")).await;
    page.wait_for(
        &with_text("#keys-table tbody tr", "notebook"),
        "the key list",
    )
    .await;
    page.click(&with_text("main button", "Create key")).await;
    page.wait_for(
        "document.querySelector('#dialog').open",
        "the create dialog",
    )
    .await;
    page.type_into("document.querySelector('#f-key_alias')", "browser-test")
        .await;
    page.type_into("document.querySelector('#f-models')", "mock")
        .await;
    page.type_into("document.querySelector('#f-rpm_limit')", "ten")
        .await;
    page.press("Enter").await;
    page.wait_for("(() => { const e = document.querySelector('#dialog-error'); return !e.hidden && e.textContent.includes('whole number'); })()", "the field error").await;
    page.eval("document.querySelector('#f-rpm_limit').value = ''")
        .await;
    page.type_into("document.querySelector('#f-rpm_limit')", "10")
        .await;
    page.press("Enter").await;
    page.wait_for(
        "document.querySelector('#dialog-title').textContent === 'Create this key?'",
        "the review step",
    )
    .await;
    page.click("document.querySelector('#dialog-actions button[type=submit]')")
        .await;
    let new_key = page
        .wait_for("(() => { const k = document.querySelector('#new-key'); return k && k.textContent; })()", "the new key, shown once")
        .await;
    let new_key = new_key.as_str().unwrap().to_owned();
    assert!(new_key.starts_with("sk-"), "{new_key}");
    page.screenshot(&shots.join("key-created-1280.png"), 900.0)
        .await;
    let (status, _) = post(
        format!("{base}/v1/chat/completions"),
        &new_key,
        chat("mock", "hi"),
    )
    .await;
    assert_eq!(status, 200, "the new key works");
    page.click(&with_text("#dialog-actions button", "Done"))
        .await;
    page.wait_for(
        "!document.querySelector('#dialog').open",
        "the dialog to close",
    )
    .await;
    page.wait_for(
        &with_text("#keys-table tbody tr", "browser-test"),
        "the new key in the list",
    )
    .await;
    let html = page.eval("document.documentElement.outerHTML").await;
    assert!(
        !html.as_str().unwrap().contains(&new_key),
        "the key is gone from the page once the dialog closes"
    );
    page.screenshot(&shots.join("keys-1280.png"), 1000.0).await;

    // ---- delete it: Escape cancels, the danger button confirms ----
    let delete = format!(
        "{}.querySelector('button.danger')",
        with_text("#keys-table tbody tr", "browser-test")
    );
    page.click(&delete).await;
    page.wait_for("document.querySelector('#dialog').open && document.querySelector('#dialog-title').textContent.startsWith('Delete key')", "the delete confirmation").await;
    page.press("Escape").await;
    page.wait_for(
        "!document.querySelector('#dialog').open",
        "Escape to cancel",
    )
    .await;
    assert!(
        page.eval(&format!(
            "!!{}",
            with_text("#keys-table tbody tr", "browser-test")
        ))
        .await
        .as_bool()
        .unwrap()
    );
    page.click(&delete).await;
    page.wait_for(
        "document.querySelector('#dialog').open",
        "the delete confirmation again",
    )
    .await;
    page.click(&with_text("#dialog-actions button", "Delete key"))
        .await;
    page.wait_for(
        &format!("!{}", with_text("#keys-table tbody tr", "browser-test")),
        "the key to leave the list",
    )
    .await;
    let toast = page
        .wait_for(
            "document.querySelector('#toast').textContent",
            "the confirmation message",
        )
        .await;
    assert!(toast.as_str().unwrap().contains("Deleted"), "{toast}");
    let (status, _) = post(
        format!("{base}/v1/chat/completions"),
        &new_key,
        chat("mock", "hi"),
    )
    .await;
    assert_eq!(status, 401, "the deleted key no longer works");

    // ---- edit a key's limits ----
    let edit = format!(
        "{}.querySelector('button.secondary')",
        with_text("#keys-table tbody tr", "notebook")
    );
    page.click(&edit).await;
    page.wait_for(
        "document.querySelector('#dialog').open && document.querySelector('#f-rpm_limit')",
        "the edit form",
    )
    .await;
    let current = page
        .eval("document.querySelector('#f-rpm_limit').value")
        .await;
    assert_eq!(
        current,
        json!("60"),
        "the form starts from the key's values"
    );
    page.eval("document.querySelector('#f-rpm_limit').value = ''")
        .await;
    page.type_into("document.querySelector('#f-rpm_limit')", "120")
        .await;
    page.press("Enter").await;
    let review = page
        .wait_for("document.querySelector('#dialog-title').textContent.startsWith('Save changes') && document.querySelector('#dialog-body').innerText", "the edit review")
        .await;
    assert!(
        review.as_str().unwrap().contains("120") && !review.as_str().unwrap().contains("Alias"),
        "only the change is sent: {review}"
    );
    page.click("document.querySelector('#dialog-actions button[type=submit]')")
        .await;
    page.wait_for(
        &with_text("#keys-table tbody tr", "120 rpm"),
        "the new limit in the list",
    )
    .await;

    // ---- teams, users, organizations: listed, or a clear word when this proxy lacks a route ----
    page.click(&with_text("#nav a", "Teams")).await;
    page.wait_for(
        &with_text("#teams-table tbody tr", "ml-platform"),
        "the team list",
    )
    .await;
    for (view, route) in [
        ("Users", "/user/list"),
        ("Organizations", "/organization/list"),
    ] {
        page.click(&with_text("#nav a", view)).await;
        let shown = page
            .wait_for(
                &format!("document.querySelector('h1').textContent === {view:?} && !document.querySelector('main').innerText.includes('Loading') && document.querySelector('main').innerText"),
                view,
            )
            .await;
        let shown = shown.as_str().unwrap();
        assert!(
            shown.contains(&format!("does not offer {route} yet"))
                || shown.contains(&format!("No {}", view.to_lowercase()))
                || page.eval(&count("main tbody tr")).await.as_u64().unwrap() > 0,
            "{view}: neither a list nor a clear message: {shown}"
        );
    }

    // ---- the same views at a phone width ----
    page.viewport(PHONE.0, PHONE.1, true).await;
    page.eval("document.querySelector('#toast').textContent = ''")
        .await;
    for (hash, file, ready) in [
        (
            "#/traces",
            "traces-390.png",
            format!("{} >= 4", count("#trace-rows tr")),
        ),
        (
            trace_url.as_str(),
            "trace-detail-390.png",
            format!("{} >= 2", count(".waterfall .span-row")),
        ),
        (
            "#/models",
            "models-390.png",
            format!("{} === 2", count("main tbody tr")),
        ),
        (
            "#/keys",
            "keys-390.png",
            with_text("#keys-table tbody tr", "notebook"),
        ),
    ] {
        page.eval(&format!("location.hash = {hash:?}")).await;
        page.wait_for(&ready, file).await;
        no_horizontal_scroll(&page, file).await;
        page.screenshot(&shots.join(file), 2400.0).await;
    }
    page.click("document.querySelector('#sign-out')").await;
    page.wait_for(
        "document.querySelector('#login-key')",
        "the sign-in form after signing out",
    )
    .await;
    no_horizontal_scroll(&page, "sign-in").await;
    page.screenshot(&shots.join("login-390.png"), 900.0).await;
    let after = page
        .eval("fetch('/ui/api/info').then((r) => r.status)")
        .await;
    assert_eq!(after, json!(401), "signed out means no key is sent");

    let errors = page.errors();
    assert!(
        errors.is_empty(),
        "script or policy errors in the page: {errors:#?}"
    );
    drop(page);
    drop(browser);
    p.shutdown().await;
}
