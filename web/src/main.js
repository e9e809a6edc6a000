// Palisade dashboard: a small single-page app without a framework. Pages: overview, live
// feed, events, IP drill-down, decisions, allowlist, jails, fleet agents, cloud audit; a login
// form when there is no session. Fleet views (host filters, agents) are in fleet.js.
import './style.css';
import { api, ApiError } from './api.js';
import {
  h,
  clear,
  fmtTime,
  fmtNum,
  fmtDuration,
  countryName,
  zoneLabel,
  ipLink,
  flag,
  notice,
  table,
  confirmAction,
} from './util.js';
import { eventsChart, bansChart, timelineChart } from './charts.js';
import { worldMap, mapLegend } from './map.js';
import { LOCAL_HOST, agentNames, hostSelect, hostCell, originCell, fleetDecisionTable, eventsPage, agentsPage, fleetCard } from './fleet.js';

const app = document.getElementById('app');
const top = document.getElementById('top');
const foot = document.getElementById('foot');
const healthEl = document.getElementById('health');
const menuToggle = document.getElementById('menu-toggle');
let me = null;
let cleanup = [];

// Pages refresh themselves this often (not while the tab is hidden or a field has focus).
const REFRESH_MS = Number(new URLSearchParams(location.search).get('refresh_ms')) || 30000;

function onLeave(fn) {
  cleanup.push(fn);
}

/** Runs `fn` every REFRESH_MS while the page is shown; stops when the page is left. */
function every(fn, ms = REFRESH_MS) {
  const id = setInterval(() => {
    if (document.hidden) return;
    const f = document.activeElement;
    if (f && app.contains(f) && (f.tagName === 'INPUT' || f.tagName === 'SELECT')) return;
    if (document.querySelector('dialog[open]')) return;
    fn();
  }, ms);
  onLeave(() => clearInterval(id));
}

/** The "Updated at" line of a page that refreshes itself. */
function updatedAt() {
  return h('p', { class: 'updated', id: 'updated-at' }, `Updated at ${fmtTime(new Date())} · refreshes every ${Math.round(REFRESH_MS / 1000)} s`);
}

function setMenu(open) {
  top.classList.toggle('open', open);
  menuToggle.setAttribute('aria-expanded', String(open));
}
menuToggle.addEventListener('click', () => setMenu(!top.classList.contains('open')));

function navigate(path, replace = false) {
  setMenu(false);
  if (replace) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  render();
}

document.addEventListener('click', (e) => {
  const a = e.target.closest('a');
  if (!a || a.target || e.ctrlKey || e.metaKey || e.shiftKey) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || url.pathname.startsWith('/api/')) return;
  e.preventDefault();
  navigate(url.pathname + url.search);
});
window.addEventListener('popstate', () => render());
window.addEventListener('palisade:logged-out', () => {
  // Only a session that just ended re-renders (to the login form); never loop.
  if (!me) return;
  me = null;
  render();
});

document.getElementById('logout').addEventListener('click', async () => {
  await api.logout().catch(() => {});
  me = null;
  navigate('/', true);
});
document.getElementById('search').addEventListener('submit', (e) => {
  e.preventDefault();
  const v = document.getElementById('search-ip').value.trim();
  if (v) navigate('/ips/' + encodeURIComponent(v).replace(/%3A/gi, ':'));
});

function page(title, ...body) {
  // A page redrawn in place (a refresh) keeps the reader's scroll position.
  const y = window.scrollY;
  const redraw = app.firstChild && app.querySelector('h1')?.textContent === title;
  clear(app);
  app.append(h('h1', {}, title), ...body);
  if (redraw && y) window.scrollTo(0, y);
}

function errorBox(err) {
  return h('div', { class: 'notice error', role: 'alert' }, err instanceof ApiError ? err.message : String(err));
}

// What the pages in other modules (fleet.js) use of this one.
const ctx = {
  app,
  page,
  navigate,
  errorBox,
  updatedAt,
  every,
  me: () => me,
  leave: () => {
    for (const f of cleanup.splice(0)) f();
  },
};

// ---------------------------------------------------------------------------------------
// Login

function loginView() {
  top.hidden = true;
  const msg = h('p', { class: 'login-error', role: 'alert' });
  const user = h('input', { id: 'username', name: 'username', autocomplete: 'username', required: true });
  const pass = h('input', {
    id: 'password',
    name: 'password',
    type: 'password',
    autocomplete: 'current-password',
    required: true,
  });
  const form = h(
    'form',
    { id: 'login-form', class: 'login' },
    h('h1', {}, 'Palisade'),
    h('label', { for: 'username' }, 'User'),
    user,
    h('label', { for: 'password' }, 'Password'),
    pass,
    h('button', { type: 'submit' }, 'Log in'),
    msg,
    h(
      'p',
      { class: 'login-hint', id: 'login-hint' },
      'First time? The daemon created the user ',
      h('code', {}, 'admin'),
      ' at its first start and wrote its one-time password to its log: ',
      h('code', {}, 'journalctl -u palisade | grep password'),
      '. To set a password of your own, run ',
      h('code', {}, 'palisade user add admin'),
      ' on the server.',
    ),
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    msg.textContent = '';
    try {
      me = await api.login(user.value, pass.value);
      render();
    } catch (err) {
      msg.textContent = err.status === 429 ? 'Too many attempts; wait a few minutes.' : 'Wrong user name or password.';
    }
  });
  clear(app).append(form);
  user.focus();
}

// ---------------------------------------------------------------------------------------
// Overview

