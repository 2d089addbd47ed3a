// Traceway web UI: plain JavaScript, no build step, no dependencies.
//
// Security rules this file keeps:
// - the admin key lives in one variable (`session.key`) and nowhere else: not in storage, not
//   in a URL, not in the DOM after sign-in; it is sent only as `Authorization: Bearer`;
// - everything from the server is shown with textContent / DOM nodes, never as HTML, because
//   traces carry prompts and completions written by anyone.
'use strict';

(() => {
  const POLL_MS = 2000;
  const session = { key: null, info: null };
  const traces = {
    list: [],
    cursor: 0,
    facets: { models: [], key_aliases: [], teams: [] },
    filters: { model: '', status: '', key_alias: '', team: '' },
    live: true,
    timer: null,
    capacity: 0,
    loaded: false,
  };
  const cache = { teams: null };
  let renderToken = 0;

  // ---------- DOM helpers ----------

  /** Creates an element; `props` sets attributes (`class`, `text`, `on<event>`, `aria-*`…). */
  function h(tag, props, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'text') el.textContent = String(v);
      else if (k === 'class') el.className = v;
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'value') el.value = v;
      else if (k === 'checked') el.checked = Boolean(v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    append(el, children);
    return el;
  }

  function append(el, children) {
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  const $ = (sel) => document.querySelector(sel);
  const main = () => $('#main');

  function setMain(...children) {
    const m = main();
    m.replaceChildren();
    append(m, children);
  }

  let toastTimer = null;
  function toast(message) {
    const t = $('#toast');
    t.textContent = message;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { t.textContent = ''; }, 6000);
  }

  // ---------- formatting ----------

  const dash = '—';
  const show = (v) => (v === null || v === undefined || v === '' ? dash : String(v));

  function fmtMs(ms) {
    if (ms === null || ms === undefined || Number.isNaN(ms)) return dash;
    if (ms < 1) return `${ms.toFixed(2)} ms`;
    if (ms < 1000) return `${Math.round(ms)} ms`;
    return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
  }

  function fmtTime(ms, withDate) {
    if (!ms) return dash;
    const d = new Date(ms);
    const time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
    if (!withDate) return time;
    return `${d.toLocaleDateString()} ${time}`;
  }

  function fmtDate(iso) {
    if (!iso) return dash;
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString();
  }

  function fmtNumber(n) {
    return n === null || n === undefined ? dash : Number(n).toLocaleString();
  }

  function fmtMoney(n) {
    if (n === null || n === undefined) return dash;
    const v = Number(n);
    return `$${v === 0 || v >= 1 ? v.toFixed(2) : v.toFixed(4)}`;
  }

  // ---------- API ----------

  class ApiError extends Error {
    constructor(status, message, path) {
      super(message);
      this.status = status;
      this.path = path;
    }
  }

  async function api(method, path, body) {
    const headers = { Accept: 'application/json' };
    if (session.key) headers.Authorization = `Bearer ${session.key}`;
    const init = { method, headers, cache: 'no-store', credentials: 'omit', redirect: 'error' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (e) {
      throw new ApiError(0, `the proxy did not answer (${e.message}); is it still running?`, path);
    }
    const text = await res.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
    if (!res.ok) {
      const message = (data && data.error && data.error.message) || text || res.statusText || 'no details';
      throw new ApiError(res.status, message, path);
    }
    return data;
  }

  /** A sentence for the person at the screen: what failed, and why. */
  function explain(err, what) {
    if (!(err instanceof ApiError)) return `${what} failed: ${err && err.message ? err.message : err}`;
    switch (err.status) {
      case 0: return `${what} failed: ${err.message}.`;
      case 401: return `${what} failed: the proxy did not accept the key (${err.message}).`;
      case 403: return `${what} is not allowed: ${err.message}`;
      case 404:
      case 405:
        if (/no route/i.test(err.message) || err.status === 405) {
          return `${what} is not available: this proxy does not offer ${err.path.split('?')[0]} yet.`;
        }
        return `${what} failed: ${err.message}`;
      default: return `${what} failed (HTTP ${err.status}): ${err.message}`;
    }
  }

  function errorBox(message) {
    return h('p', { class: 'error', role: 'alert', text: message });
  }

  // ---------- session ----------

  function accessLabel(access) {
    return {
      open: 'No master key: this page is open',
      master_key: 'Signed in with the master key',
      admin_key: 'Signed in with an admin key',
      admin_viewer_key: 'Signed in with a viewer key (read only)',
    }[access] || '';
  }

  function enterApp(info) {
    session.info = info;
    $('#nav').hidden = false;
    $('#session').hidden = false;
    $('#access-label').textContent = accessLabel(info.access);
    $('#sign-out').hidden = info.access === 'open';
    const banner = $('#banner');
    if (info.access === 'open') {
      banner.hidden = false;
      banner.textContent = 'No master key is set: this page, the trace data and every model route are open to anyone who can reach the proxy. Set general_settings.master_key to require a key.';
    } else {
      banner.hidden = true;
    }
    if (!location.hash || location.hash === '#' || location.hash === '#/login') {
      // The hash change renders the view.
      location.replace('#/traces');
      return;
    }
    route();
  }

  /** Back to the sign-in form; `note` is shown as information, `error` as a problem. */
  function signOut(error, note) {
    session.key = null;
    session.info = null;
    stopPolling();
    traces.list = [];
    traces.cursor = 0;
    traces.loaded = false;
    cache.teams = null;
    $('#nav').hidden = true;
    $('#session').hidden = true;
    $('#banner').hidden = true;
    renderLogin(error, note);
  }

  function renderLogin(message, note) {
    const error = h('p', { class: 'error', role: 'alert', id: 'login-error', hidden: !message, text: message || '' });
    const info = note ? h('p', { class: 'notice', role: 'status', text: note }) : null;
    const input = h('input', {
      id: 'login-key', name: 'key', type: 'password', autocomplete: 'off', spellcheck: 'false',
      required: true, 'aria-describedby': 'login-hint login-error',
    });
    const button = h('button', { type: 'submit', text: 'Sign in' });
    const form = h('form', { class: 'panel login', 'aria-labelledby': 'login-title', novalidate: true },
      h('h1', { id: 'login-title', text: 'Sign in to Traceway' }),
      h('div', { class: 'field' },
        h('label', { for: 'login-key', text: 'Master key or admin key' }),
        input,
        h('span', { class: 'hint', id: 'login-hint', text: 'The key stays in this tab\'s memory only; reloading the page signs you out.' })),
      info,
      error,
      h('div', { class: 'actions' }, button));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const key = input.value.trim();
      input.value = '';
      if (info) info.hidden = true;
      if (!key) {
        error.hidden = false;
        error.textContent = 'Enter the master key (general_settings.master_key) or the key of an admin user.';
        input.focus();
        return;
      }
      button.disabled = true;
      session.key = key;
      try {
        const info = await api('GET', '/ui/api/info');
        enterApp(info);
      } catch (e) {
        session.key = null;
        error.hidden = false;
        error.textContent = e instanceof ApiError && (e.status === 401 || e.status === 403)
          ? `That key was not accepted: ${e.message}`
          : explain(e, 'Signing in');
        button.disabled = false;
        input.focus();
      }
    });
    setMain(form);
    document.title = 'Sign in · Traceway';
    input.focus();
  }

  // ---------- routing ----------

  const VIEWS = {
    traces: { title: 'Traces', render: renderTraces },
    models: { title: 'Models', render: renderModels },
    keys: { title: 'Keys', render: () => renderEntity('keys') },
    teams: { title: 'Teams', render: () => renderEntity('teams') },
    users: { title: 'Users', render: () => renderEntity('users') },
    organizations: { title: 'Organizations', render: () => renderEntity('organizations') },
  };

  function route() {
    if (!session.info) return;
    const parts = location.hash.replace(/^#\/?/, '').split('/');
    const name = VIEWS[parts[0]] ? parts[0] : 'traces';
    for (const a of document.querySelectorAll('#nav a')) {
      if (a.dataset.view === name) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    renderToken += 1;
    if (name !== 'traces' || parts[1]) stopPolling();
    if (name === 'traces' && parts[1]) {
      document.title = 'Trace · Traceway';
      renderTrace(decodeURIComponent(parts[1]));
    } else {
      document.title = `${VIEWS[name].title} · Traceway`;
      VIEWS[name].render();
    }
  }

  /** Moves focus to the new view's heading, so keyboard and screen-reader users land on it. */
  function focusHeading() {
    const h1 = main().querySelector('h1');
    if (h1) {
      h1.setAttribute('tabindex', '-1');
      h1.focus({ preventScroll: true });
    }
  }

  // ---------- traces list ----------

  function traceQuery(since) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(traces.filters)) if (v) q.set(k, v);
    if (since) q.set('since', String(since));
    const s = q.toString();
    return `/ui/api/traces${s ? `?${s}` : ''}`;
  }

  function stopPolling() {
    clearTimeout(traces.timer);
    traces.timer = null;
  }

  function schedulePoll() {
    stopPolling();
    if (!traces.live) return;
    traces.timer = setTimeout(poll, POLL_MS);
  }

  async function poll() {
    const token = renderToken;
    if (document.hidden) { schedulePoll(); return; }
    try {
      const data = await api('GET', traceQuery(traces.cursor));
      if (token !== renderToken) return;
      const fresh = merge(data, true);
      updateTraceTable(fresh);
      setPollStatus(fresh.size ? `${fresh.size} new ${fresh.size === 1 ? 'request' : 'requests'}` : '');
    } catch (e) {
      if (token !== renderToken) return;
      if (e instanceof ApiError && e.status === 401) { signOut('The proxy no longer accepts the key. Sign in again.'); return; }
      setPollStatus(explain(e, 'Live update'));
    }
    if (token === renderToken) schedulePoll();
  }

  /** Merges a list answer; returns the ids that are new or changed. */
  function merge(data, incremental) {
    const fresh = new Set();
    if (!incremental) traces.list = [];
    const byId = new Map(traces.list.map((t) => [t.trace_id, t]));
    for (const t of data.traces) {
      if (!byId.has(t.trace_id) || byId.get(t.trace_id).seq !== t.seq) fresh.add(t.trace_id);
      byId.set(t.trace_id, t);
    }
    traces.list = [...byId.values()].sort((a, b) => b.start_ms - a.start_ms);
    traces.capacity = data.capacity;
    if (traces.list.length > Math.max(data.capacity, 1)) traces.list.length = Math.max(data.capacity, 1);
    traces.cursor = Math.max(traces.cursor, data.cursor);
    traces.facets = data.facets;
    traces.loaded = true;
    return incremental ? fresh : new Set();
  }

  function setPollStatus(text) {
    const s = $('#poll-status');
    if (s) s.textContent = text;
  }

  function statusBadge(status, http) {
    const ok = status === 'ok';
    return h('span', { class: `badge ${ok ? 'ok' : 'error'}`, text: `${ok ? 'OK' : 'Error'}${http ? ` ${http}` : ''}` });
  }

  function tokensCell(t) {
    if (t.input_tokens === null && t.output_tokens === null && t.total_tokens === null) return dash;
    const label = `${fmtNumber(t.input_tokens)} input, ${fmtNumber(t.output_tokens)} output tokens`;
    return h('span', { 'aria-label': label, title: label }, `${fmtNumber(t.input_tokens)} → ${fmtNumber(t.output_tokens)}`);
  }

  function traceRow(t, fresh) {
    const open = () => { location.hash = `#/traces/${t.trace_id}`; };
    const cells = [
      ['Time', h('a', { href: `#/traces/${t.trace_id}`, title: new Date(t.start_ms).toISOString() }, fmtTime(t.start_ms))],
      ['Model', show(t.model_group || t.model)],
      ['Provider', show(t.provider)],
      ['Status', statusBadge(t.status, t.http_status)],
      ['Latency', fmtMs(t.duration_ms), 'num'],
      ['Tokens', tokensCell(t), 'num'],
      ['Key', show(t.key_alias)],
      ['Team', show(t.team)],
    ];
    const tr = h('tr', { class: `clickable${fresh ? ' fresh' : ''}`, 'data-trace-id': t.trace_id },
      cells.map(([label, value, cls]) => h('td', { 'data-label': label, class: cls || null }, value)));
    // The link in the first cell is the keyboard path; a click anywhere else on the row opens too.
    tr.addEventListener('click', (ev) => { if (!ev.target.closest('a')) open(); });
    return tr;
  }

  function updateTraceTable(fresh) {
    const body = $('#trace-rows');
    if (!body) return;
    body.replaceChildren(...traces.list.map((t) => traceRow(t, fresh && fresh.has(t.trace_id))));
    const empty = $('#trace-empty');
    if (empty) empty.hidden = traces.list.length > 0;
    const table = $('#trace-table');
    if (table) table.hidden = traces.list.length === 0;
    const count = $('#trace-count');
    if (count) {
      const filtered = Object.values(traces.filters).some(Boolean);
      count.textContent = `${traces.list.length} ${traces.list.length === 1 ? 'request' : 'requests'}${filtered ? ' matching the filters' : ''}; the page keeps the last ${traces.capacity}.`;
    }
    refreshFacetOptions();
  }

  function facetOptions(select, values, current, allLabel) {
    const keep = new Set(values);
    if (current) keep.add(current);
    const opts = [h('option', { value: '', text: allLabel })];
    for (const v of [...keep].sort()) opts.push(h('option', { value: v, text: v }));
    select.replaceChildren(...opts);
    select.value = current;
  }

  function refreshFacetOptions() {
    const map = { 'filter-model': ['models', 'model', 'All models'], 'filter-key': ['key_aliases', 'key_alias', 'All keys'], 'filter-team': ['teams', 'team', 'All teams'] };
    for (const [id, [facet, filter, all]] of Object.entries(map)) {
      const sel = document.getElementById(id);
      if (sel && document.activeElement !== sel) facetOptions(sel, traces.facets[facet] || [], traces.filters[filter], all);
    }
  }

  function exampleCall() {
    const info = session.info;
    const auth = info.access === 'open' ? '' : " \\\n  -H 'Authorization: Bearer $TRACEWAY_KEY'";
    const model = traces.facets.models[0] || 'mock';
    return `curl ${location.origin}/v1/chat/completions \\\n  -H 'content-type: application/json'${auth} \\\n  -d '{"model": "${model}", "messages": [{"role": "user", "content": "Hello!"}]}'`;
  }

  async function renderTraces() {
    const token = renderToken;
    const info = session.info;
    const select = (id, label, filter) => {
      const sel = h('select', { id, name: filter });
      sel.addEventListener('change', () => { traces.filters[filter] = sel.value; reloadTraces(); });
      return h('div', { class: 'field' }, h('label', { for: id, text: label }), sel);
    };
    const status = h('select', { id: 'filter-status', name: 'status' },
      h('option', { value: '', text: 'Any status' }),
      h('option', { value: 'ok', text: 'Succeeded' }),
      h('option', { value: 'error', text: 'Failed' }));
    status.value = traces.filters.status;
    status.addEventListener('change', () => { traces.filters.status = status.value; reloadTraces(); });
    const live = h('input', { type: 'checkbox', id: 'live', checked: traces.live });
    live.addEventListener('change', () => {
      traces.live = live.checked;
      $('#live-dot').className = `dot${traces.live ? ' on' : ''}`;
      if (traces.live) poll(); else { stopPolling(); setPollStatus('Live update paused.'); }
    });
    const notices = [];
    if (!info.traces.enabled) {
      notices.push(h('p', { class: 'notice', text: `No traces are kept: ${info.traces.disabled_reason}` }));
    } else if (info.traces.exporter === 'none') {
      notices.push(h('p', { class: 'notice' },
        `Tracing to an observability backend is off, so this page is the only place spans go (the last ${info.traces.capacity} requests, in memory). `,
        'Turn it on with ', h('code', { text: 'litellm_settings.callbacks: ["otel"]' }), '.'));
    }
    setMain(
      h('div', { class: 'title-row' },
        h('h1', { text: 'Traces' }),
        h('label', { class: 'check live', for: 'live' }, live, h('span', { id: 'live-dot', class: `dot${traces.live ? ' on' : ''}`, 'aria-hidden': 'true' }), 'Live update')),
      h('p', { class: 'muted', id: 'poll-status', role: 'status', 'aria-live': 'polite' }),
      notices,
      h('form', { class: 'toolbar', role: 'search', 'aria-label': 'Filter traces', onsubmit: (e) => e.preventDefault() },
        select('filter-model', 'Model', 'model'),
        h('div', { class: 'field' }, h('label', { for: 'filter-status', text: 'Status' }), status),
        select('filter-key', 'Key alias', 'key_alias'),
        select('filter-team', 'Team', 'team'),
        h('div', { class: 'grow' }),
        h('button', { type: 'button', class: 'secondary', text: 'Clear filters', onclick: () => {
          traces.filters = { model: '', status: '', key_alias: '', team: '' };
          status.value = '';
          reloadTraces();
        } })),
      h('p', { id: 'trace-count', class: 'muted' }),
      h('div', { id: 'trace-empty', class: 'panel', hidden: true },
        h('p', { text: 'No requests yet. Calls through the proxy show up here as they finish, for example:' }),
        h('pre', { class: 'mono', id: 'example-call', text: '' })),
      h('div', { class: 'table-wrap', id: 'trace-table', hidden: true },
        h('table', { class: 'cards' },
          h('caption', { class: 'visually-hidden', text: 'Recent requests, newest first. Select a time to open the trace.' }),
          h('thead', {}, h('tr', {}, ['Time', 'Model', 'Provider', 'Status', 'Latency', 'Tokens', 'Key', 'Team'].map((c, i) => h('th', { scope: 'col', class: i === 4 || i === 5 ? 'num' : null, text: c })))),
          h('tbody', { id: 'trace-rows' }))));
    focusHeading();
    if (traces.loaded) updateTraceTable(null);
    await reloadTraces(token);
  }

  async function reloadTraces(tokenArg) {
    const token = tokenArg || renderToken;
    stopPolling();
    try {
      const data = await api('GET', traceQuery(0));
      if (token !== renderToken) return;
      traces.cursor = 0;
      merge(data, false);
      updateTraceTable(null);
      const ex = $('#example-call');
      if (ex) ex.textContent = exampleCall();
      setPollStatus(traces.live ? '' : 'Live update paused.');
    } catch (e) {
      if (token !== renderToken) return;
      if (e instanceof ApiError && e.status === 401) { signOut('The proxy no longer accepts the key. Sign in again.'); return; }
      setPollStatus(explain(e, 'Loading traces'));
    }
    if (token === renderToken) schedulePoll();
  }

  // ---------- one trace ----------

  function attr(span, key) {
    const a = span.attributes.find((x) => x.key === key);
    return a ? a.value : undefined;
  }

  function indexed(span, prefix) {
    // gen_ai.prompt.{i}.role / .content / .finish_reason / .tool_calls.{j}.name …
    const out = [];
    const re = new RegExp(`^${prefix.replace(/\./g, '\\.')}\\.(\\d+)\\.(.+)$`);
    for (const a of span.attributes) {
      const m = re.exec(a.key);
      if (!m) continue;
      const i = Number(m[1]);
      out[i] = out[i] || { tool_calls: [] };
      const field = m[2];
      const tc = /^tool_calls\.(\d+)\.(.+)$/.exec(field);
      if (tc) {
        const j = Number(tc[1]);
        out[i].tool_calls[j] = out[i].tool_calls[j] || {};
        out[i].tool_calls[j][tc[2]] = a.value;
      } else {
        out[i][field] = a.value;
      }
    }
    return out.filter(Boolean);
  }

  function parseJson(value) {
    if (typeof value !== 'string') return value;
    try { return JSON.parse(value); } catch (_) { return undefined; }
  }

  function fromSemconv(value) {
    // gen_ai.input.messages / gen_ai.output.messages: [{role, parts: [{type, content}]}]
    const list = parseJson(value);
    if (!Array.isArray(list)) return [];
    return list.map((m) => {
      const parts = Array.isArray(m.parts) ? m.parts : [];
      const text = parts.map((p) => (p.type === 'text' ? p.content : p.type === 'tool_call' ? `${p.name}(${JSON.stringify(p.arguments)})` : JSON.stringify(p))).join('\n');
      return { role: m.role, content: text, finish_reason: m.finish_reason, tool_calls: [] };
    });
  }

  function messagesOf(spans) {
    // The request span: whichever carries the content (the root by default, litellm_request
    // in nested mode).
    for (const s of spans) {
      const input = indexed(s, 'gen_ai.prompt');
      const output = indexed(s, 'gen_ai.completion');
      if (input.length || output.length) return { input, output };
    }
    for (const s of spans) {
      const input = attr(s, 'gen_ai.input.messages');
      const output = attr(s, 'gen_ai.output.messages');
      if (input !== undefined || output !== undefined) {
        const sys = attr(s, 'gen_ai.system_instructions');
        const inMsgs = fromSemconv(input);
        const sysParts = parseJson(sys);
        if (Array.isArray(sysParts)) inMsgs.unshift(fromSemconv([{ role: 'system', parts: sysParts }])[0]);
        return { input: inMsgs, output: fromSemconv(output) };
      }
    }
    return { input: [], output: [] };
  }

  function messageView(m) {
    const role = String(m.role || 'unknown');
    const content = m.content === undefined || m.content === null ? '' : (typeof m.content === 'string' ? m.content : JSON.stringify(m.content, null, 2));
    return h('div', { class: `message ${role.replace(/[^a-z_]/gi, '')}` },
      h('div', { class: 'role', text: role + (m.finish_reason ? ` · finish: ${m.finish_reason}` : '') }),
      content ? h('pre', { text: content }) : null,
      (m.tool_calls || []).filter(Boolean).map((tc) => h('pre', { class: 'mono', text: `tool call ${tc.name || ''}(${tc.arguments || ''})` })));
  }

  function valueText(v) {
    if (typeof v === 'string') return v;
    return JSON.stringify(v);
  }

  function attributesTable(attrs, caption) {
    if (!attrs.length) return h('p', { class: 'muted', text: 'No attributes.' });
    const sorted = [...attrs].sort((a, b) => a.key.localeCompare(b.key));
    return h('div', { class: 'table-wrap' }, h('table', { class: 'attrs' },
      h('caption', { class: 'visually-hidden', text: caption }),
      h('tbody', {}, sorted.map((a) => h('tr', {}, h('th', { scope: 'row', text: a.key }), h('td', { text: valueText(a.value) }))))));
  }

  function spanTree(spans) {
    const ids = new Set(spans.map((s) => s.span_id));
    const children = new Map();
    const roots = [];
    for (const s of spans) {
      if (s.parent_span_id && ids.has(s.parent_span_id)) {
        if (!children.has(s.parent_span_id)) children.set(s.parent_span_id, []);
        children.get(s.parent_span_id).push(s);
      } else {
        roots.push(s);
      }
    }
    const out = [];
    const walk = (s, depth) => {
      out.push({ span: s, depth });
      for (const c of (children.get(s.span_id) || []).sort((a, b) => a.start_ms - b.start_ms)) walk(c, depth + 1);
    };
    for (const r of roots.sort((a, b) => a.start_ms - b.start_ms)) walk(r, 0);
    return out;
  }

  async function renderTrace(id) {
    const token = renderToken;
    setMain(h('p', { class: 'muted', text: 'Loading the trace…' }));
    let detail;
    try {
      detail = await api('GET', `/ui/api/traces/${encodeURIComponent(id)}`);
    } catch (e) {
      if (token !== renderToken) return;
      setMain(h('p', {}, h('a', { href: '#/traces', text: '← All traces' })),
        h('h1', { text: 'Trace not found' }),
        errorBox(e instanceof ApiError && e.status === 404 ? e.message : explain(e, 'Loading the trace')));
      focusHeading();
      return;
    }
    if (token !== renderToken) return;
    const s = detail.summary || {};
    const spans = detail.spans;
    const start = Math.min(...spans.map((x) => x.start_ms));
    const end = Math.max(...spans.map((x) => x.end_ms));
    const total = Math.max(end - start, 0.001);
    const rows = spanTree(spans);
    let selected = rows.length ? rows[0].span : null;
    const spanPanel = h('section', { class: 'panel', 'aria-labelledby': 'span-title' });

    const renderSpan = () => {
      const sp = selected;
      spanPanel.replaceChildren();
      if (!sp) { spanPanel.append(h('p', { text: 'No spans.' })); return; }
      append(spanPanel, [
        h('h2', { id: 'span-title', text: sp.name }),
        h('dl', { class: 'facts' },
          fact('Kind', sp.kind), fact('Status', sp.status + (sp.status_message ? `: ${sp.status_message}` : '')),
          fact('Duration', fmtMs(sp.end_ms - sp.start_ms)), fact('Starts at', `+${fmtMs(sp.start_ms - start)}`),
          fact('Span id', sp.span_id), fact('Parent', sp.parent_span_id || (sp.remote_parent_id ? `${sp.remote_parent_id} (remote)` : 'none'))),
        h('h3', { text: 'Attributes' }),
        attributesTable(sp.attributes, `Attributes of ${sp.name}`),
        sp.dropped_attributes ? h('p', { class: 'muted', text: `${sp.dropped_attributes} attributes were dropped over the span limit.` }) : null,
        sp.events.length ? h('h3', { text: 'Events' }) : null,
        sp.events.map((e) => h('div', { class: 'event' },
          h('p', {}, h('strong', { text: e.name }), ' ', h('span', { class: 'muted', text: `+${fmtMs(e.time_ms - start)}` })),
          attributesTable(e.attributes, `Attributes of event ${e.name}`)))]);
    };

    const buttons = [];
    const waterfall = h('ol', { class: 'waterfall', 'aria-label': 'Spans, in tree order' },
      rows.map(({ span, depth }) => {
        const left = ((span.start_ms - start) / total) * 100;
        const width = Math.max(((span.end_ms - span.start_ms) / total) * 100, 0.4);
        const dur = fmtMs(span.end_ms - span.start_ms);
        const failed = span.status === 'error';
        const btn = h('button', {
          type: 'button', class: 'span-row', 'aria-pressed': String(span === selected),
          'aria-label': `${span.name}, ${span.kind}, ${dur}${failed ? ', failed' : ''}, level ${depth + 1}`,
        },
        h('span', { class: 'span-name' },
          h('span', { 'aria-hidden': 'true', text: depth ? `${'\u00a0\u00a0'.repeat(depth)}└ ` : '' }),
          span.name, h('small', { text: span.kind })),
        h('span', { class: 'track', 'aria-hidden': 'true' },
          h('span', { class: `bar ${failed ? 'error' : span.kind}`, 'data-left': left, 'data-width': width })),
        h('span', { class: 'span-dur', 'aria-hidden': 'true', text: dur }));
        btn.addEventListener('click', () => {
          selected = span;
          for (const b of buttons) b.setAttribute('aria-pressed', String(b === btn));
          renderSpan();
        });
        buttons.push(btn);
        return h('li', {}, btn);
      }));
    // Positions are set through the CSSOM: the page's policy forbids inline style attributes.
    for (const el of waterfall.querySelectorAll('[data-left]')) {
      el.style.left = `${el.dataset.left}%`;
      if (el.dataset.width) el.style.width = `${el.dataset.width}%`;
    }

    const msgs = messagesOf([...spans].sort((a, b) => (a.parent_span_id ? 1 : 0) - (b.parent_span_id ? 1 : 0)));
    const errors = spans.flatMap((sp) => sp.events.filter((e) => e.name === 'exception').map((e) => ({ span: sp, e })));

    setMain(
      h('p', {}, h('a', { href: '#/traces', text: '← All traces' })),
      h('div', { class: 'title-row' },
        h('h1', { text: `${s.model_group || s.model || s.name || 'Trace'}` }),
        s.status ? statusBadge(s.status, s.http_status) : h('span', { class: 'badge idle', text: 'In progress' })),
      h('section', { class: 'panel', 'aria-label': 'Summary' },
        h('dl', { class: 'facts' },
          fact('Time', fmtTime(s.start_ms || start, true)), fact('Latency', fmtMs(s.duration_ms)),
          fact('Operation', s.operation), fact('Provider', s.provider), fact('Model', s.model),
          fact('Deployment', s.deployment_id ? shortId(s.deployment_id) : null), fact('Input tokens', fmtNumber(s.input_tokens)),
          fact('Output tokens', fmtNumber(s.output_tokens)), fact('Total tokens', fmtNumber(s.total_tokens)),
          fact('Key alias', s.key_alias), fact('Team', s.team), fact('User', s.user_id),
          fact('Streaming', s.streaming ? 'yes' : 'no'), fact('Attempts', s.attempts),
          fact('Trace id', h('span', { class: 'mono', text: id })))),
      s.status === 'error' || errors.length ? h('section', { class: 'panel', 'aria-labelledby': 'errors-title' },
        h('h2', { id: 'errors-title', text: 'Errors' }),
        s.error_message ? errorBox(s.error_message) : null,
        errors.map(({ span, e }) => h('p', {},
          h('strong', { text: `${span.name}: ` }),
          valueText((e.attributes.find((a) => a.key === 'exception.message') || e.attributes.find((a) => a.key === 'exception.type') || { value: 'exception' }).value)))) : null,
      h('div', { class: 'detail-grid' },
        h('div', {},
          h('section', { class: 'panel', 'aria-labelledby': 'tree-title' },
            h('h2', { id: 'tree-title', text: 'Span tree' }),
            h('p', { class: 'muted', text: `${spans.length} spans over ${fmtMs(end - start)}. Select a span to see its attributes.` }),
            waterfall,
            detail.dropped_spans ? h('p', { class: 'muted', text: `${detail.dropped_spans} more spans were not kept.` }) : null),
          h('section', { class: 'panel', 'aria-labelledby': 'messages-title' },
            h('h2', { id: 'messages-title', text: 'Messages' }),
            msgs.input.length || msgs.output.length
              ? [h('h3', { text: 'Input' }), h('div', { class: 'messages' }, msgs.input.map(messageView)),
                h('h3', { text: 'Output' }), msgs.output.length ? h('div', { class: 'messages' }, msgs.output.map(messageView)) : h('p', { class: 'muted', text: 'No output recorded.' })]
              : h('p', { class: 'muted', text: 'No message content was recorded for this request (content capture is off, or the request failed before it).' }))),
        spanPanel));
    renderSpan();
    focusHeading();
  }

  /** A long id cut to its start, the whole id in the tooltip and for screen readers. */
  function shortId(id) {
    if (id.length <= 14) return h('span', { class: 'mono', text: id });
    return h('span', { class: 'mono', title: id, 'aria-label': id, text: `${id.slice(0, 12)}…` });
  }

  function fact(label, value) {
    return h('div', {}, h('dt', { text: label }), h('dd', {}, value instanceof Node ? value : show(value)));
  }

  // ---------- models ----------

  async function renderModels() {
    const token = renderToken;
    setMain(h('h1', { text: 'Models' }), h('p', { class: 'muted', text: 'Loading…' }));
    focusHeading();
    let data;
    try {
      data = await api('GET', '/ui/api/models');
    } catch (e) {
      if (token !== renderToken) return;
      setMain(h('h1', { text: 'Models' }), errorBox(explain(e, 'Loading the models')));
      return;
    }
    if (token !== renderToken) return;
    const health = (m) => {
      const hl = m.health;
      if (!hl || !hl.calls) return h('span', { class: 'badge idle', text: 'No recent calls' });
      if (hl.last_failed) return h('span', { class: 'badge error', title: hl.last_error || '', text: 'Last call failed' });
      return h('span', { class: 'badge ok', text: 'Healthy' });
    };
    const cols = [
      ['Model group', (m) => h('strong', { text: m.model_group })],
      ['Provider', (m) => m.provider],
      ['Model', (m) => h('span', { class: 'mono', text: m.model })],
      ['API base', (m) => (m.api_base ? h('span', { class: 'mono', text: m.api_base }) : dash)],
      ['Health', health],
      ['Calls', (m) => (m.health ? `${fmtNumber(m.health.calls)}${m.health.errors ? ` (${fmtNumber(m.health.errors)} failed)` : ''}` : '0'), 'num nowrap'],
      ['Latency p50 / p95', (m) => (m.health ? `${fmtMs(m.health.p50_latency_ms)} / ${fmtMs(m.health.p95_latency_ms)}` : dash), 'num nowrap'],
      ['Last call', (m) => (m.health && m.health.last_call_ms ? fmtTime(m.health.last_call_ms) : dash), 'nowrap'],
      ['In flight', (m) => fmtNumber(m.in_flight), 'num'],
      ['Deployment', (m) => shortId(m.deployment_id)],
    ];
    setMain(
      h('h1', { text: 'Models' }),
      h('p', { class: 'muted', text: `Every deployment of model_list. Health and latency come from the upstream attempts among the last ${session.info.traces.capacity} traces kept by this page; provider keys are never shown.` }),
      h('div', { class: 'table-wrap' }, h('table', { class: 'cards' },
        h('caption', { class: 'visually-hidden', text: 'Deployments' }),
        h('thead', {}, h('tr', {}, cols.map(([c, , cls]) => h('th', { scope: 'col', class: cls || null, text: c })))),
        h('tbody', {}, data.models.map((m) => h('tr', {}, cols.map(([c, f, cls]) => h('td', { 'data-label': c, class: cls || null }, f(m)))))))));
    focusHeading();
  }

  // ---------- keys, teams, users, organisations ----------

  const list = (v) => (Array.isArray(v) && v.length ? h('span', { class: 'chips' }, v.map((x) => h('span', { class: 'chip', text: x }))) : h('span', { class: 'muted', text: 'all' }));
  const limits = (r) => {
    const parts = [];
    if (r.rpm_limit !== null && r.rpm_limit !== undefined) parts.push(`${fmtNumber(r.rpm_limit)} rpm`);
    if (r.tpm_limit !== null && r.tpm_limit !== undefined) parts.push(`${fmtNumber(r.tpm_limit)} tpm`);
    if (r.max_budget !== null && r.max_budget !== undefined) parts.push(`${fmtMoney(r.max_budget)} budget`);
    return parts.length ? parts.join(', ') : dash;
  };

  function teamName(id) {
    if (!id) return dash;
    const t = (cache.teams || []).find((x) => x.team_id === id);
    return t && t.team_alias ? h('span', { title: id, text: t.team_alias }) : shortId(id);
  }

  const F = {
    text: (name, label, hint, extra) => ({ name, label, hint, type: 'text', ...extra }),
    list: (name, label, hint) => ({ name, label, hint, type: 'list' }),
    int: (name, label, hint) => ({ name, label, hint, type: 'int' }),
    num: (name, label, hint) => ({ name, label, hint, type: 'number' }),
  };
  const MODELS_HINT = 'Comma-separated model groups; leave empty for every model.';

  const ENTITIES = {
    keys: {
      title: 'Keys', one: 'key',
      intro: 'Virtual keys callers send instead of the master key. Only a hash is stored: a new key is shown once.',
      async load() {
        // Team aliases read better than ids; without /team/list the ids are shown.
        if (!cache.teams) { try { cache.teams = await api('GET', '/team/list'); } catch (_) { cache.teams = null; } }
        const out = [];
        for (let page = 1; page <= 100; page += 1) {
          const r = await api('GET', `/key/list?return_full_object=true&size=100&page=${page}`);
          out.push(...(r.keys || []));
          if (!r.total_pages || page >= r.total_pages) break;
        }
        return out;
      },
      id: (k) => k.token,
      label: (k) => k.key_alias || k.key_name || `${k.token.slice(0, 10)}…`,
      columns: [
        ['Alias', (k) => h('strong', { text: show(k.key_alias) })],
        ['Key', (k) => h('span', { class: 'mono', text: show(k.key_name) })],
        ['Models', (k) => list(k.models)],
        ['Team', (k) => teamName(k.team_id)],
        ['User', (k) => show(k.user_id)],
        ['Limits', limits, 'nowrap'],
        ['Expires', (k) => (k.expires ? fmtDate(k.expires) : 'never')],
        ['Spend', (k) => fmtMoney(k.spend), 'num'],
        ['Blocked', (k) => (k.blocked ? 'yes' : 'no')],
      ],
      create: [
        F.text('key_alias', 'Alias', 'A name to recognise the key by; must be unique.'),
        F.list('models', 'Models', MODELS_HINT),
        F.text('team_id', 'Team id', 'Optional; the team must exist.'),
        F.text('user_id', 'User id', 'Optional; a user that does not exist yet is created.'),
        F.int('rpm_limit', 'Requests per minute', 'Optional.'),
        F.int('tpm_limit', 'Tokens per minute', 'Optional.'),
        F.num('max_budget', 'Budget (USD)', 'Optional.'),
        F.text('duration', 'Expires after', 'Optional, e.g. 30d, 12h or 90m; empty never expires.'),
      ],
      edit: ['key_alias', 'models', 'team_id', 'rpm_limit', 'tpm_limit', 'max_budget'],
      add: (body) => api('POST', '/key/generate', body),
      update: (k, body) => api('POST', '/key/update', { key: k.token, ...body }),
      remove: (k) => api('POST', '/key/delete', { keys: [k.token] }),
      warnDelete: 'Calls made with this key fail from now on.',
    },
    teams: {
      title: 'Teams', one: 'team',
      intro: 'Teams group keys under shared models and limits.',
      load: async () => (cache.teams = await api('GET', '/team/list')),
      id: (t) => t.team_id,
      label: (t) => t.team_alias || t.team_id,
      columns: [
        ['Alias', (t) => h('strong', { text: show(t.team_alias) })],
        ['Team id', (t) => h('span', { class: 'mono', text: t.team_id })],
        ['Organization', (t) => show(t.organization_id)],
        ['Models', (t) => list(t.models)],
        ['Members', (t) => fmtNumber((t.members_with_roles || []).length), 'num'],
        ['Limits', limits],
        ['Spend', (t) => fmtMoney(t.spend), 'num'],
      ],
      create: [
        F.text('team_alias', 'Alias', 'A name for the team.'),
        F.text('organization_id', 'Organization id', 'Optional; the organization must exist.'),
        F.list('models', 'Models', MODELS_HINT),
        F.int('rpm_limit', 'Requests per minute', 'Optional; shared by the team\'s keys.'),
        F.int('tpm_limit', 'Tokens per minute', 'Optional; shared by the team\'s keys.'),
        F.num('max_budget', 'Budget (USD)', 'Optional.'),
      ],
      edit: ['team_alias', 'models', 'rpm_limit', 'tpm_limit', 'max_budget'],
      add: (body) => api('POST', '/team/new', body),
      update: (t, body) => api('POST', '/team/update', { team_id: t.team_id, ...body }),
      remove: (t) => api('POST', '/team/delete', { team_ids: [t.team_id] }),
      warnDelete: 'The team\'s keys are deleted with it, and calls made with them fail from now on.',
    },
    users: {
      title: 'Users', one: 'user',
      intro: 'Users own keys; a proxy_admin user\'s keys may use this page and the management API.',
      async load() {
        const r = await api('GET', '/user/list');
        return Array.isArray(r) ? r : (r.users || r.data || []);
      },
      id: (u) => u.user_id,
      label: (u) => u.user_email || u.user_alias || u.user_id,
      columns: [
        ['User id', (u) => h('strong', { class: 'mono', text: u.user_id })],
        ['Email', (u) => show(u.user_email)],
        ['Role', (u) => show(u.user_role)],
        ['Models', (u) => list(u.models)],
        ['Teams', (u) => list(u.teams)],
        ['Budget', (u) => fmtMoney(u.max_budget), 'num'],
        ['Spend', (u) => fmtMoney(u.spend), 'num'],
      ],
      create: [
        F.text('user_id', 'User id', 'Optional; one is generated when empty.'),
        F.text('user_email', 'Email', 'Optional.'),
        { name: 'user_role', label: 'Role', type: 'select', options: ['internal_user', 'internal_user_viewer', 'proxy_admin', 'proxy_admin_viewer'], hint: 'proxy_admin keys may manage keys; proxy_admin_viewer keys may only read.' },
        F.list('models', 'Models', MODELS_HINT),
        F.num('max_budget', 'Budget (USD)', 'Optional.'),
        { name: 'auto_create_key', label: 'Also create a key for this user', type: 'checkbox', hint: 'The key is shown once.' },
      ],
      edit: ['user_email', 'user_role', 'models', 'max_budget'],
      add: (body) => api('POST', '/user/new', { auto_create_key: false, ...body }),
      update: (u, body) => api('POST', '/user/update', { user_id: u.user_id, ...body }),
      remove: (u) => api('POST', '/user/delete', { user_ids: [u.user_id] }),
      warnDelete: 'The user\'s keys stop working.',
    },
    organizations: {
      title: 'Organizations', one: 'organization',
      intro: 'Organizations group teams.',
      load: () => api('GET', '/organization/list'),
      id: (o) => o.organization_id,
      label: (o) => o.organization_alias || o.organization_id,
      columns: [
        ['Alias', (o) => h('strong', { text: show(o.organization_alias) })],
        ['Organization id', (o) => h('span', { class: 'mono', text: o.organization_id })],
        ['Models', (o) => list(o.models)],
        ['Budget', (o) => fmtMoney(o.max_budget), 'num'],
        ['Spend', (o) => fmtMoney(o.spend), 'num'],
        ['Created', (o) => fmtDate(o.created_at)],
      ],
      create: [
        F.text('organization_alias', 'Alias', 'Required.', { required: true }),
        F.list('models', 'Models', MODELS_HINT),
        F.num('max_budget', 'Budget (USD)', 'Optional.'),
      ],
      edit: ['organization_alias', 'models', 'max_budget'],
      add: (body) => api('POST', '/organization/new', body),
      update: (o, body) => api('PATCH', '/organization/update', { organization_id: o.organization_id, ...body }),
      remove: (o) => api('DELETE', '/organization/delete', { organization_ids: [o.organization_id] }),
      warnDelete: 'Its teams stay, without an organization.',
    },
  };

  async function renderEntity(kind) {
    const E = ENTITIES[kind];
    const token = renderToken;
    const readOnly = session.info.access === 'admin_viewer_key';
    const createBtn = readOnly ? null : h('button', { type: 'button', text: `Create ${E.one}`, onclick: () => openForm(kind, null) });
    const head = h('div', { class: 'title-row' }, h('h1', { text: E.title }), createBtn);
    setMain(head, h('p', { class: 'muted', text: E.intro }), h('p', { class: 'muted', text: 'Loading…' }));
    focusHeading();
    let rows;
    try {
      rows = await E.load();
    } catch (e) {
      if (token !== renderToken) return;
      setMain(head, h('p', { class: 'muted', text: E.intro }), errorBox(explain(e, `Listing ${E.title.toLowerCase()}`)));
      focusHeading();
      return;
    }
    if (token !== renderToken) return;
    const cols = [...E.columns];
    if (!readOnly) {
      cols.push(['Actions', (r) => h('span', { class: 'row-actions' },
        h('button', { type: 'button', class: 'secondary', text: 'Edit', 'aria-label': `Edit ${E.one} ${E.label(r)}`, onclick: () => openForm(kind, r) }),
        h('button', { type: 'button', class: 'danger', text: 'Delete', 'aria-label': `Delete ${E.one} ${E.label(r)}`, onclick: () => confirmDelete(kind, r) }))]);
    }
    setMain(head, h('p', { class: 'muted', text: E.intro }),
      rows.length === 0
        ? h('p', { class: 'panel', text: `No ${E.title.toLowerCase()} yet.` })
        : h('div', { class: 'table-wrap' }, h('table', { class: 'cards', id: `${kind}-table` },
          h('caption', { class: 'visually-hidden', text: E.title }),
          h('thead', {}, h('tr', {}, cols.map(([c, , cls]) => h('th', { scope: 'col', class: cls || null, text: c })))),
          h('tbody', {}, rows.map((r) => h('tr', { 'data-id': E.id(r) }, cols.map(([c, f, cls]) => h('td', { 'data-label': c, class: cls || null }, f(r)))))))));
    focusHeading();
  }

  // ---------- dialogs ----------

  let dialogReturn = null;
  let dialogPrimary = null;
  let dialogBusy = false;

  async function runDialogAction(handler) {
    if (dialogBusy) return;
    if (!handler) { closeDialog(); return; }
    dialogBusy = true;
    const buttons = [...$('#dialog-actions').querySelectorAll('button')];
    for (const x of buttons) x.disabled = true;
    try {
      await handler();
    } finally {
      dialogBusy = false;
      for (const x of buttons) x.disabled = false;
    }
  }

  /** Opens the shared modal: `body` nodes, and `buttons` as [label, class, handler]. */
  function openDialog(title, body, buttons) {
    const dlg = $('#dialog');
    $('#dialog-title').textContent = title;
    $('#dialog-body').replaceChildren(...[body].flat().filter(Boolean));
    const err = $('#dialog-error');
    err.hidden = true;
    err.textContent = '';
    // The last button is the primary action and the form's submit button, so Enter in a
    // field runs it; the form's submit handler (in start) calls it.
    dialogPrimary = buttons.length ? buttons[buttons.length - 1][2] : null;
    $('#dialog-actions').replaceChildren(...buttons.map(([label, cls, handler], i) => {
      const primary = i === buttons.length - 1;
      const b = h('button', { type: primary ? 'submit' : 'button', class: cls || null, text: label });
      if (!primary) b.addEventListener('click', () => runDialogAction(handler));
      return b;
    }));
    if (!dlg.open) {
      dialogReturn = document.activeElement;
      dlg.showModal();
    }
    const first = dlg.querySelector('#dialog-body input, #dialog-body select, #dialog-body textarea') || dlg.querySelector('#dialog-actions button');
    if (first) first.focus();
  }

  function closeDialog() {
    const dlg = $('#dialog');
    if (dlg.open) dlg.close();
  }

  function dialogError(message) {
    const err = $('#dialog-error');
    err.hidden = false;
    err.textContent = message;
  }

  function fieldInput(f, value) {
    const id = `f-${f.name}`;
    const hintId = `${id}-hint`;
    let input;
    if (f.type === 'select') {
      input = h('select', { id, name: f.name }, h('option', { value: '', text: '(unchanged / default)' }), f.options.map((o) => h('option', { value: o, text: o })));
      input.value = value || '';
    } else if (f.type === 'checkbox') {
      input = h('input', { id, name: f.name, type: 'checkbox', checked: Boolean(value), 'aria-describedby': f.hint ? hintId : null });
      return h('div', { class: 'field' }, h('label', { class: 'check', for: id }, input, f.label), f.hint ? h('span', { class: 'hint', id: hintId, text: f.hint }) : null);
    } else {
      const shown = Array.isArray(value) ? value.join(', ') : (value === null || value === undefined ? '' : String(value));
      input = h('input', {
        id, name: f.name, type: 'text', value: shown, autocomplete: 'off',
        inputmode: f.type === 'int' ? 'numeric' : f.type === 'number' ? 'decimal' : null,
        required: f.required || null,
      });
    }
    if (f.hint) input.setAttribute('aria-describedby', hintId);
    return h('div', { class: 'field' }, h('label', { for: id }, f.label, f.required ? ' (required)' : ''), input, f.hint ? h('span', { class: 'hint', id: hintId, text: f.hint }) : null);
  }

  /** Reads the form into a request body; throws a sentence naming the field at fault. */
  function readForm(fields, original) {
    const body = {};
    const cleared = [];
    for (const f of fields) {
      const el = document.getElementById(`f-${f.name}`);
      if (!el) continue;
      if (f.type === 'checkbox') { if (el.checked) body[f.name] = true; continue; }
      const raw = el.value.trim();
      const before = original ? original[f.name] : undefined;
      const hadValue = before !== null && before !== undefined && !(Array.isArray(before) && before.length === 0) && before !== '';
      if (raw === '') {
        if (f.required) throw new Error(`${f.label} is required.`);
        if (original && hadValue && f.type !== 'list') cleared.push(f.label);
        if (original && f.type === 'list' && hadValue) body[f.name] = [];
        continue;
      }
      let v = raw;
      if (f.type === 'list') v = raw.split(',').map((x) => x.trim()).filter(Boolean);
      if (f.type === 'int') {
        if (!/^\d+$/.test(raw)) throw new Error(`${f.label} must be a whole number, 0 or more.`);
        v = Number(raw);
      }
      if (f.type === 'number') {
        v = Number(raw);
        if (!Number.isFinite(v) || v < 0) throw new Error(`${f.label} must be a number, 0 or more.`);
      }
      if (original && JSON.stringify(v) === JSON.stringify(before)) continue;
      body[f.name] = v;
    }
    return { body, cleared };
  }

  function summary(fields, body) {
    const rows = Object.entries(body).map(([k, v]) => {
      const f = fields.find((x) => x.name === k);
      return [h('dt', { text: f ? f.label : k }), h('dd', { text: Array.isArray(v) ? (v.length ? v.join(', ') : 'every model') : String(v) })];
    });
    return rows.length ? h('dl', {}, rows) : h('p', { text: 'Nothing changes.' });
  }

  function openForm(kind, row) {
    const E = ENTITIES[kind];
    const editing = Boolean(row);
    const fields = editing ? E.create.filter((f) => E.edit.includes(f.name)) : E.create;
    const title = editing ? `Edit ${E.one} ${E.label(row)}` : `Create ${E.one}`;
    const draft = {};
    const showForm = () => {
      openDialog(title, fields.map((f) => fieldInput(f, draft[f.name] !== undefined ? draft[f.name] : (row ? row[f.name] : undefined))), [
        ['Cancel', 'secondary', null],
        ['Review', null, async () => {
          let parsed;
          try {
            parsed = readForm(fields, row);
          } catch (e) {
            dialogError(e.message);
            return;
          }
          for (const f of fields) {
            const el = document.getElementById(`f-${f.name}`);
            if (el) draft[f.name] = f.type === 'checkbox' ? el.checked : el.value;
          }
          review(parsed);
        }],
      ]);
    };
    // Every change is confirmed: the form leads to a summary, and only that sends it.
    const review = ({ body, cleared }) => {
      const notes = cleared.length
        ? h('p', { class: 'notice', text: `The management API cannot clear a value once set, so ${cleared.join(', ')} keep${cleared.length === 1 ? 's' : ''} ${cleared.length === 1 ? 'its' : 'their'} current value.` })
        : null;
      openDialog(editing ? `Save changes to ${E.one} ${E.label(row)}?` : `Create this ${E.one}?`, [summary(fields, body), notes], [
        ['Back', 'secondary', async () => showForm()],
        [editing ? 'Save changes' : `Create ${E.one}`, null, async () => {
          try {
            const result = editing ? await E.update(row, body) : await E.add(body);
            if (!editing && result && typeof result.key === 'string' && result.key.startsWith('sk-')) {
              showNewKey(result.key, kind);
            } else {
              closeDialog();
              toast(editing ? `Saved the ${E.one}.` : `Created the ${E.one}.`);
            }
            if (kind === 'teams') cache.teams = null;
            if (location.hash.startsWith(`#/${kind}`)) renderEntity(kind);
          } catch (e) {
            dialogError(explain(e, editing ? `Saving the ${E.one}` : `Creating the ${E.one}`));
          }
        }],
      ]);
    };
    showForm();
  }

  function showNewKey(key, kind) {
    let shown = key;
    const box = h('p', { class: 'key-once', id: 'new-key', text: shown });
    openDialog('Copy the new key now', [
      h('p', { text: 'This is the only time the key is shown: only its hash is stored. Copy it somewhere safe before closing.' }),
      box,
    ], [
      ['Copy', 'secondary', async () => {
        try {
          await navigator.clipboard.writeText(shown);
          toast('Copied the key to the clipboard.');
        } catch (_) {
          dialogError('The browser did not allow copying; select the key and copy it by hand.');
        }
      }],
      ['Done', null, async () => {
        // Drop the key from the page once the dialog closes.
        shown = '';
        box.textContent = '';
        closeDialog();
        toast(`Created the ${ENTITIES[kind].one}.`);
      }],
    ]);
  }

  function confirmDelete(kind, row) {
    const E = ENTITIES[kind];
    openDialog(`Delete ${E.one} ${E.label(row)}?`, [
      h('p', { text: `This cannot be undone. ${E.warnDelete}` }),
    ], [
      ['Cancel', 'secondary', null],
      [`Delete ${E.one}`, 'danger', async () => {
        try {
          await E.remove(row);
          closeDialog();
          toast(`Deleted the ${E.one} ${E.label(row)}.`);
          if (kind === 'teams') cache.teams = null;
          renderEntity(kind);
        } catch (e) {
          dialogError(explain(e, `Deleting the ${E.one}`));
        }
      }],
    ]);
  }

  // ---------- start ----------

  async function start() {
    const dlg = $('#dialog');
    dlg.addEventListener('close', () => {
      $('#dialog-body').replaceChildren();
      if (dialogReturn && document.contains(dialogReturn)) dialogReturn.focus();
      dialogReturn = null;
    });
    $('#dialog-form').addEventListener('submit', (e) => {
      e.preventDefault();
      runDialogAction(dialogPrimary);
    });
    $('#sign-out').addEventListener('click', () => signOut('', 'You are signed out; the key is forgotten.'));
    window.addEventListener('hashchange', route);
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden && traces.live && traces.timer === null && session.info && /^#\/traces\/?$/.test(location.hash)) poll();
    });
    try {
      // With no master key the API answers without one; otherwise this is a 401 and the
      // sign-in form comes up.
      const info = await api('GET', '/ui/api/info');
      enterApp(info);
    } catch (e) {
      if (e instanceof ApiError && (e.status === 401 || e.status === 403)) renderLogin('');
      else setMain(h('h1', { text: 'Traceway' }), errorBox(explain(e, 'Loading the page')));
    }
  }

  start();
})();
