// mcplens dashboard: every page draws from /api/. Tool, client and server names, error messages and
// arguments come from events, so they are untrusted: they reach the page only as textContent or
// attribute values set through the DOM, never as HTML (no innerHTML anywhere in this file).
'use strict';
(function () {
  const main = document.getElementById('main');
  const errorBox = document.getElementById('error');
  const REFRESH_MS = 15000;
  let timer = null;
  let charts = [];
  let generation = 0;

  // ---- DOM helpers -------------------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, String(v));
    }
    append(e, children);
    return e;
  }
  function append(parent, children) {
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      parent.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
    }
  }
  function svg(tag, attrs, text) {
    const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // ---- formatting --------------------------------------------------------------------------
  const fmtInt = (v) => (v === null || v === undefined ? '-' : Math.round(v).toLocaleString('en-US'));
  const fmtMs = (v) => (v === null || v === undefined ? '-' : v.toFixed(2));
  const fmtPct = (v) => (v === null || v === undefined ? '-' : (v * 100).toFixed(1) + '%');
  const fmtBytes = (v) => (v === null || v === undefined ? '-' : Math.round(v).toLocaleString('en-US') + ' B');
  function fmtTime(ts) {
    if (ts === null || ts === undefined) return '-';
    const d = new Date(ts * 1000);
    const p = (n, w = 2) => String(n).padStart(w, '0');
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  }
  function label(r) {
    if (r.target === null || r.target === undefined) return r.method || '?';
    return r.method === 'tools/call' ? r.target : `${r.method} ${r.target}`;
  }

  // ---- state: the window and the page live in the URL ---------------------------------------
  function params() { return new URLSearchParams(location.search); }
  function windowParams() {
    const p = params();
    const out = new URLSearchParams();
    const since = p.has('since') ? p.get('since') : '24h';
    if (since) out.set('since', since);
    if (p.get('until')) out.set('until', p.get('until'));
    if (p.get('server')) out.set('server', p.get('server'));
    return out;
  }
  function isLive() { return !params().get('until'); }
  function link(path, extra) {
    const q = windowParams();
    for (const [k, v] of Object.entries(extra || {})) q.set(k, v);
    const s = q.toString();
    return path + (s ? '?' + s : '');
  }
  function go(href) {
    history.pushState(null, '', href);
    render();
  }

  async function api(path, extra) {
    const q = windowParams();
    for (const [k, v] of Object.entries(extra || {})) q.set(k, v);
    const res = await fetch(`/api/${path}?${q}`, { credentials: 'same-origin', headers: { accept: 'application/json' } });
    const body = await res.json().catch(() => ({ error: `HTTP ${res.status}` }));
    if (!res.ok) throw new Error(body.error || `HTTP ${res.status}`);
    return body;
  }

  // ---- charts (uPlot) --------------------------------------------------------------------------
  const COLORS = ['#2563eb', '#dc2626', '#059669', '#d97706', '#7c3aed', '#0891b2', '#db2777', '#4b5563'];
  function chart(title, times, series, opts) {
    const box = el('div', { class: 'chart', 'data-chart': title });
    main.appendChild(box);  // placeholder; moved into its grid by the caller
    const width = Math.max(320, Math.min(720, (main.clientWidth || 900) / 2 - 30));
    const u = new uPlot({
      title, width, height: (opts && opts.height) || 180,
      scales: { x: { time: true } },
      series: [{}, ...series.map((s, i) => ({ label: s.label, stroke: s.color || COLORS[i % COLORS.length], width: 1.5,
        spanGaps: false, points: { show: true, size: 3, width: 1 }, value: (u, v) => (v === null || v === undefined ? '-' : (s.fmt || String)(v)) }))],
      axes: [{}, { size: 60 }],
      legend: { live: true },
    }, [times, ...series.map((s) => s.values)], box);
    charts.push(u);
    return box;
  }
  function grid(...boxes) { return el('div', { class: 'charts' }, boxes); }
  function card(k, v, key) { return el('div', { class: 'card', 'data-card': key }, el('div', { class: 'k' }, k), el('div', { class: 'v' }, v)); }
  function empty(text) { return el('div', { class: 'empty' }, text); }

  function hist(title, bars, unit) {
    const box = el('div', { class: 'hist', 'data-hist': title });
    const max = Math.max(1, ...bars.map((b) => b.n));
    box.appendChild(el('div', { class: 'muted' }, title));
    box.appendChild(el('div'));
    box.appendChild(el('div'));
    for (const b of bars) {
      const bar = el('div', { class: 'hbar' });
      bar.style.width = (100 * b.n / max).toFixed(1) + '%';
      append(box, [el('div', { class: 'num' }, `${b.lo < 10 ? b.lo.toPrecision(3) : Math.round(b.lo).toLocaleString('en-US')}–${b.hi < 10 ? b.hi.toPrecision(3) : Math.round(b.hi).toLocaleString('en-US')} ${unit}`),
        bar, el('div', { class: 'num' }, fmtInt(b.n))]);
    }
    return box;
  }

  // ---- tables ---------------------------------------------------------------------------------
  // cols: [{key, title, num, fmt, get, sortable}]; rows are objects. Sorting is client-side.
  function table(cols, rows, opts) {
    opts = opts || {};
    let sortKey = opts.sortKey || null;
    const t = el('table', { 'data-table': opts.name || '' });
    const thead = el('thead');
    const tbody = el('tbody');
    t.append(thead, tbody);
    function draw() {
      thead.replaceChildren(el('tr', {}, cols.map((c) => el('th', {
        class: [c.num ? 'num' : '', c.sortable === false ? '' : 'sortable', sortKey === c.key ? 'sorted' : ''].join(' ').trim(),
        'data-col': c.key,
        onclick: c.sortable === false ? null : () => { sortKey = c.key; draw(); },
      }, c.title))));
      let list = rows.slice();
      if (sortKey) {
        const c = cols.find((x) => x.key === sortKey);
        const get = c.get || ((r) => r[c.key]);
        list.sort((a, b) => {
          const x = get(a), y = get(b);
          if (x === y) return 0;
          if (x === null || x === undefined) return 1;
          if (y === null || y === undefined) return -1;
          return c.num ? y - x : String(x).localeCompare(String(y));
        });
      }
      tbody.replaceChildren(...list.map((r) => {
        const tr = el('tr', { class: opts.onRow ? 'clickable' : '', 'data-row': opts.rowKey ? opts.rowKey(r) : null });
        if (opts.onRow) tr.addEventListener('click', () => opts.onRow(r));
        for (const c of cols) {
          const v = (c.get || ((x) => x[c.key]))(r);
          const cell = c.render ? c.render(r) : (c.fmt ? c.fmt(v) : (v === null || v === undefined ? '-' : String(v)));
          tr.appendChild(el('td', { class: (c.num ? 'num' : '') + (c.name ? ' name' : ''), 'data-col': c.key,
            title: c.name && typeof cell === 'string' ? cell : null }, cell));
        }
        return tr;
      }));
    }
    draw();
    return t;
  }

  function sessionLink(id) {
    return el('a', { href: link('/session', { id }), 'data-session': id, onclick: (ev) => { ev.preventDefault(); go(link('/session', { id })); } }, id.length > 16 ? id.slice(0, 16) + '…' : id);
  }

  function findingBox(f) {
    const dl = el('dl');
    for (const [k, v] of Object.entries(f.evidence || {})) {
      if (v === null || v === undefined || (Array.isArray(v) && v.length === 0)) continue;
      let dd;
      if (k === 'example_sessions' && Array.isArray(v)) dd = el('dd', {}, v.slice(0, 10).map((s, i) => [i ? ', ' : '', sessionLink(String(s))]));
      else dd = el('dd', {}, typeof v === 'object' ? JSON.stringify(v) : String(v));
      append(dl, [el('dt', {}, k), dd]);
    }
    return el('div', { class: 'finding', 'data-detector': f.detector },
      el('div', {}, el('span', { class: 'sev-' + f.severity }, f.severity.toUpperCase()), ' ',
        el('span', { class: 'muted' }, `[${f.area}/${f.detector}] `), el('span', { class: 'title' }, f.title)),
      dl, f.action ? el('div', {}, el('span', { class: 'muted' }, 'action: '), f.action) : null);
  }

  // ---- pages ------------------------------------------------------------------------------------
  async function overview() {
    const [o, tools, health] = await Promise.all([api('overview'), api('tools'), api('health')]);
    const lost = (k) => health.reduce((a, r) => a + (r[k] || 0), 0);
    const t = o.time;
    const p95 = tools.length ? Math.max(...tools.map((r) => r.p95_ms || 0)) : null;
    const frag = [
      el('div', { class: 'cards' },
        card('calls', fmtInt(o.totals.calls), 'calls'),
        card('errors', fmtInt(o.totals.errors), 'errors'),
        card('error rate', fmtPct(o.totals.calls ? o.totals.errors / o.totals.calls : null), 'error_rate'),
        card('slowest tool p95 ms', fmtMs(p95), 'p95'),
        card("sessions (busiest 5 min)", fmtInt(Math.max(0, ...o.active_sessions)), 'sessions'),
        card('monitoring lost', `${fmtInt(lost('dropped'))} dropped · ${fmtInt(lost('faults'))} faults · ${fmtInt(lost('write_failures'))} write failures`, 'pipeline')),
      grid(
        chart('calls and errors', t, [{ label: 'calls', values: o.calls, fmt: fmtInt }, { label: 'errors', values: o.errors, fmt: fmtInt }]),
        chart('error rate', t, [{ label: 'error rate', values: o.error_rate, fmt: fmtPct }]),
        chart('latency (ms)', t, [{ label: 'p50', values: o.p50_ms, fmt: fmtMs }, { label: 'p95', values: o.p95_ms, fmt: fmtMs }, { label: 'p99', values: o.p99_ms, fmt: fmtMs }]),
        chart('active sessions', t, [{ label: 'sessions', values: o.active_sessions, fmt: fmtInt }])),
      el('h2', {}, 'Top findings'),
      el('div', { id: 'findings' }, el('div', { class: 'muted pending' }, 'analysing…')),
    ];
    main.replaceChildren(...frag);
    const mine = generation;
    const found = await api('insights');
    if (mine !== generation) return;
    const box = document.getElementById('findings');
    if (box) box.replaceChildren(...(found.length ? found.slice(0, 5).map(findingBox) : [empty('no findings in this window')]));
  }

  async function toolsPage() {
    const rows = await api('tools');
    const selected = params().get('tool');
    const multi = new Set(rows.map((r) => r.server)).size > 1;
    const cols = [
      multi ? { key: 'server', title: 'server', name: true } : null,
      { key: 'name', title: 'tool', get: label, name: true },
      { key: 'calls', title: 'calls', num: true, fmt: fmtInt },
      { key: 'errors', title: 'errors', num: true, fmt: fmtInt },
      { key: 'error_rate', title: 'err%', num: true, fmt: fmtPct },
      { key: 'p50_ms', title: 'p50 ms', num: true, fmt: fmtMs },
      { key: 'p95_ms', title: 'p95 ms', num: true, fmt: fmtMs },
      { key: 'p99_ms', title: 'p99 ms', num: true, fmt: fmtMs },
      { key: 'mean_ms', title: 'mean ms', num: true, fmt: fmtMs },
      { key: 'payload_p50_bytes', title: 'bytes p50', num: true, fmt: fmtBytes },
      { key: 'payload_p95_bytes', title: 'bytes p95', num: true, fmt: fmtBytes },
      { key: 'payload_max_bytes', title: 'bytes max', num: true, fmt: fmtBytes },
      { key: 'tokens_p50', title: '~tokens p50', num: true, fmt: fmtInt },
      { key: 'tokens_p95', title: '~tokens p95', num: true, fmt: fmtInt },
      { key: 'statuses', title: 'not ok', sortable: false, get: (r) => Object.entries(r.statuses || {}).filter(([s]) => s !== 'ok').map(([s, n]) => `${s} ${n.toLocaleString('en-US')}`).join(', ') || '-' },
    ].filter(Boolean);
    const detail = el('div', { id: 'tool-detail' });
    main.replaceChildren(
      el('h2', {}, 'Tools'),
      rows.length ? table(cols, rows, { name: 'tools', rowKey: (r) => `${r.server || ''}\u0000${r.name || ''}`, onRow: (r) => go(link('/tools', { tool: r.name })) })
        : empty('No calls in this window. Instrument a server (see the README) and make some tool calls.'),
      detail);
    if (selected) {
      const [d, errs] = await Promise.all([api('tool', { tool: selected }), api('tool_errors', { tool: selected })]);
      const t = d.time;
      detail.replaceChildren(
        el('h2', {}, 'Tool ', el('span', { 'data-tool': selected }, selected)),
        grid(
          chart('latency (ms)', t, [{ label: 'p50', values: d.p50_ms, fmt: fmtMs }, { label: 'p95', values: d.p95_ms, fmt: fmtMs }, { label: 'p99', values: d.p99_ms, fmt: fmtMs }]),
          chart('calls and errors', t, [{ label: 'calls', values: d.calls, fmt: fmtInt }, { label: 'errors', values: d.errors, fmt: fmtInt }])),
        grid(hist('latency', d.latency_histogram || [], 'ms'), hist('payload', d.payload_histogram || [], 'B')),
        el('h2', {}, 'Errors by category and message'),
        errs.length ? table([
          { key: 'category', title: 'category' }, { key: 'error_type', title: 'type', name: true },
          { key: 'message', title: 'message', name: true }, { key: 'n', title: 'count', num: true, fmt: fmtInt },
          { key: 'last', title: 'last', fmt: fmtTime }], errs, { name: 'errors' }) : empty('no errors'));
    }
  }

  async function clientsPage() {
    const d = await api('clients');
    const t = d.time;
    main.replaceChildren(
      el('h2', {}, 'Clients'),
      d.clients.length ? table([
        { key: 'client', title: 'client', name: true },
        { key: 'calls', title: 'calls', num: true, fmt: fmtInt },
        { key: 'errors', title: 'errors', num: true, fmt: fmtInt },
        { key: 'rate_per_h', title: 'calls/h', num: true, fmt: (v) => v.toFixed(1) },
        { key: 'baseline_per_h', title: 'previous period calls/h', num: true, fmt: (v) => v.toFixed(1) },
        { key: 'vs_baseline', title: '× baseline', num: true, fmt: (v) => (v === null ? 'new' : v.toFixed(2) + '×') },
        { key: 'rate_limited', title: 'rate-limited', num: true, fmt: fmtInt },
        { key: 'unauthorized', title: 'auth failures', num: true, fmt: fmtInt },
      ], d.clients, { name: 'clients', rowKey: (r) => r.client || '' }) : empty('No calls in this window.'),
      grid(chart('calls per client', t, d.clients.slice(0, 8).map((c) => ({ label: c.client || '(unnamed)', values: c.series, fmt: fmtInt })))),
      el('h2', {}, 'Spikes, rate limits and auth failures'),
      el('div', { id: 'findings' }, el('div', { class: 'muted pending' }, 'analysing…')));
    const mine = generation;
    const found = (await api('insights')).filter((f) => ['client_spike', 'rate_limited', 'auth_failures'].includes(f.detector));
    if (mine !== generation) return;
    document.getElementById('findings').replaceChildren(...(found.length ? found.map(findingBox) : [empty('none in this window')]));
  }

  async function sessionsPage() {
    const rows = await api('sessions', { limit: '500' });
    const filter = el('input', { type: 'search', placeholder: 'filter: client, server, tool, id', id: 'filter', 'aria-label': 'filter' });
    const holder = el('div');
    const cols = [
      { key: 'session_id', title: 'session', render: (r) => sessionLink(r.session_id) },
      { key: 'client', title: 'client', name: true, get: (r) => [r.client_name, r.client_version].filter(Boolean).join(' ') || '-' },
      { key: 'server', title: 'server', name: true },
      { key: 'first_seen', title: 'first seen', fmt: fmtTime, num: true },
      { key: 'last_seen', title: 'last seen', fmt: fmtTime, num: true },
      { key: 'calls', title: 'calls', num: true, fmt: fmtInt },
      { key: 'errors', title: 'errors', num: true, fmt: fmtInt },
      { key: 'tools', title: 'tools', name: true, get: (r) => (r.tools || []).join(', ') || '-' },
    ];
    function draw() {
      const q = filter.value.trim().toLowerCase();
      const list = q ? rows.filter((r) => [r.session_id, r.client_name, r.server, ...(r.tools || [])].some((x) => x && String(x).toLowerCase().includes(q))) : rows;
      holder.replaceChildren(list.length ? table(cols, list, { name: 'sessions', rowKey: (r) => r.session_id }) : empty('No sessions in this window.'));
    }
    filter.addEventListener('input', draw);
    main.replaceChildren(el('h2', {}, 'Sessions'), el('div', { class: 'toolbar' }, filter, el('span', { class: 'muted' }, `${rows.length} most recent`)), holder);
    draw();
  }

  async function sessionPage() {
    const id = params().get('id') || '';
    const d = await api('session', { id });
    const ev = d.events;
    const t0 = ev.length ? ev[0].time : 0;
    const t1 = ev.length ? Math.max(...ev.map((e) => e.time + (e.duration_s || 0))) : 1;
    const span = Math.max(1e-6, t1 - t0);
    const rows = ev.map((e, i) => {
      const track = el('div', { class: 'track' });
      const bar = el('div', { class: 'span' + (e.status && e.status !== 'ok' ? ' bad' : '') });
      bar.style.left = (100 * (e.time - t0) / span).toFixed(3) + '%';
      bar.style.width = (100 * (e.duration_s || 0) / span).toFixed(3) + '%';
      track.appendChild(bar);
      const args = e.request_arguments !== undefined ? e.request_arguments : e.request_args;
      return el('tr', { 'data-seq': i, 'data-event': e.event_id },
        el('td', { class: 'num' }, '+' + ((e.time - t0) * 1000).toFixed(1) + ' ms'),
        el('td', {}, e.proxy_direction === 'server_to_client' ? '←' : '→'),
        el('td', { class: 'name', 'data-col': 'method' }, e.method || '-'),
        el('td', { class: 'name', 'data-col': 'target' }, e.target || '-'),
        el('td', { class: e.status === 'ok' ? 'status-ok' : 'status-bad', 'data-col': 'status' }, e.status || '-'),
        el('td', { class: 'num' }, fmtMs(e.duration_s === undefined ? null : e.duration_s * 1000)),
        el('td', { class: 'num' }, fmtBytes(e.response_size)),
        el('td', { class: 'bar' }, track),
        el('td', { class: 'args', 'data-col': 'args' }, args === undefined ? '' : (typeof args === 'string' ? args : JSON.stringify(args)),
          e.error_type ? el('div', { class: 'status-bad' }, e.error_type + (e.error_message ? ': ' + e.error_message : '')) : null));
    });
    const first = ev[0] || {};
    main.replaceChildren(
      el('h2', {}, 'Session ', el('span', { id: 'session-id' }, d.session)),
      el('div', { class: 'cards' }, card('client', [first.client_name, first.client_version].filter(Boolean).join(' ') || '-', 'client'),
        card('server', first.server_name || '-', 'server'), card('events', fmtInt(ev.length), 'events'),
        card('started', fmtTime(t0), 'started'), card('length', fmtMs(span * 1000) + ' ms', 'length')),
      el('table', { class: 'timeline', 'data-table': 'timeline' },
        el('thead', {}, el('tr', {}, ['time', '', 'method', 'target', 'status', 'ms', 'bytes', 'timeline', 'arguments (redacted)'].map((h) => el('th', {}, h)))),
        el('tbody', {}, rows)));
  }

  async function flowsPage() {
    const [d, found] = await Promise.all([api('flows'), api('insights')]);
    const edges = d.edges;
    const chains = found.filter((f) => f.detector === 'chain');
    main.replaceChildren(el('h2', {}, 'Tool transitions'), edges.length ? flowGraph(edges.slice(0, 40)) : empty('No tool calls within sessions in this window.'),
      edges.length ? table([{ key: 'src', title: 'from', name: true }, { key: 'dst', title: 'to', name: true },
        { key: 'n', title: 'times', num: true, fmt: fmtInt }, { key: 'sessions', title: 'sessions', num: true, fmt: fmtInt }], edges, { name: 'edges' }) : null,
      el('h2', {}, 'Common chains and what each suggests'),
      chains.length ? el('div', {}, chains.map(findingBox)) : empty('no common chains in this window'));
  }

  function flowGraph(edges) {
    const names = [...new Set(edges.flatMap((e) => [e.src, e.dst]))];
    const W = 760, H = 420, R = 170, cx = W / 2, cy = H / 2;
    const pos = new Map(names.map((n, i) => [n, [cx + R * Math.cos(2 * Math.PI * i / names.length), cy + R * Math.sin(2 * Math.PI * i / names.length)]]));
    const max = Math.max(...edges.map((e) => e.n));
    const s = svg('svg', { class: 'flow', viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'img', 'aria-label': 'tool transition graph' });
    const defs = svg('defs');
    const marker = svg('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 6, markerHeight: 6, orient: 'auto-start-reverse' });
    marker.appendChild(svg('path', { d: 'M 0 0 L 10 5 L 0 10 z', class: 'arrowhead' }));
    defs.appendChild(marker);
    s.appendChild(defs);
    for (const e of edges) {
      const [x1, y1] = pos.get(e.src), [x2, y2] = pos.get(e.dst);
      const w = 1 + 6 * e.n / max;
      let shape;
      if (e.src === e.dst) {  // a tool calling itself again: a small loop beside the node
        const dx = x1 >= cx ? 1 : -1;
        shape = svg('path', { d: `M ${x1} ${y1 - 6} C ${x1 + dx * 30} ${y1 - 30}, ${x1 + dx * 30} ${y1 + 30}, ${x1} ${y1 + 6}`, fill: 'none', 'stroke-width': w, 'marker-end': 'url(#arrow)' });
      } else {  // stop short of the target's circle so the arrowhead shows
        const len = Math.hypot(x2 - x1, y2 - y1) || 1;
        shape = svg('line', { x1, y1, x2: x2 - (x2 - x1) * 9 / len, y2: y2 - (y2 - y1) * 9 / len, 'stroke-width': w, 'marker-end': 'url(#arrow)' });
      }
      shape.appendChild(svg('title', {}, `${e.src} → ${e.dst}: ${e.n}`));
      s.appendChild(shape);
    }
    for (const n of names) {
      const [x, y] = pos.get(n);
      s.appendChild(svg('circle', { cx: x, cy: y, r: 6 }));
      s.appendChild(svg('text', { x: x + (x >= cx ? 9 : -9), y: y + 4, 'text-anchor': x >= cx ? 'start' : 'end' }, n.length > 28 ? n.slice(0, 27) + '…' : n));
    }
    return el('div', { class: 'chart' }, s);
  }

  async function securityPage() {
    const found = (await api('insights')).filter((f) => f.area === 'security');
    main.replaceChildren(el('h2', {}, 'Security findings'), found.length ? el('div', {}, found.map(findingBox)) : empty('No security findings in this window.'));
  }

  async function healthPage() {
    const [rows, inst] = await Promise.all([api('health'), api('instances')]);
    const byInst = new Map();
    for (const p of inst.points) {
      if (!byInst.has(p.instance_id)) byInst.set(p.instance_id, []);
      byInst.get(p.instance_id).push(p);
    }
    const step = inst.step_s;
    const slot = (ts) => Math.floor((ts - inst.time[0]) / step);
    const cpu = [], mem = [];
    for (const [id, pts] of [...byInst.entries()].slice(0, 8)) {
      const c = inst.time.map(() => null), m = inst.time.map(() => null);
      for (let i = 0; i < pts.length; i++) {
        const k = slot(pts[i].time);
        if (k < 0 || k >= m.length) continue;
        if (pts[i].memory_bytes !== null && pts[i].memory_bytes !== undefined) m[k] = pts[i].memory_bytes / 1048576;
        if (i > 0 && pts[i].cpu_s !== null && pts[i - 1].cpu_s !== null && pts[i].time > pts[i - 1].time) {
          c[k] = 100 * (pts[i].cpu_s - pts[i - 1].cpu_s) / (pts[i].time - pts[i - 1].time);
        }
      }
      const name = `${(pts[0].server || '-')} ${String(id).slice(0, 8)}`;
      cpu.push({ label: name, values: c, fmt: (v) => v.toFixed(1) + '%' });
      mem.push({ label: name, values: m, fmt: (v) => v.toFixed(1) + ' MB' });
    }
    const starts = [...byInst.entries()].map(([id, pts]) => ({ instance_id: id, server: pts[0].server, pid: pts[0].pid, started: pts[0].started, last: pts[pts.length - 1].time }));
    main.replaceChildren(
      el('h2', {}, 'Instances'),
      rows.length ? table([
        { key: 'instance_id', title: 'instance', name: true }, { key: 'server', title: 'server', name: true },
        { key: 'pid', title: 'pid', num: true }, { key: 'time', title: 'last report', fmt: fmtTime },
        { key: 'events', title: 'events', num: true, fmt: fmtInt }, { key: 'written', title: 'written', num: true, fmt: fmtInt },
        { key: 'dropped', title: 'dropped', num: true, fmt: fmtInt }, { key: 'faults', title: 'faults', num: true, fmt: fmtInt },
        { key: 'write_failures', title: 'write failures', num: true, fmt: fmtInt }], rows, { name: 'health' })
        : empty('No health records in this window (each instrumented process writes one periodically).'),
      grid(
        chart('calls', inst.time, [{ label: 'calls', values: inst.calls, fmt: fmtInt }]),
        chart('CPU %', inst.time, cpu.length ? cpu : [{ label: 'cpu', values: inst.time.map(() => null) }]),
        chart('memory MB', inst.time, mem.length ? mem : [{ label: 'memory', values: inst.time.map(() => null) }])),
      el('h2', {}, 'Starts'),
      starts.length ? table([{ key: 'instance_id', title: 'instance', name: true }, { key: 'server', title: 'server', name: true },
        { key: 'pid', title: 'pid', num: true }, { key: 'started', title: 'process started', fmt: fmtTime }, { key: 'last', title: 'last seen', fmt: fmtTime }], starts, { name: 'starts' }) : empty('none'));
  }

  async function alertsPage() {
    const d = await api('alerts');
    main.replaceChildren(
      el('h2', {}, 'Alert rules'),
      d.problem ? el('div', { class: 'error' }, d.problem) : null,
      d.rules.length ? table([{ key: 'name', title: 'rule', name: true }, { key: 'detector', title: 'detector' },
        { key: 'threshold', title: 'threshold', num: true }, { key: 'min_severity', title: 'min severity' },
        { key: 'cooldown_s', title: 'cool-down s', num: true }, { key: 'tool', title: 'tool', name: true }], d.rules, { name: 'rules' })
        : empty('No rules shown: start the dashboard with --alerts FILE (the file `mcplens watch --config` reads).'),
      el('h2', {}, 'State and what fired (from mcplens watch)'),
      d.state.length ? table([{ key: 'rule', title: 'rule', name: true }, { key: 'key', title: 'subject', name: true },
        { key: 'active', title: 'state', get: (r) => (r.active ? 'firing' : 'resolved') },
        { key: 'last_fired', title: 'last fired', fmt: fmtTime, num: true },
        { key: 'finding', title: 'finding', name: true, sortable: false, get: (r) => (r.finding && r.finding.title) || '-' }], d.state, { name: 'alerts' })
        : empty('Nothing has fired (or `mcplens watch` has not run over this data directory).'));
  }

  const PAGES = { '/': ['overview', overview], '/tools': ['tools', toolsPage], '/clients': ['clients', clientsPage],
    '/sessions': ['sessions', sessionsPage], '/session': ['sessions', sessionPage], '/flows': ['flows', flowsPage],
    '/security': ['security', securityPage], '/health': ['health', healthPage], '/alerts': ['alerts', alertsPage] };

  // ---- render, window picker, refresh ------------------------------------------------------
  async function render() {
    const mine = ++generation;
    const [name, page] = PAGES[location.pathname] || PAGES['/'];
    for (const a of document.querySelectorAll('#nav a')) {
      a.classList.toggle('active', a.dataset.page === name);
      a.setAttribute('href', link(a.getAttribute('href').split('?')[0]));
    }
    syncPicker();
    const scroll = window.scrollY;
    try {
      for (const c of charts) c.destroy();
      charts = [];
      await page();
      if (mine !== generation) return;
      errorBox.hidden = true;
      document.body.dataset.loaded = String(mine);
      window.scrollTo(0, scroll);
    } catch (e) {
      if (mine !== generation) return;
      errorBox.textContent = 'Could not load: ' + e.message;
      errorBox.hidden = false;
      document.body.dataset.loaded = String(mine);
    }
    schedule();
  }

  const win = document.getElementById('win');
  const custom = document.getElementById('custom');
  const from = document.getElementById('from');
  const to = document.getElementById('to');
  const live = document.getElementById('live');
  function toLocalInput(ts) {
    const d = new Date(ts * 1000 - new Date().getTimezoneOffset() * 60000);
    return d.toISOString().slice(0, 16);
  }
  function syncPicker() {
    const p = params();
    const since = p.has('since') ? p.get('since') : '24h';
    const presets = [...win.options].map((o) => o.value);
    if (p.get('until') || (since !== '' && !presets.includes(since))) win.value = 'custom';
    else win.value = since === '' ? 'all' : since;
    custom.hidden = win.value !== 'custom';
  }
  function setWindow(since, until) {
    const p = params();
    p.set('since', since);
    if (until) p.set('until', until); else p.delete('until');
    go(location.pathname + '?' + p.toString());
  }
  win.addEventListener('change', () => {
    if (win.value === 'custom') {
      custom.hidden = false;
      if (!from.value) from.value = toLocalInput(Date.now() / 1000 - 86400);
      if (!to.value) to.value = toLocalInput(Date.now() / 1000);
      return;
    }
    setWindow(win.value === 'all' ? '' : win.value, null);
  });
  document.getElementById('apply').addEventListener('click', () => {
    if (!from.value) return;
    const iso = (v) => new Date(v).toISOString();
    setWindow(iso(from.value), to.value ? iso(to.value) : null);
  });

  function schedule() {
    clearTimeout(timer);
    timer = null;
    const on = isLive() && document.visibilityState === 'visible';
    live.textContent = isLive() ? (on ? '● live' : '❚❚ paused') : 'fixed range';
    live.classList.toggle('on', on);
    live.dataset.state = on ? 'live' : (isLive() ? 'paused' : 'fixed');
    if (on) timer = setTimeout(render, REFRESH_MS);
  }
  document.addEventListener('visibilitychange', () => {
    schedule();  // shows live/paused at once
    if (document.visibilityState === 'visible' && isLive()) render();
  });
  window.addEventListener('popstate', render);
  document.getElementById('nav').addEventListener('click', (ev) => {
    const a = ev.target.closest('a');
    if (!a || ev.ctrlKey || ev.metaKey || ev.shiftKey) return;
    ev.preventDefault();
    go(link(a.getAttribute('href').split('?')[0]));
  });
  render();
})();