async function overview(refresh = false) {
  const range = new URLSearchParams(location.search).get('range') || '24h';
  const ranges = h(
    'div',
    { class: 'ranges' },
    ['24h', '7d', '30d'].map((r) => h('a', { href: '/?range=' + r, class: r === range ? 'on' : '' }, r)),
  );
  if (!refresh) page('Overview', ranges, h('p', { class: 'loading' }, 'Loading…'));
  let s;
  let fleet;
  try {
    [s, fleet] = await Promise.all([api.get('/stats?range=' + encodeURIComponent(range)), fleetCard()]);
  } catch (e) {
    if (!refresh) app.append(errorBox(e));
    return;
  }
  // A refresh replaces the page only when the user is still on it.
  if (refresh && location.pathname !== '/') return;
  for (const f of cleanup.splice(0)) f();
  const t = s.totals;
  const card = (label, value, cls = '') =>
    h('div', { class: 'card ' + cls }, h('div', { class: 'value' }, value), h('div', { class: 'label' }, label));
  const worst = s.most_offending_ip;
  const canvas = h('canvas', { id: 'overview-chart' });
  const bansCanvas = h('canvas', { id: 'bans-chart' });
  const mapEl = h('div', { id: 'world-map', class: 'map' });
  page(
    'Overview',
    ranges,
    updatedAt(),
    h(
      'div',
      { class: 'cards' },
      card('Events', fmtNum(t.events)),
      card('Failures', fmtNum(t.failures)),
      card('Bans', fmtNum(t.bans)),
      card('Active bans', fmtNum(t.active_bans), 'accent'),
      h(
        'div',
        { class: 'card worst', id: 'most-offending' },
        h('div', { class: 'value' }, worst ? [flag(worst.country), ' ', ipLink(worst.ip)] : '—'),
        h('div', { class: 'label' }, worst ? `Most offending IP · ${fmtNum(worst.failures)} failures` : 'Most offending IP'),
      ),
    ),
    fleet,
    h(
      'div',
      { class: 'cols' },
      h('section', {}, h('h2', {}, `Events and failures (${s.range}, per ${s.bucket})`), h('div', { class: 'chart' }, canvas)),
      h('section', {}, h('h2', {}, `Bans (${s.range}, per ${s.bucket})`), h('div', { class: 'chart' }, bansCanvas)),
    ),
    h(
      'div',
      { class: 'cols' },
      h(
        'section',
        {},
        h('h2', {}, 'Top offenders'),
        table(
          [
            { title: 'IP', cell: (r) => ipLink(r.ip) },
            { title: 'Country', cell: (r) => (r.country ? h('span', { title: countryName(r.country) }, r.country) : '') },
            { title: 'Failures', cls: 'num', cell: (r) => fmtNum(r.failures) },
            { title: 'Bans', cls: 'num', cell: (r) => fmtNum(r.times_banned) },
            { title: 'Last seen', cls: 'time', cell: (r) => fmtTime(r.last_seen) },
          ],
          s.top_ips,
          'No offenders in this range.',
        ),
      ),
      h(
        'section',
        {},
        h('h2', {}, 'Top jails'),
        table(
          [
            { title: 'Jail', cell: (r) => r.jail },
            { title: 'Events', cls: 'num', cell: (r) => fmtNum(r.events) },
            { title: 'Failures', cls: 'num', cell: (r) => fmtNum(r.failures) },
          ],
          s.top_jails,
          'No events in this range.',
        ),
      ),
    ),
    h(
      'section',
      {},
      h('h2', {}, 'Countries'),
      h(
        'div',
        { class: 'cols map-row' },
        h('div', {}, mapEl, s.top_countries.length ? mapLegend(s.top_countries) : null),
        table(
          [
            { title: 'Country', cell: (r) => `${countryName(r.country)} (${r.country})` },
            { title: 'Failures', cls: 'num', cell: (r) => fmtNum(r.failures) },
            { title: 'Addresses', cls: 'num', cell: (r) => fmtNum(r.addresses) },
          ],
          s.top_countries.slice(0, 12),
          'No country data (no GeoIP database, or no offenders).',
        ),
      ),
    ),
  );
  const chart = eventsChart(canvas, s);
  const chart2 = bansChart(bansCanvas, s);
  onLeave(() => {
    chart.destroy();
    chart2.destroy();
  });
  try {
    const m = worldMap(mapEl, s.top_countries);
    onLeave(() => m.destroy && m.destroy());
  } catch (e) {
    mapEl.textContent = 'Map unavailable.';
  }
  every(() => overview(true));
  // For bench/api/paint.mjs: when the overview's chart and map are drawn (Chart.js draws
  // synchronously with animations off).
  performance.mark('palisade:overview-drawn');
}

// ---------------------------------------------------------------------------------------
// Live feed

function feedRow(kind, d) {
  if (kind === 'event') {
    return h(
      'tr',
      { class: 'feed-' + kind },
      h('td', {}, fmtTime(d.time)),
      h('td', {}, hostCell(d.host)),
      h('td', {}, h('span', { class: 'badge ' + (d.failure ? 'warn' : '') }, d.failure ? 'failure' : 'event')),
      h('td', {}, d.jail),
      h('td', {}, ipLink(d.ip), d.country ? ` ${flag(d.country)}` : ''),
      h('td', {}, d.rule + (d.user ? ` (user ${d.user})` : '')),
    );
  }
  if (kind === 'fleet_decision') {
    return h(
      'tr',
      { class: 'feed-' + kind },
      h('td', {}, fmtTime(new Date().toISOString())),
      h('td', {}, d.origin ? hostCell(d.origin) : h('span', { class: 'muted' }, 'fleet server')),
      h('td', {}, originCell('fleet'), ' ', h('span', { class: 'badge ' + (d.action === 'ban' ? 'bad' : 'ok') }, d.action)),
      h('td', {}, d.jail),
      h('td', {}, ipLink(d.target)),
      h('td', {}, `${d.reason} · ${d.scope ? 'to ' + d.scope.join(', ') : 'to all agents'}`),
    );
  }
  const dec = d.decision;
  return h(
    'tr',
    { class: 'feed-' + kind },
    h('td', {}, fmtTime(kind === 'ban' ? dec.created : new Date().toISOString())),
    h('td', {}, hostCell(null)),
    h('td', {}, dec.origin === 'fleet' ? [originCell('fleet'), ' '] : '', h('span', { class: 'badge ' + (kind === 'ban' ? 'bad' : 'ok') }, kind)),
    h('td', {}, dec.jail),
    h('td', {}, ipLink(dec.target)),
    h('td', {}, kind === 'ban' ? dec.reason : `lifted (${d.reason})`),
  );
}

