// batchgate status page: the caller's batches, live. Plain JS, no
// dependencies. It talks only to its own origin, over the REST API: the
// list (GET /v1/batches), one NDJSON multi-watch for the list, and for one
// batch its GET, its single NDJSON watch (resumed with resume_tag) and the
// first lines of its results. The watch streams are read with fetch and a
// ReadableStream reader (EventSource cannot send an Authorization header);
// a token, when the gateway wants one, is kept in sessionStorage for the
// tab and sent as a bearer header, never in a URL.
'use strict';

(function () {
  const TOKEN_KEY = 'batchgate.token';
  const TERMINAL = new Set(['completed', 'failed', 'expired', 'cancelled']);
  const LIST_LIMIT = 100;
  const LIST_REFRESH_MS = 5000;
  const RESULTS_SHOWN = 20;
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 30000;

  const $ = (sel) => document.querySelector(sel);

  // A 401: the page needs (another) token.
  class AuthError extends Error {}
  // Any other refusal, with the envelope's message.
  class HTTPError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  function token() {
    return sessionStorage.getItem(TOKEN_KEY) || '';
  }

  function headers(accept) {
    const h = { Accept: accept };
    const t = token();
    if (t) h.Authorization = 'Bearer ' + t;
    return h;
  }

  async function request(path, accept, signal) {
    const resp = await fetch(path, { headers: headers(accept), signal: signal, cache: 'no-store', credentials: 'omit' });
    if (resp.status === 401) throw new AuthError('unauthenticated');
    if (!resp.ok) {
      let msg = resp.status + ' ' + resp.statusText;
      try {
        const body = await resp.json();
        if (body && body.error && body.error.message) msg = body.error.message;
      } catch (e) {
        // not the error envelope: keep the status line
      }
      throw new HTTPError(resp.status, msg);
    }
    return resp;
  }

  async function getJSON(path, signal) {
    const resp = await request(path, 'application/json', signal);
    return { body: await resp.json(), etag: resp.headers.get('ETag') };
  }

  // ndjson calls onLine with each JSON line of the stream at path, until
  // the stream ends (it resolves) or breaks (it rejects).
  async function ndjson(path, signal, onLine) {
    const resp = await request(path, 'application/x-ndjson', signal);
    const reader = resp.body.getReader();
    const dec = new TextDecoder();
    let buf = '';
    for (;;) {
      const chunk = await reader.read();
      if (chunk.done) break;
      buf += dec.decode(chunk.value, { stream: true });
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (!line) continue;
        let more;
        try {
          more = onLine(JSON.parse(line));
        } catch (err) {
          reader.cancel().catch(() => {});
          throw err;
        }
        if (more === false) {
          reader.cancel().catch(() => {});
          return;
        }
      }
    }
    buf += dec.decode();
    if (buf.trim()) onLine(JSON.parse(buf));
  }

  function sleep(ms, signal) {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
    });
  }

  function isAbort(err) {
    return err && err.name === 'AbortError';
  }

  // Backoff doubles from BACKOFF_MIN_MS up to BACKOFF_MAX_MS, with jitter;
  // reset() after a stream delivered something.
  function backoff() {
    let next = BACKOFF_MIN_MS;
    return {
      delay() {
        const d = next * (0.8 + Math.random() * 0.4);
        next = Math.min(next * 2, BACKOFF_MAX_MS);
        return d;
      },
      reset() { next = BACKOFF_MIN_MS; },
    };
  }

  // el builds an element; children are nodes or text (never HTML).
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') e.className = v;
      else if (k.startsWith('data-')) e.setAttribute(k, v);
      else e[k] = v;
    }
    for (const c of children) {
      if (c !== null && c !== undefined) e.append(c);
    }
    return e;
  }

  function setConn(state, text) {
    const c = $('#conn');
    c.dataset.state = state;
    c.textContent = text;
  }

  function showMessage(text) {
    const m = $('#message');
    m.textContent = text || '';
    m.hidden = !text;
  }

  function fmtTime(sec) {
    if (!sec) return '';
    return new Date(sec * 1000).toLocaleString();
  }

  function fmtAge(sec) {
    if (!sec) return '';
    let s = Math.max(0, Math.round(Date.now() / 1000 - sec));
    if (s < 60) return s + 's';
    const m = Math.floor(s / 60);
    if (m < 60) return m + 'm';
    const h = Math.floor(m / 60);
    if (h < 48) return h + 'h ' + (m % 60) + 'm';
    return Math.floor(h / 24) + 'd';
  }

  function counts(b) {
    const rc = b.request_counts || {};
    return { total: rc.total || 0, completed: rc.completed || 0, failed: rc.failed || 0 };
  }

  // setBar sizes a bar's two segments (completed, failed) as fractions of
  // the total; through the CSSOM, which the CSP allows (inline style
  // attributes it does not).
  function setBar(bar, b) {
    const c = counts(b);
    let done = 0;
    let failed = 0;
    if (c.total > 0) {
      done = c.completed / c.total;
      failed = c.failed / c.total;
    } else if (b.status === 'completed') {
      done = 1;
    }
    bar.querySelector('.done').style.width = (done * 100).toFixed(2) + '%';
    bar.querySelector('.failed').style.width = (failed * 100).toFixed(2) + '%';
    bar.dataset.completed = String(c.completed);
    bar.dataset.failed = String(c.failed);
    bar.dataset.total = String(c.total);
    bar.title = c.completed + ' completed, ' + c.failed + ' failed of ' + c.total;
  }

  function countsText(b) {
    const c = counts(b);
    let t = c.completed + ' / ' + c.total;
    if (c.failed) t += ' (' + c.failed + ' failed)';
    return t;
  }

  function statusBadge(span, status) {
    span.className = 'status ' + status;
    span.textContent = (status || '').replace('_', ' ');
  }

  // One view runs at a time; switching views aborts the previous one's
  // requests and streams.
  let current = null;

  function stopView() {
    if (current) current.abort();
    current = new AbortController();
    return current.signal;
  }

  function show(id) {
    for (const s of ['#auth', '#list-view', '#batch-view']) $(s).hidden = s !== id;
  }

  function needToken(hadToken) {
    stopView();
    sessionStorage.removeItem(TOKEN_KEY);
    setConn('idle', 'signed out');
    const e = $('#auth-error');
    e.textContent = hadToken ? 'That token was refused.' : '';
    e.hidden = !hadToken;
    show('#auth');
    $('#token').value = '';
    $('#token').focus();
  }

  // failed handles an error that ended a view's loop: true when the loop
  // should end (aborted, or a token is needed).
  function failed(err, signal) {
    if (signal.aborted || isAbort(err)) return true;
    if (err instanceof AuthError) {
      needToken(token() !== '');
      return true;
    }
    return false;
  }

  // ---- the list ----

  const rows = new Map();

  function listRow(b) {
    let r = rows.get(b.id);
    if (!r) {
      const bar = el('div', { class: 'bar' }, el('span', { class: 'done' }), el('span', { class: 'failed' }));
      r = {
        tr: el('tr', { 'data-id': b.id }),
        status: el('span'),
        bar: bar,
        counts: el('td'),
        age: el('td', { class: 'muted' }),
      };
      const link = el('a', { href: '#/batch/' + encodeURIComponent(b.id) }, b.id);
      r.tr.append(el('td', { class: 'id' }, link), el('td', {}, r.status), el('td', {}, bar), r.counts, r.age);
      rows.set(b.id, r);
    }
    r.batch = b;
    r.tr.dataset.status = b.status;
    statusBadge(r.status, b.status);
    setBar(r.bar, b);
    r.counts.textContent = countsText(b);
    r.age.textContent = fmtAge(b.created_at);
    return r;
  }

  function renderList(batches) {
    const tbody = $('#batches tbody');
    const seen = new Set();
    const trs = batches.map((b) => { seen.add(b.id); return listRow(b).tr; });
    for (const id of rows.keys()) if (!seen.has(id)) rows.delete(id);
    tbody.replaceChildren(...trs);
    $('#empty').hidden = batches.length > 0;
    $('#batches').hidden = batches.length === 0;
  }

  async function fetchList(signal) {
    const { body } = await getJSON('/v1/batches?limit=' + LIST_LIMIT, signal);
    const batches = body.data || [];
    renderList(batches);
    return batches.filter((b) => !TERMINAL.has(b.status)).map((b) => b.id);
  }

  // runList lists the batches and follows the ones still running on one
  // multi-watch. It lists again every LIST_REFRESH_MS, and restarts the
  // watch when the set of running batches changed (a new batch, or one
  // that started again); a stream that ends or breaks is reopened with
  // backoff.
  async function runList(signal) {
    show('#list-view');
    const bo = backoff();
    let live = [];
    let watch = null;
    let watching = '';
    const ages = setInterval(() => { for (const r of rows.values()) r.age.textContent = fmtAge(r.batch.created_at); }, 1000);
    signal.addEventListener('abort', () => clearInterval(ages), { once: true });

    const openWatch = (ids) => {
      if (watch) watch.abort();
      watching = ids.join(',');
      if (!ids.length) {
        watch = null;
        setConn('live', 'up to date');
        return;
      }
      const ctl = new AbortController();
      watch = ctl;
      signal.addEventListener('abort', () => ctl.abort(), { once: true });
      const path = '/v1/batches:watch?' + ids.map((id) => 'batch_id=' + encodeURIComponent(id)).join('&');
      (async () => {
        const open = new Set(ids);
        while (!ctl.signal.aborted && open.size) {
          try {
            setConn('live', 'live');
            await ndjson(path, ctl.signal, (ev) => {
              bo.reset();
              if (ev.type === 'error' && !ev.batch_id) throw new HTTPError(ev.http_status || 500, (ev.error && ev.error.message) || 'stream failed');
              if (ev.batch) listRow(ev.batch);
              if (ev.terminal && ev.batch_id) open.delete(ev.batch_id);
              return open.size > 0;
            });
            if (!open.size) break;
          } catch (err) {
            if (failed(err, ctl.signal)) return;
            showMessage('watch: ' + err.message);
          }
          if (ctl.signal.aborted) return;
          const d = bo.delay();
          setConn('retry', 'reconnecting in ' + Math.round(d / 100) / 10 + 's');
          await sleep(d, ctl.signal);
        }
        if (!ctl.signal.aborted) setConn('live', 'up to date');
      })();
    };

    while (!signal.aborted) {
      try {
        live = await fetchList(signal);
        showMessage('');
        if (live.join(',') !== watching || (watch === null && live.length)) openWatch(live);
      } catch (err) {
        if (failed(err, signal)) return;
        showMessage('list: ' + err.message);
        setConn('retry', 'retrying');
      }
      await sleep(LIST_REFRESH_MS, signal);
    }
  }

  // ---- one batch ----

  const STEPS = [
    { key: 'created_at', label: 'created' },
    { key: 'in_progress_at', label: 'in progress' },
    { key: 'finalizing_at', label: 'finalizing' },
  ];
  const ENDS = [
    ['completed_at', 'completed'],
    ['failed_at', 'failed'],
    ['expired_at', 'expired'],
    ['cancelled_at', 'cancelled'],
  ];

  function renderTimeline(b) {
    const items = [];
    let reached = 0;
    STEPS.forEach((s, i) => { if (b[s.key]) reached = i; });
    STEPS.forEach((s, i) => {
      const li = el('li', { 'data-step': s.label }, s.label, el('span', { class: 'when' }, fmtTime(b[s.key]) || '\u2014'));
      if (b[s.key]) li.className = 'reached';
      if (!TERMINAL.has(b.status) && i === reached) li.className = 'current';
      items.push(li);
    });
    let end = ['', 'done'];
    for (const e of ENDS) if (b[e[0]]) end = e;
    if (!end[0] && b.status === 'cancelling') end = ['cancelling_at', 'cancelling'];
    const li = el('li', { 'data-step': 'done' }, end[1], el('span', { class: 'when' }, fmtTime(b[end[0]]) || '\u2014'));
    if (TERMINAL.has(b.status)) li.className = b.status === 'completed' ? 'reached' : 'bad';
    items.push(li);
    $('#b-timeline').replaceChildren(...items);
  }

  function renderDL(dl, entries) {
    const items = [];
    for (const [k, v] of entries) {
      if (v === null || v === undefined || v === '') continue;
      items.push(el('dt', {}, k), el('dd', {}, String(v)));
    }
    if (!items.length) items.push(el('dt', { class: 'muted' }, 'none'));
    dl.replaceChildren(...items);
  }

  function renderBatch(b) {
    $('#b-id').textContent = b.id;
    statusBadge($('#b-status'), b.status);
    $('#batch-view').dataset.status = b.status;
    renderTimeline(b);
    setBar($('#b-bar'), b);
    $('#b-counts').textContent = countsText(b);
    const errs = (b.errors && b.errors.data) || [];
    $('#b-errors-box').hidden = errs.length === 0;
    $('#b-errors tbody').replaceChildren(...errs.map((e) =>
      el('tr', {}, el('td', {}, e.code || ''), el('td', {}, e.message || ''), el('td', {}, e.line === null || e.line === undefined ? '' : String(e.line)), el('td', {}, e.param || ''))));
    renderDL($('#b-details'), [
      ['endpoint', b.endpoint],
      ['input file', b.input_file_id],
      ['output file', b.output_file_id],
      ['error file', b.error_file_id],
      ['completion window', b.completion_window],
      ['expires', fmtTime(b.expires_at)],
    ]);
    renderDL($('#b-metadata'), Object.entries(b.metadata || {}));
  }

  async function loadResults(id, signal) {
    const rowsOut = [];
    const ctl = new AbortController();
    signal.addEventListener('abort', () => ctl.abort(), { once: true });
    try {
      await ndjson('/v1/batches/' + encodeURIComponent(id) + '/results', ctl.signal, (line) => {
        if (line.type === 'error') throw new HTTPError(line.http_status || 500, (line.error && line.error.message) || 'results failed');
        let outcome = '';
        if (line.parse_error) outcome = 'unreadable: ' + line.parse_error;
        else if (line.error) outcome = line.error.code + ': ' + line.error.message;
        else if (line.response) outcome = 'HTTP ' + line.response.status_code;
        rowsOut.push(el('tr', {}, el('td', {}, line.kind), el('td', {}, String(line.line)), el('td', { class: 'id' }, line.custom_id), el('td', {}, outcome)));
        return rowsOut.length < RESULTS_SHOWN;
      });
    } catch (err) {
      if (failed(err, signal)) return;
      rowsOut.push(el('tr', {}, el('td', { colSpan: 4, class: 'muted' }, 'results: ' + err.message)));
    }
    if (!rowsOut.length) rowsOut.push(el('tr', {}, el('td', { colSpan: 4, class: 'muted' }, 'no result lines')));
    $('#b-results tbody').replaceChildren(...rowsOut);
    $('#b-results-box').hidden = false;
  }

  // runBatch shows one batch and follows it on its single watch until it
  // is terminal, reconnecting with backoff and resume_tag (the last tag
  // seen, at first the ETag of the GET) so that no change is missed.
  async function runBatch(id, signal) {
    show('#batch-view');
    $('#b-results-box').hidden = true;
    $('#b-id').textContent = id;
    const bo = backoff();
    let tag = '';
    let batch = null;
    while (!signal.aborted) {
      try {
        if (!batch) {
          const got = await getJSON('/v1/batches/' + encodeURIComponent(id), signal);
          batch = got.body;
          tag = (got.etag || '').replace(/"/g, '');
          renderBatch(batch);
          showMessage('');
        }
        if (TERMINAL.has(batch.status)) break;
        setConn('live', 'live');
        let path = '/v1/batches/' + encodeURIComponent(id) + '/watch';
        if (tag) path += '?resume_tag=' + encodeURIComponent(tag);
        let ended = false;
        await ndjson(path, signal, (ev) => {
          bo.reset();
          if (ev.type === 'error') throw new HTTPError(ev.http_status || 500, (ev.error && ev.error.message) || 'stream failed');
          if (ev.tag) tag = ev.tag;
          if (ev.batch) {
            batch = ev.batch;
            renderBatch(batch);
          }
          if (ev.terminal) ended = true;
          return !ended;
        });
        if (ended || TERMINAL.has(batch.status)) break;
      } catch (err) {
        if (failed(err, signal)) return;
        showMessage((batch ? 'watch: ' : '') + err.message);
        if (err instanceof HTTPError && err.status === 404) {
          setConn('idle', 'not found');
          return;
        }
      }
      const d = bo.delay();
      setConn('retry', 'reconnecting in ' + Math.round(d / 100) / 10 + 's');
      await sleep(d, signal);
    }
    if (signal.aborted || !batch) return;
    setConn('live', 'done');
    await loadResults(id, signal);
  }

  // ---- routing ----

  function route() {
    const signal = stopView();
    showMessage('');
    const m = location.hash.match(/^#\/batch\/(.+)$/);
    if (m) runBatch(decodeURIComponent(m[1]), signal);
    else runList(signal);
  }

  $('#auth-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const t = $('#token').value.trim();
    if (!t) return;
    sessionStorage.setItem(TOKEN_KEY, t);
    route();
  });
  window.addEventListener('hashchange', route);
  route();
})();
