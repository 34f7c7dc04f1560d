// The dashboard page: polls the gateway's JSON API and draws what it gets.
// Plain browser JavaScript, no framework, no third-party code; every value
// from the API is put in the page as text (textContent), never as markup.

const SVG = 'http://www.w3.org/2000/svg';
const TERMINAL = new Set(['succeeded', 'failed', 'rejected', 'expired', 'unknown']);
const CHART_WINDOW_S = 300;

const $ = (id) => document.getElementById(id);

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function svgEl(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}

async function api(path, init) {
  const res = await fetch(path, init);
  let body;
  try {
    body = await res.json();
  } catch {
    body = undefined;
  }
  if (!res.ok) {
    const message = body?.error?.message ?? `HTTP ${res.status}`;
    const err = new Error(message);
    err.status = res.status;
    throw err;
  }
  return body;
}

function fmtNumber(n) {
  if (n === null || n === undefined) return '–';
  if (Math.abs(n) >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (Math.abs(n) >= 1e4) return `${(n / 1e3).toFixed(1)}k`;
  return String(Math.round(n));
}

function fmtAge(ms) {
  if (ms === null || ms === undefined) return 'never';
  const s = Math.max(0, (Date.now() - ms) / 1000);
  if (s < 1) return 'just now';
  if (s < 90) return `${Math.round(s)} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}

function fmtTime(ms) {
  return new Date(ms).toLocaleTimeString([], { hour12: false });
}

function compact(value, max) {
  let text = typeof value === 'string' ? value : JSON.stringify(value);
  if (text === undefined) text = '';
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

// One reading in a few characters: known sensors get units, others their first fields.
function fmtReading(type, payload) {
  if (typeof payload === 'number') return `${type} ${payload}`;
  if (typeof payload !== 'object' || payload === null) return `${type} ${compact(payload, 40)}`;
  if (type === 'battery' && typeof payload.pct === 'number') return `battery ${payload.pct.toFixed(1)}%`;
  if (type === 'temperature' && typeof payload.c === 'number') return `temp ${payload.c.toFixed(1)}°C`;
  if (type === 'gps' && typeof payload.lat === 'number') {
    return `gps ${payload.lat.toFixed(4)},${payload.lon.toFixed(4)}`;
  }
  const parts = Object.entries(payload)
    .slice(0, 3)
    .map(([k, v]) => `${k}=${compact(v, 16)}`);
  return `${type} ${parts.join(' ')}`;
}

// ---------------------------------------------------------------- charts

function drawChart(svg, samples, series) {
  const w = Math.max(200, svg.clientWidth || 600);
  const h = Math.max(100, svg.clientHeight || 160);
  svg.setAttribute('viewBox', `0 0 ${w} ${h}`);
  svg.replaceChildren();
  const left = 44;
  const bottom = 16;
  const top = 6;
  const now = samples.length ? samples[samples.length - 1].t : Date.now();
  const t0 = now - CHART_WINDOW_S * 1000;
  const shown = samples.filter((s) => s.t >= t0);
  // At least 4, so the four grid steps are whole numbers.
  let max = 4;
  for (const s of shown)
    for (const { key } of series) if (typeof s[key] === 'number') max = Math.max(max, s[key]);
  // Four grid steps of a round size (1, 2, 2.5 or 5 times a power of ten), so the labels read well.
  const rough = max / 4;
  const mag = 10 ** Math.floor(Math.log10(rough));
  const n = rough / mag;
  const step = (n <= 1 ? 1 : n <= 2 ? 2 : n <= 2.5 ? 2.5 : n <= 5 ? 5 : 10) * mag;
  const top_ = Math.max(1, step) * 4;
  const x = (t) => left + ((t - t0) / (CHART_WINDOW_S * 1000)) * (w - left - 4);
  const y = (v) => top + (1 - v / top_) * (h - top - bottom);
  for (let i = 0; i <= 4; i++) {
    const v = (top_ * i) / 4;
    svg.append(svgEl('line', { class: 'grid', x1: left, x2: w - 4, y1: y(v), y2: y(v) }));
    const label = svgEl('text', { class: 'axis', x: left - 6, y: y(v) + 3, 'text-anchor': 'end' });
    label.textContent = fmtNumber(v);
    svg.append(label);
  }
  for (const m of [0, 1, 2, 3, 4, 5]) {
    const anchor = m === 0 ? 'start' : m === 5 ? 'end' : 'middle';
    const label = svgEl('text', { class: 'axis', x: x(t0 + m * 60_000), y: h - 3, 'text-anchor': anchor });
    label.textContent = m === 5 ? 'now' : `-${5 - m} min`;
    svg.append(label);
  }
  for (const { key, cls } of series) {
    const points = shown
      .filter((s) => typeof s[key] === 'number')
      .map((s) => `${x(s.t).toFixed(1)},${y(s[key]).toFixed(1)}`);
    if (points.length) svg.append(svgEl('polyline', { class: cls, points: points.join(' ') }));
  }
}

// ---------------------------------------------------------------- state

async function refreshMetrics() {
  const { samples } = await api(`/api/metrics-history?last=${CHART_WINDOW_S}`);
  const latest = samples[samples.length - 1];
  if (latest) {
    $('c-rate').textContent = fmtNumber(latest.ingestedPerS);
    $('c-lag').textContent = latest.lag === null ? '?' : fmtNumber(latest.lag);
    $('c-pending').textContent = fmtNumber(latest.pending + latest.gatewayPending);
    $('c-dead').textContent = fmtNumber(latest.deadLetters);
    $('c-rejected').textContent = fmtNumber(latest.rejected);
    $('c-results').textContent = fmtNumber(latest.results);
  }
  drawChart($('chart-rate'), samples, [
    { key: 'ingestedPerS', cls: 's1' },
    { key: 'resultsPerS', cls: 's2' },
  ]);
  drawChart($('chart-lag'), samples, [
    { key: 'lag', cls: 's1' },
    { key: 'pending', cls: 's3' },
    { key: 'gatewayPending', cls: 's2' },
  ]);
}

async function refreshFleet() {
  const q = $('fleet-filter').value.trim();
  const fleet = await api(`/api/fleet?limit=500${q ? `&q=${encodeURIComponent(q)}` : ''}`);
  const now = Date.now();
  const online = fleet.devices.filter((d) => d.lastSeen !== null && now - d.lastSeen < 10_000).length;
  $('c-devices').textContent = fmtNumber(fleet.total);
  $('c-online').textContent = `${online} seen in the last 10 s`;
  $('fleet-note').textContent =
    fleet.matching > fleet.devices.length ? `(showing ${fleet.devices.length} of ${fleet.matching})` : '';
  const rows = fleet.devices.map((d) => {
    const tr = el('tr', { 'data-device': d.id });
    const age = d.lastSeen === null ? Number.POSITIVE_INFINITY : now - d.lastSeen;
    const name = el('td');
    name.append(el('span', { class: `dot ${age < 10_000 ? 'live' : age < 120_000 ? 'stale' : ''}` }));
    name.append(document.createTextNode(d.id));
    tr.append(name);
    const kind = el('td');
    kind.append(el('span', { class: 'tag' }, d.kind));
    tr.append(kind);
    tr.append(el('td', { class: 'seen' }, fmtAge(d.lastSeen)));
    tr.append(el('td', {}, d.seq === null ? '–' : String(d.seq)));
    const readings = Object.entries(d.readings)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([type, r]) => fmtReading(type, r.payload));
    const cell = el('td', { class: 'readings' }, readings.join('  ·  ') || '–');
    if (d.source === 'tail') cell.title = 'from the newest stream entries (no projection state yet)';
    tr.append(cell);
    return tr;
  });
  $('fleet').tBodies[0].replaceChildren(...rows);
  const list = $('device-ids');
  list.replaceChildren(...fleet.devices.map((d) => el('option', { value: d.id })));
  drawMap(fleet.devices);
}

function drawMap(devices) {
  const svg = $('map');
  svg.replaceChildren();
  const placed = devices
    .map((d) => ({ d, p: d.readings.gps?.payload }))
    .filter(({ p }) => p && typeof p.lat === 'number' && typeof p.lon === 'number');
  if (placed.length === 0) {
    const t = svgEl('text', { x: 150, y: 150, 'text-anchor': 'middle' });
    t.textContent = 'no device reports a position';
    svg.append(t);
    return;
  }
  const lats = placed.map(({ p }) => p.lat);
  const lons = placed.map(({ p }) => p.lon);
  const midLat = (Math.min(...lats) + Math.max(...lats)) / 2;
  const k = Math.cos((midLat * Math.PI) / 180);
  const minX = Math.min(...lons) * k;
  const maxX = Math.max(...lons) * k;
  const minY = Math.min(...lats);
  const maxY = Math.max(...lats);
  const span = Math.max(maxX - minX, maxY - minY, 1e-4);
  const cx = (minX + maxX) / 2;
  const cy = (minY + maxY) / 2;
  const scale = 260 / span;
  for (const { d, p } of placed) {
    const x = 150 + (p.lon * k - cx) * scale;
    const y = 150 - (p.lat - cy) * scale;
    const c = svgEl('circle', { cx: x.toFixed(1), cy: y.toFixed(1), r: 4, class: d.kind });
    const title = svgEl('title');
    title.textContent = `${d.id}  ${p.lat.toFixed(5)}, ${p.lon.toFixed(5)}`;
    c.append(title);
    svg.append(c);
  }
}

async function refreshResults() {
  const { results } = await api('/api/results?limit=50');
  const rows = results.map((r) => {
    const tr = el('tr', { 'data-command': r.commandId ?? '' });
    if (r.malformed) {
      tr.append(
        el('td', {}, '–'),
        el('td', { colspan: 5 }, `malformed result entry ${r.entry}: ${r.malformed}`),
      );
      return tr;
    }
    tr.append(el('td', {}, fmtTime(r.finishedAt)));
    tr.append(el('td', {}, r.deviceId));
    tr.append(el('td', {}, r.name ?? '?'));
    tr.append(el('td', { class: `status-${r.status}` }, r.status));
    tr.append(el('td', {}, r.issuedAt ? `${r.finishedAt - r.issuedAt} ms` : '–'));
    const detail =
      r.status === 'succeeded' ? compact(r.output ?? null, 80) : (r.message ?? r.errorClass ?? '');
    tr.append(el('td', { class: 'readings' }, detail));
    return tr;
  });
  $('results').tBodies[0].replaceChildren(...rows);
}

// ---------------------------------------------------------------- commands

function showOutcome(text, kind, status) {
  const out = $('cmd-outcome');
  out.textContent = text;
  out.className = `outcome ${kind || ''}`;
  if (status) out.dataset.status = status;
  else delete out.dataset.status;
}

async function followCommand(deviceId, commandId, deadline) {
  const path = `/api/commands/${encodeURIComponent(deviceId)}/${encodeURIComponent(commandId)}`;
  // Until its terminal result, or a little past its deadline (the gateway's sweeper ends it by then).
  while (Date.now() < deadline + 10_000) {
    let view;
    try {
      view = await api(path);
    } catch (err) {
      showOutcome(`command ${commandId}: ${err.message}`, 'error');
      return;
    }
    if (view.result && TERMINAL.has(view.result.status)) {
      const r = view.result;
      const took = r.issuedAt ? ` in ${r.finishedAt - r.issuedAt} ms` : '';
      const detail =
        r.status === 'succeeded' ? compact(r.output ?? null, 200) : (r.message ?? r.errorClass ?? '');
      showOutcome(
        `${r.name ?? 'command'} on ${deviceId}: ${r.status}${took}${detail ? ` — ${detail}` : ''}`,
        r.status === 'succeeded' ? '' : 'error',
        r.status,
      );
      void refreshResults().catch(() => {});
      return;
    }
    showOutcome(`command ${commandId} to ${deviceId}: ${view.status}…`, '', view.status);
    await new Promise((r) => setTimeout(r, 400));
  }
  showOutcome(`command ${commandId}: no result yet; see the results list`, 'error');
}

async function onSubmit(event) {
  event.preventDefault();
  const deviceId = $('cmd-device').value.trim();
  const name = $('cmd-name').value.trim();
  const argsText = $('cmd-args').value.trim() || '{}';
  const ttl = Number($('cmd-ttl').value || '30');
  if (!deviceId) return showOutcome('choose a device (see the fleet list)', 'error');
  if (!name) return showOutcome('name a command, e.g. ping', 'error');
  let args;
  try {
    args = JSON.parse(argsText);
  } catch (err) {
    return showOutcome(`args are not valid JSON: ${err.message}`, 'error');
  }
  if (typeof args !== 'object' || args === null || Array.isArray(args)) {
    return showOutcome('args must be a JSON object, e.g. {"sensor":"gps","interval":500}', 'error');
  }
  if (!Number.isFinite(ttl) || ttl < 1 || ttl > 3600) {
    return showOutcome('time to live must be 1..3600 seconds', 'error');
  }
  const button = $('cmd-send');
  button.disabled = true;
  try {
    const sent = await api('/api/commands', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ deviceId, name, args, ttlMs: Math.round(ttl * 1000) }),
    });
    showOutcome(`sent ${sent.name} to ${sent.deviceId} (${sent.commandId}): queued…`, '', 'queued');
    await followCommand(sent.deviceId, sent.commandId, sent.deadline);
  } catch (err) {
    showOutcome(`not sent: ${err.message}`, 'error');
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------- loop

function every(ms, fn) {
  let running = false;
  const tick = async () => {
    if (running) return;
    running = true;
    try {
      await fn();
      $('status').textContent = `live · ${fmtTime(Date.now())}`;
      $('status').className = 'pill ok';
    } catch (err) {
      $('status').textContent = `gateway unreachable: ${err.message}`;
      $('status').className = 'pill bad';
    } finally {
      running = false;
    }
  };
  void tick();
  setInterval(tick, ms);
}

document.addEventListener('DOMContentLoaded', () => {
  $('command-form').addEventListener('submit', (e) => void onSubmit(e));
  $('fleet-filter').addEventListener('input', () => void refreshFleet().catch(() => {}));
  $('fleet').addEventListener('click', (e) => {
    const row = e.target.closest('tr[data-device]');
    if (row) $('cmd-device').value = row.dataset.device;
  });
  window.addEventListener('resize', () => void refreshMetrics().catch(() => {}));
  every(1000, refreshMetrics);
  every(2000, refreshFleet);
  every(2000, refreshResults);
});