async function live() {
  const host = new URLSearchParams(location.search).get('host') || '';
  const names = await agentNames();
  if (location.pathname !== '/live') return;
  const hostFilter = hostSelect(names, host);
  hostFilter.addEventListener('change', () => navigate('/live' + (hostFilter.value ? '?host=' + encodeURIComponent(hostFilter.value) : '')));
  const waiting = h(
    'tr',
    { id: 'feed-waiting' },
    h('td', { colspan: 6, class: 'empty' }, 'Waiting for events… New log lines, bans and unbans appear here as they happen.'),
  );
  const body = h('tbody', { id: 'feed-rows' }, waiting);
  const state = h('span', { id: 'feed-state', class: 'badge' }, 'connecting');
  page(
    'Live feed',
    h('p', {}, 'Events and decisions as they happen. ', state),
    h('form', { class: 'inline', id: 'feed-filters', onsubmit: (e) => e.preventDefault() }, hostFilter),
    h(
      'div',
      { class: 'table-wrap' },
      h(
        'table',
        { id: 'feed' },
        h('thead', {}, h('tr', {}, ['Time', 'Host', 'Kind', 'Jail', 'IP', 'What'].map((t) => h('th', {}, t)))),
        body,
      ),
    ),
  );
  const es = new EventSource('/api/v1/feed' + (host ? '?host=' + encodeURIComponent(host) : ''));
  const add = (kind) => (msg) => {
    let d;
    try {
      d = JSON.parse(msg.data);
    } catch {
      return;
    }
    waiting.remove();
    body.prepend(feedRow(kind, d));
    while (body.children.length > 300) body.lastChild.remove();
  };
  es.addEventListener('open', () => {
    state.textContent = 'live';
    state.className = 'badge ok';
  });
  es.addEventListener('error', () => {
    state.textContent = 'reconnecting';
    state.className = 'badge warn';
  });
  for (const k of ['event', 'ban', 'unban', 'fleet_decision']) es.addEventListener(k, add(k));
  es.addEventListener('lagged', (m) => notice(app, `Skipped ${m.data} items (too many at once).`, 'info'));
  onLeave(() => es.close());
}

// ---------------------------------------------------------------------------------------
// IP drill-down

async function confirmUnban(d, onUnban) {
  const ok = await confirmAction(
    `Unban ${d.target}? Every ban in force on it (from any jail) is lifted and the firewall lets it in again.`,
    'Unban',
  );
  if (ok) onUnban(d);
}

function decisionTable(rows, onUnban) {
  return table(
    [
      { title: 'Target', cell: (r) => ipLink(r.target) },
      { title: 'Jail', cell: (r) => r.jail },
      { title: 'Origin', cell: (r) => originCell(r.origin) },
      { title: 'Host', cell: (r) => hostCell(r.host) },
      { title: 'Status', cell: (r) => h('span', { class: 'badge ' + (r.in_force ? 'bad' : '') }, r.in_force ? 'in force' : r.status) },
      { title: 'Created', cls: 'time', cell: (r) => fmtTime(r.created) },
      { title: 'Expires', cls: 'time', cell: (r) => (r.expires ? fmtTime(r.expires) : 'never') },
      { title: 'Reason', cell: (r) => (r.simulated ? '[simulated] ' : '') + r.reason },
      {
        title: '',
        cell: (r) =>
          r.in_force && onUnban
            ? h('button', { class: 'unban', 'data-target': r.target, onclick: () => confirmUnban(r, onUnban) }, 'Unban')
            : '',
      },
    ],
    rows,
    'No decisions.',
  );
}

function banForm(defaultTarget, done) {
  const target = h('input', { name: 'target', value: defaultTarget || '', placeholder: 'IP or CIDR', required: true });
  const dur = h('input', { name: 'duration', value: '1h', placeholder: '1h, 1d, empty = forever', size: 10 });
  const reason = h('input', { name: 'reason', placeholder: 'Reason', size: 24 });
  const f = h('form', { class: 'inline', id: 'ban-form' }, target, dur, reason, h('button', { type: 'submit' }, 'Ban'));
  f.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      await api.post('/decisions', { target: target.value, duration: dur.value || null, reason: reason.value || null });
      notice(app, `Banned ${target.value}.`, 'info');
      done();
    } catch (err) {
      notice(app, err.message);
    }
  });
  return f;
}

// The IP page's events: the latest ones come with the page; older ones are fetched a page
// at a time from /events with the cursor.
function recentEvents(ip, rows, cursor) {
  const columns = [
    { title: 'Time', cls: 'time', cell: (r) => fmtTime(r.time) },
    { title: 'Jail', cell: (r) => r.jail },
    { title: 'Rule', cell: (r) => r.rule + (r.user ? ` (user ${r.user})` : '') },
    { title: 'Log line', cls: 'evidence', cell: (r) => r.evidence || '…' },
  ];
  const section = h('section', { id: 'recent-events' });
  const render = () => {
    clear(section).append(
      h('h2', {}, 'Recent events'),
      table(columns, rows, 'No events.'),
      ...(cursor != null ? [h('button', { id: 'older-events', onclick: older }, 'Older events')] : []),
    );
  };
  const older = async () => {
    try {
      const q = new URLSearchParams({ ip, cursor: String(cursor), limit: '50' });
      const p = await api.get('/events?' + q);
      rows = rows.concat(p.items);
      cursor = p.next_cursor;
      render();
    } catch (err) {
      notice(app, err.message);
    }
  };
  render();
  return section;
}

// `refresh`: false (first load), 'reload' (after a ban or unban), 'auto' (the timer).
async function ipPage(ip, refresh = false) {
  const here = location.pathname;
  if (!refresh) page('IP ' + ip, h('p', { class: 'loading' }, 'Loading…'));
  let d;
  try {
    d = await api.get('/ips/' + encodeURIComponent(ip));
  } catch (e) {
    if (!refresh) page('IP ' + ip, errorBox(e));
    return;
  }
  if (location.pathname !== here) return;
  // Nothing typed into the ban form is thrown away by a refresh.
  if (refresh === 'auto' && [...app.querySelectorAll('#ban-form input[name=reason]')].some((i) => i.value)) return;
  for (const f of cleanup.splice(0)) f();
  const reload = () => ipPage(ip, 'reload');
  const unban = async (r) => {
    try {
      const res = await api.del('/decisions/' + r.id);
      notice(app, `Lifted ${res.result.lifted ?? 0} ban(s) of ${r.target}.`, 'info');
      reload();
    } catch (err) {
      notice(app, err.message);
    }
  };
  const g = d.geo || {};
  const hist = d.history;
  const where = [g.country && (g.country_name || countryName(g.country)), g.city, g.asn && `AS${g.asn} ${g.as_org || ''}`]
    .filter(Boolean)
    .join(' · ');
  const canvas = h('canvas', { id: 'ip-timeline' });
  page(
    'IP ' + d.ip,
    h(
      'div',
      { class: 'cards' },
      h('div', { class: 'card' }, h('div', { class: 'value' }, where || '—'), h('div', { class: 'label' }, 'Location')),
      h('div', { class: 'card' }, h('div', { class: 'value' }, fmtNum(hist?.failures)), h('div', { class: 'label' }, 'Failures')),
      h('div', { class: 'card' }, h('div', { class: 'value' }, fmtNum(hist?.times_banned)), h('div', { class: 'label' }, 'Bans')),
      h('div', { class: 'card' }, h('div', { class: 'value small' }, fmtTime(hist?.first_seen)), h('div', { class: 'label' }, 'First seen')),
      h('div', { class: 'card' }, h('div', { class: 'value small' }, fmtTime(hist?.last_seen)), h('div', { class: 'label' }, 'Last seen')),
    ),
    h(
      'section',
      { id: 'current-ban' },
      h('h2', {}, 'Ban'),
      d.current_ban
        ? h(
            'p',
            { class: 'banned' },
            h('span', { class: 'badge bad' }, 'banned'),
            ` ${d.current_ban.target} by ${d.current_ban.jail} until ${d.current_ban.expires ? fmtTime(d.current_ban.expires) : 'forever'} — ${d.current_ban.reason} `,
            h('button', { id: 'unban-current', class: 'unban', onclick: () => confirmUnban(d.current_ban, unban) }, 'Unban'),
          )
        : h('div', {}, h('p', { class: 'not-banned' }, 'Not banned.'), banForm(d.ip, reload)),
    ),
    h(
      'div',
      { class: 'cols' },
      h(
        'section',
        {},
        h('h2', {}, 'Jails'),
        table(
          [
            { title: 'Jail', cell: (r) => r.jail },
            { title: 'Events', cls: 'num', cell: (r) => fmtNum(r.events) },
          ],
          d.jails,
          'Never seen.',
        ),
      ),
      h('section', {}, h('h2', {}, 'Events per hour (last 30 days)'), h('div', { class: 'chart small' }, canvas)),
    ),
    h('section', {}, h('h2', {}, 'Decisions'), decisionTable(d.decisions, unban)),
    recentEvents(ip, d.recent_events, d.recent_events_cursor),
  );
  app.querySelector('h1').after(updatedAt());
  const c = timelineChart(canvas, d.timeline);
  onLeave(() => c.destroy());
  every(() => ipPage(ip, 'auto'));
}

// ---------------------------------------------------------------------------------------
// Decisions

async function decisions() {
  const q = new URLSearchParams(location.search);
  const names = await agentNames();
  if (location.pathname !== '/decisions') return;
  const host = hostSelect(names, q.get('host'));
  const status = h(
    'select',
    { name: 'status' },
    ['active', 'all'].map((s) => h('option', { value: s, selected: q.get('status') === s }, s)),
  );
  const ip = h('input', { name: 'ip', value: q.get('ip') || '', placeholder: 'IP or CIDR' });
  const jail = h('input', { name: 'jail', value: q.get('jail') || '', placeholder: 'jail' });
  const origin = h(
    'select',
    { name: 'origin' },
    ['', 'jail', 'recidive', 'manual', 'fail2ban', 'fleet', 'remote'].map((o) =>
      h('option', { value: o, selected: (q.get('origin') || '') === o }, o || 'any origin'),
    ),
  );
  const filters = h(
    'form',
    { class: 'inline', id: 'decision-filters' },
    names.length || q.get('host') ? host : '',
    status,
    ip,
    jail,
    origin,
    h('button', { type: 'submit' }, 'Filter'),
  );
  filters.addEventListener('submit', (e) => {
    e.preventDefault();
    const p = new URLSearchParams();
    for (const el of [host, status, ip, jail, origin]) if (el.value) p.set(el.name, el.value);
    navigate('/decisions?' + p);
  });
  const list = h('div', { id: 'decision-list' }, h('p', { class: 'loading' }, 'Loading…'));
  const fleetList = h('section', { id: 'fleet-decisions' });
  page('Decisions', filters, h('section', {}, h('h2', {}, 'Ban an address'), banForm('', () => decisions())), list, fleetList);
  const p = new URLSearchParams();
  p.set('status', q.get('status') || 'active');
  for (const k of ['ip', 'jail', 'origin', 'host']) if (q.get(k)) p.set(k, q.get(k));
  p.set('limit', '500');
  // The fleet ban log (a fleet server's bans of its agents), by host, when there are agents.
  const fp = new URLSearchParams({ status: q.get('status') || 'active', limit: '500' });
  if (q.get('host')) fp.set('host', q.get('host'));
  const showFleet = (names.length || q.get('host')) && q.get('host') !== LOCAL_HOST && !q.get('ip') && !q.get('jail');
  const load = async () => {
    const [d, f] = await Promise.all([api.get('/decisions?' + p), showFleet ? api.get('/fleet/decisions?' + fp) : null]);
    if (f) clear(fleetList).append(h('h2', {}, 'Fleet bans'), fleetDecisionTable(f.items, 'No fleet bans match.'));
    const shown = d.items.length;
    clear(list).append(
      updatedAt(),
      d.next_cursor != null || shown >= 500
        ? h('p', { class: 'notice info' }, `Showing the latest ${fmtNum(shown)} decisions; narrow the filter to see older ones.`)
        : h('p', { class: 'count' }, `${fmtNum(shown)} decision${shown === 1 ? '' : 's'}.`),
      decisionTable(d.items, async (r) => {
        try {
          await api.del('/decisions/' + r.id);
          notice(app, `Lifted the bans of ${r.target}.`, 'info');
          decisions();
        } catch (err) {
          notice(app, err.message);
        }
      }),
    );
  };
  try {
    await load();
  } catch (e) {
    clear(list).append(errorBox(e));
  }
  every(() => load().catch(() => {}));
}

// ---------------------------------------------------------------------------------------
// Allowlist

async function allowlist() {
  const net = h('input', { name: 'net', placeholder: 'IP or CIDR', required: true });
  const comment = h('input', { name: 'comment', placeholder: 'Comment', size: 30 });
  const form = h('form', { class: 'inline', id: 'allow-form' }, net, comment, h('button', { type: 'submit' }, 'Add'));
  const list = h('div', { id: 'allow-list' });
  const show = (d) => {
    clear(list).append(
      d.daemon_updated ? '' : h('p', { class: 'notice info' }, 'The running daemon could not be updated; the list applies at its next start.'),
      table(
        [
          { title: 'Network', cell: (r) => r.net },
          { title: 'Comment', cell: (r) => r.comment },
          { title: 'Added', cls: 'time', cell: (r) => fmtTime(r.created) },
          {
            title: '',
            cell: (r) =>
              h(
                'button',
                {
                  class: 'danger',
                  'data-net': r.net,
                  onclick: async () => {
                    const ok = await confirmAction(
                      `Remove ${r.net} from the allowlist? Addresses in it can be banned again.`,
                      'Remove',
                    );
                    if (!ok) return;
                    try {
                      show(await api.del('/allowlist/' + r.id));
                    } catch (err) {
                      notice(app, err.message);
                    }
                  },
                },
                'Remove',
              ),
          },
        ],
        d.items,
        'No entries in the database (the configuration file may have more).',
      ),
    );
  };
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      show(await api.post('/allowlist', { net: net.value, comment: comment.value }));
      net.value = '';
      comment.value = '';
    } catch (err) {
      notice(app, err.message);
    }
  });
  page(
    'Allowlist',
    h('p', {}, 'Addresses and networks that are never banned. Entries from the configuration file apply as well.'),
    form,
    list,
  );
  try {
    show(await api.get('/allowlist'));
  } catch (e) {
    list.append(errorBox(e));
  }
}

// ---------------------------------------------------------------------------------------
// Jails

// Sources as the daemon reports them: strings, or objects with a path/name, state and
// counters. Fields the daemon does not send are left out.
function sourceLabel(src) {
  if (typeof src === 'string') return src;
  return src.path || src.file || src.name || src.unit || (src.journal && [].concat(src.journal).join(' ')) || src.kind || 'source';
}

function sourceState(src) {
  if (typeof src !== 'object' || !src) return null;
  return src.state || src.status || null;
}

const GOOD_STATES = new Set(['ok', 'reading', 'open', 'active', 'running', 'live', 'following']);

function stateBadge(state) {
  if (!state) return '';
  const cls = GOOD_STATES.has(String(state).toLowerCase()) ? 'ok' : 'bad';
  return h('span', { class: 'badge ' + cls }, String(state));
}

function sourcesOf(jail, all) {
  let list = jail.sources || [].concat(jail.files || [], jail.journal ? [].concat(jail.journal).map((m) => `journald ${m}`) : []);
  if ((!list || !list.length) && Array.isArray(all)) list = all.filter((x) => x && (x.jail === jail.name || (x.jails || []).includes(jail.name)));
  return list || [];
}

function sourceCell(list) {
  if (!list.length) return '—';
  return h(
    'ul',
    { class: 'sources' },
    list.map((src) =>
      h(
        'li',
        {},
        h('code', {}, sourceLabel(src)),
        ' ',
        stateBadge(sourceState(src)),
        typeof src === 'object' && src.lines != null ? ` ${fmtNum(src.lines)} lines` : '',
        typeof src === 'object' && src.error ? h('div', { class: 'source-error' }, src.error) : '',
      ),
    ),
  );
}

function limitsCell(r) {
  if (r.max_retry == null && r.find_time == null && r.ban_time === undefined) return '—';
  const ft = typeof r.find_time === 'number' ? fmtDuration(r.find_time) : r.find_time;
  const bt = r.ban_time === null ? 'forever' : typeof r.ban_time === 'number' ? fmtDuration(r.ban_time) : r.ban_time;
  return `${r.max_retry ?? '?'} failures in ${ft ?? '?'} → ban ${bt ?? '?'}`;
}

async function jails(refresh = false) {
  const q = new URLSearchParams(location.search).get('q') || '';
  if (!refresh) page('Jails', h('p', { class: 'loading' }, 'Loading…'));
  let d;
  try {
    d = await api.get('/jails');
  } catch (e) {
    if (!refresh) page('Jails', errorBox(e));
    return;
  }
  if (location.pathname !== '/jails') return;
  for (const f of cleanup.splice(0)) f();
  const c = d.counters || {};
  // Jails the daemon skipped (bad filter…) are listed with why.
  const skipped = (c.jail_errors || []).map((msg) => {
    const m = String(msg).match(/^jail "([^"]+)"/);
    return { name: m ? m[1] : '?', state: 'skipped', error: String(msg) };
  });
  const rows = [...(d.jails || []).map((j) => ({ state: j.state || (j.dry_run ? 'dry run' : 'running'), ...j })), ...skipped];
  const filter = h('input', { id: 'jail-filter', type: 'search', placeholder: 'Filter jails…', value: q, 'aria-label': 'Filter jails' });
  const list = h('div', { id: 'jail-list' });
  const show = () => {
    const needle = filter.value.trim().toLowerCase();
    const shown = rows.filter(
      (r) =>
        !needle ||
        r.name.toLowerCase().includes(needle) ||
        String(r.filter || '').toLowerCase().includes(needle) ||
        sourcesOf(r, d.sources).some((x) => sourceLabel(x).toLowerCase().includes(needle)),
    );
    clear(list).append(
      table(
        [
          { title: 'Jail', cell: (r) => h('strong', {}, r.name) },
          { title: 'State', cell: (r) => [stateBadge(r.state), r.error ? h('div', { class: 'source-error' }, r.error) : ''] },
          // Older daemons do not report filters: no empty column then.
          ...(rows.some((r) => r.filter) ? [{ title: 'Filter', cell: (r) => r.filter || '—' }] : []),
          { title: 'Sources', cell: (r) => sourceCell(sourcesOf(r, d.sources)) },
          { title: 'Limits', cell: limitsCell },
          { title: 'Failures', cls: 'num', cell: (r) => (r.failures == null ? '—' : fmtNum(r.failures)) },
          { title: 'Bans', cls: 'num', cell: (r) => (r.detections == null ? '—' : fmtNum(r.detections)) },
          { title: 'Tracked', cls: 'num', cell: (r) => (r.tracked == null ? '—' : fmtNum(r.tracked)) },
        ],
        shown,
        needle ? `No jail matches “${filter.value}”.` : 'No jails enabled.',
      ),
    );
  };
  filter.addEventListener('input', () => {
    const u = new URL(location.href);
    if (filter.value) u.searchParams.set('q', filter.value);
    else u.searchParams.delete('q');
    history.replaceState(null, '', u.pathname + u.search);
    show();
  });
  page(
    'Jails',
    updatedAt(),
    h(
      'div',
      { class: 'cards' },
      [
        ['Lines read', c.lines],
        ['Events', c.events],
        ['Decisions', c.decisions],
        ['Active bans', d.active_bans],
        ['Responder errors', c.responder_errors, c.responder_errors ? 'alert' : ''],
        ['Source errors', c.source_errors, c.source_errors ? 'alert' : ''],
      ].map(([l, v, cls]) =>
        h('div', { class: 'card ' + (cls || '') }, h('div', { class: 'value' }, fmtNum(v)), h('div', { class: 'label' }, l)),
      ),
    ),
    h('form', { class: 'inline', onsubmit: (e) => e.preventDefault() }, filter),
    list,
  );
  show();
  every(() => jails(true));
}


// ---------------------------------------------------------------------------------------
// Cloud audit

const SEVERITIES = ['critical', 'high', 'medium', 'low'];

function sevBadge(s) {
  return h('span', { class: 'badge sev-' + s }, s);
}

function kindBadge(k) {
  return h('span', { class: 'badge ' + (k === 'new' ? 'bad' : k === 'changed' ? 'warn' : 'ok') }, k);
}

/** A JSON value as short text (never "null"). */
function fmtValue(v) {
  if (v === null || v === undefined) return '—';
  if (Array.isArray(v)) return v.length ? v.map(fmtValue).join(', ') : '(none)';
  if (typeof v === 'object') {
    const parts = Object.entries(v)
      .filter(([, x]) => x !== null && x !== undefined)
      .map(([k, x]) => `${k}: ${fmtValue(x)}`);
    return parts.length ? parts.join('; ') : '(none)';
  }
  return String(v);
}

function historyHref(key) {
  return '/audit?key=' + encodeURIComponent(key);
}

/** What changed in a finding: one row per path, the old value struck out, the new one added. */
function diffView(entries) {
  return h(
    'table',
    { class: 'diff' },
    h(
      'tbody',
      {},
      entries.map((d) =>
        h(
          'tr',
          {},
          h('th', { scope: 'row' }, d.path || '(value)'),
          h('td', {}, 'before' in d ? h('del', {}, '− ' + fmtValue(d.before)) : ''),
          h('td', {}, 'after' in d ? h('ins', {}, '+ ' + fmtValue(d.after)) : ''),
        ),
      ),
    ),
  );
}

function eventChange(e) {
  if (e.kind === 'changed' && e.diff && e.diff.length) return diffView(e.diff);
  return h('span', { class: 'data' }, fmtValue(e.data));
}

async function auditHistory(key, box) {
  const d = await api.get('/audit/events?limit=200&key=' + encodeURIComponent(key));
  const f = d.finding;
  const first = d.items[d.items.length - 1];
  const about = f || first;
  clear(box).append(
    h('h2', {}, 'Finding history'),
    about
      ? h(
          'div',
          { class: 'finding-head' },
          h('p', {}, sevBadge(about.severity), ' ', h('strong', {}, about.rule), ' · ', about.subject, about.detail ? ` · ${about.detail}` : '', ` · ${about.region} · ${about.account}`),
          f ? '' : h('p', { class: 'notice info' }, 'Resolved: this finding is no longer open.'),
          about.explanation ? h('p', {}, about.explanation) : '',
          about.remediation ? h('p', { class: 'remediation' }, 'Fix: ', about.remediation) : '',
          f ? h('p', { class: 'data' }, 'Now: ', fmtValue(f.data)) : '',
        )
      : h('p', { class: 'empty' }, 'No history for this finding.'),
    table(
      [
        { title: 'Time', cls: 'time', cell: (r) => fmtTime(r.time) },
        { title: 'Event', cell: (r) => kindBadge(r.kind) },
        { title: 'Severity', cell: (r) => sevBadge(r.severity) },
        { title: 'What changed', cell: eventChange },
      ],
      d.items,
      'No events.',
    ),
    h('p', {}, h('a', { href: '/audit' }, 'All findings')),
  );
}

async function audit() {
  const q = new URLSearchParams(location.search);
  const key = q.get('key');
  const severity = h(
    'select',
    { name: 'severity' },
    ['', ...SEVERITIES].map((s) => h('option', { value: s, selected: (q.get('severity') || '') === s }, s || 'any severity')),
  );
  const rule = h('input', { name: 'rule', value: q.get('rule') || '', placeholder: 'rule id' });
  const filters = h('form', { class: 'inline', id: 'audit-filters' }, severity, rule, h('button', { type: 'submit' }, 'Filter'));
  filters.addEventListener('submit', (e) => {
    e.preventDefault();
    const p = new URLSearchParams();
    for (const el of [severity, rule]) if (el.value.trim()) p.set(el.name, el.value.trim());
    navigate('/audit' + (p.toString() ? '?' + p : ''));
  });
  const summary = h('div', { id: 'audit-summary' }, h('p', { class: 'loading' }, 'Loading…'));
  const historyBox = h('section', { id: 'audit-history' });
  const findingsBox = h('section', { id: 'audit-findings' });
  const eventsBox = h('section', { id: 'audit-events' });
  const runsBox = h('section', { id: 'audit-runs' });
  page('Cloud audit', summary, key ? historyBox : '', filters, findingsBox, eventsBox, runsBox);
  const fp = new URLSearchParams();
  for (const k of ['severity', 'rule']) if (q.get(k)) fp.set(k, q.get(k));
  const load = async () => {
    const [fl, ev, rl] = await Promise.all([
      api.get('/audit/findings' + (fp.toString() ? '?' + fp : '')),
      api.get('/audit/events?limit=50'),
      api.get('/audit/runs?limit=10'),
    ]);
    const last = rl.items[0];
    const card = (label, value, cls = '', href = null) =>
      h(
        href ? 'a' : 'div',
        { class: 'card ' + cls, href, 'data-severity': href ? label.toLowerCase() : null },
        h('div', { class: 'value' }, value),
        h('div', { class: 'label' }, label),
      );
    clear(summary).append(
      updatedAt(),
      h(
        'div',
        { class: 'cards' },
        SEVERITIES.map((s) =>
          card(s[0].toUpperCase() + s.slice(1), fmtNum(fl.by_severity[s] || 0), (fl.by_severity[s] && (s === 'critical' || s === 'high') ? 'alert ' : '') + 'sev-card', '/audit?severity=' + s),
        ),
        h(
          'div',
          { class: 'card', id: 'audit-last-run' },
          h('div', { class: 'value small' }, last ? fmtTime(last.started) : 'never'),
          h(
            'div',
            { class: 'label' },
            last
              ? [
                  'Last run · ',
                  last.ok ? h('span', { class: 'badge ok' }, 'ok') : h('span', { class: 'badge bad' }, 'failed'),
                  last.ok ? ` · ${last.new} new, ${last.changed} changed, ${last.resolved} resolved` : '',
                ]
              : 'Last run',
          ),
        ),
      ),
      !last
        ? h('p', { class: 'notice info' }, 'No audit has run yet: set [audit] interval for palisade run, or run palisade audit run --once.')
        : !last.ok
          ? h('div', { class: 'notice error', role: 'alert' }, 'The last audit run failed: ', last.errors.join('; '), '. Open findings are kept as they were.')
          : last.errors.length
            ? h('div', { class: 'notice info' }, `${last.errors.length} check${last.errors.length === 1 ? '' : 's'} errored in the last run (their findings stay open): `, last.errors.slice(0, 3).join('; '))
            : '',
    );
    const groups = SEVERITIES.map((s) => [s, fl.items.filter((f) => f.severity === s)]).filter(([, l]) => l.length);
    clear(findingsBox).append(
      h('h2', {}, 'Open findings'),
      fl.total > fl.items.length
        ? h('p', { class: 'notice info' }, `Showing ${fmtNum(fl.items.length)} of ${fmtNum(fl.total)} findings; narrow the filter to see the others.`)
        : h('p', { class: 'count' }, `${fmtNum(fl.total)} open finding${fl.total === 1 ? '' : 's'}.`),
      ...(groups.length
        ? groups.map(([s, list]) =>
            h(
              'div',
              { class: 'sev-group', 'data-severity': s },
              h('h3', {}, sevBadge(s), ` ${fmtNum(list.length)}`),
              table(
                [
                  { title: 'Rule', cell: (r) => h('span', { title: r.explanation || null }, r.rule) },
                  { title: 'Resource', cell: (r) => r.subject },
                  { title: 'Detail', cell: (r) => r.detail || '—' },
                  { title: 'Region', cell: (r) => r.region },
                  { title: 'Account', cell: (r) => r.account },
                  { title: 'First seen', cls: 'time', cell: (r) => fmtTime(r.first_seen) },
                  { title: '', cell: (r) => h('a', { href: historyHref(r.key), class: 'history' }, 'History') },
                ],
                list,
              ),
            ),
          )
        : [h('p', { class: 'empty' }, q.get('severity') || q.get('rule') ? 'No open finding matches the filter.' : 'No open findings.')]),
    );
    clear(eventsBox).append(
      h('h2', {}, 'Recent changes'),
      table(
        [
          { title: 'Time', cls: 'time', cell: (r) => fmtTime(r.time) },
          { title: 'Event', cell: (r) => kindBadge(r.kind) },
          { title: 'Severity', cell: (r) => sevBadge(r.severity) },
          { title: 'Rule', cell: (r) => r.rule },
          { title: 'Resource', cell: (r) => h('a', { href: historyHref(r.key) }, r.subject + (r.detail ? ` · ${r.detail}` : '')) },
          { title: 'What changed', cell: eventChange },
        ],
        ev.items,
        'No changes recorded yet.',
      ),
    );
    clear(runsBox).append(
      h('h2', {}, 'Runs'),
      table(
        [
          { title: 'Started', cls: 'time', cell: (r) => fmtTime(r.started) },
          { title: 'Status', cell: (r) => (r.ok ? h('span', { class: 'badge ok' }, 'ok') : h('span', { class: 'badge bad' }, 'failed')) },
          { title: 'Accounts', cell: (r) => r.accounts.join(', ') || '—' },
          { title: 'New', cls: 'num', cell: (r) => fmtNum(r.new) },
          { title: 'Changed', cls: 'num', cell: (r) => fmtNum(r.changed) },
          { title: 'Resolved', cls: 'num', cell: (r) => fmtNum(r.resolved) },
          { title: 'Errors', cell: (r) => (r.errors.length ? h('span', { class: 'source-error' }, r.errors.join('; ')) : '—') },
        ],
        rl.items,
        'No runs yet.',
      ),
    );
    if (key) await auditHistory(key, historyBox);
  };
  try {
    await load();
  } catch (e) {
    clear(summary).append(errorBox(e));
  }
  every(() => load().catch(() => {}));
}

// ---------------------------------------------------------------------------------------

async function footer() {
  try {
    const m = await api.get('/meta');
    clear(foot).append(
      `Palisade ${m.version} · times shown in ${zoneLabel()}`,
      m.geoip_attribution ? h('span', { id: 'geo-attribution' }, ' · ' + m.geoip_attribution) : '',
    );
  } catch {
    /* not logged in */
  }
}

// The health strip: store, daemon, responders and log sources at a glance, refreshed on its
// own, so that a broken setup does not look like a quiet server.
let healthTimer = null;

function healthItem(label, ok, text, title) {
  return h('span', { class: 'health-item ' + (ok ? 'ok' : 'bad'), title: title || null }, h('span', { class: 'dot' }), `${label}: ${text}`);
}

async function refreshHealth() {
  let hl;
  try {
    hl = await api.get('/health');
  } catch (e) {
    hl = { status: 'degraded', store: false, daemon: false, error: e.message };
  }
  if (!me) return;
  const c = hl.counters || {};
  const items = [healthItem('Store', hl.store, hl.store ? 'ok' : 'not answering')];
  if (hl.daemon !== undefined) items.push(healthItem('Daemon', hl.daemon, hl.daemon ? 'running' : 'not answering'));
  if (c.responder_errors !== undefined) {
    items.push(healthItem('Responders', !c.responder_errors, c.responder_errors ? `${fmtNum(c.responder_errors)} errors` : 'ok'));
  }
  if (Array.isArray(hl.sources)) {
    const bad = hl.sources.filter((x) => sourceState(x) && !GOOD_STATES.has(String(sourceState(x)).toLowerCase()));
    items.push(
      healthItem(
        'Sources',
        !bad.length,
        bad.length ? `${bad.length} of ${hl.sources.length} not read (${bad.map(sourceLabel).join(', ')})` : `${hl.sources.length} ok`,
      ),
    );
  } else if (c.source_errors !== undefined) {
    items.push(healthItem('Sources', !c.source_errors, c.source_errors ? `${fmtNum(c.source_errors)} errors` : `${fmtNum(c.lines)} lines read`));
  }
  const skipped = c.jail_errors || [];
  if (skipped.length) items.push(healthItem('Jails', false, `${skipped.length} skipped`, skipped.join('\n')));
  const ok = items.every((i) => i.classList.contains('ok'));
  healthEl.hidden = false;
  healthEl.className = ok ? 'ok' : 'bad';
  clear(healthEl).append(h('span', { class: 'health-title' }, ok ? 'Healthy' : 'Attention'), ...items);
}

async function render() {
  for (const f of cleanup.splice(0)) {
    try {
      f();
    } catch {
      /* ignore */
    }
  }
  if (!me) {
    try {
      me = await api.me();
    } catch {
      me = null;
    }
  }
  if (!me) {
    clear(foot);
    healthEl.hidden = true;
    clearInterval(healthTimer);
    healthTimer = null;
    loginView();
    return;
  }
  top.hidden = false;
  if (!healthTimer) {
    refreshHealth();
    healthTimer = setInterval(() => document.hidden || refreshHealth(), REFRESH_MS);
  }
  document.getElementById('who').textContent = me.user;
  const path = location.pathname;
  for (const a of document.querySelectorAll('[data-nav]')) {
    const target = a.getAttribute('href');
    a.classList.toggle('on', target === '/' ? path === '/' : path.startsWith(target));
  }
  if (!foot.firstChild) footer();
  if (path === '/' || path === '/index.html') return overview();
  if (path === '/live') return live();
  if (path === '/decisions') return decisions();
  if (path === '/events') return eventsPage(ctx);
  if (path === '/agents') return agentsPage(ctx);
  if (path === '/allowlist') return allowlist();
  if (path === '/jails') return jails();
  if (path === '/audit') return audit();
  const m = path.match(/^\/ips?\/(.+)$/);
  if (m) return ipPage(decodeURIComponent(m[1]));
  page('Not found', h('p', {}, h('a', { href: '/' }, 'Back to the overview')));
}

render();
