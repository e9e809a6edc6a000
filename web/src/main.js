// Palisade dashboard: a small single-page app without a framework. Pages: overview, live
// feed, IP drill-down, decisions, allowlist, jails; a login form when there is no session.
import './style.css';
import { api, ApiError } from './api.js';
import { h, clear, fmtTime, fmtNum, ipLink, flag, notice, table } from './util.js';
import { overviewChart, timelineChart } from './charts.js';
import { worldMap } from './map.js';

const app = document.getElementById('app');
const top = document.getElementById('top');
const foot = document.getElementById('foot');
let me = null;
let cleanup = [];

function onLeave(fn) {
  cleanup.push(fn);
}

function navigate(path, replace = false) {
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
  if (v) navigate('/ips/' + encodeURIComponent(v));
});

function page(title, ...body) {
  clear(app);
  app.append(h('h1', {}, title), ...body);
}

function errorBox(err) {
  return h('div', { class: 'notice error', role: 'alert' }, err instanceof ApiError ? err.message : String(err));
}

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

async function overview() {
  const range = new URLSearchParams(location.search).get('range') || '24h';
  const ranges = h(
    'div',
    { class: 'ranges' },
    ['24h', '7d', '30d'].map((r) => h('a', { href: '/?range=' + r, class: r === range ? 'on' : '' }, r)),
  );
  page('Overview', ranges, h('p', { class: 'loading' }, 'Loading…'));
  let s;
  try {
    s = await api.get('/stats?range=' + encodeURIComponent(range));
  } catch (e) {
    app.append(errorBox(e));
    return;
  }
  const t = s.totals;
  const card = (label, value, cls = '') =>
    h('div', { class: 'card ' + cls }, h('div', { class: 'value' }, value), h('div', { class: 'label' }, label));
  const worst = s.most_offending_ip;
  const canvas = h('canvas', { id: 'overview-chart' });
  const mapEl = h('div', { id: 'world-map', class: 'map' });
  page(
    'Overview',
    ranges,
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
    h('section', {}, h('h2', {}, `Events and bans (${s.range}, per ${s.bucket})`), h('div', { class: 'chart' }, canvas)),
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
            { title: '', cell: (r) => (r.country ? `${flag(r.country)} ${r.country}` : '') },
            { title: 'Failures', cls: 'num', cell: (r) => fmtNum(r.failures) },
            { title: 'Bans', cls: 'num', cell: (r) => fmtNum(r.times_banned) },
            { title: 'Last seen', cell: (r) => fmtTime(r.last_seen) },
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
        mapEl,
        table(
          [
            { title: 'Country', cell: (r) => `${flag(r.country)} ${r.country}` },
            { title: 'Failures', cls: 'num', cell: (r) => fmtNum(r.failures) },
            { title: 'Addresses', cls: 'num', cell: (r) => fmtNum(r.addresses) },
          ],
          s.top_countries.slice(0, 12),
          'No country data (no GeoIP database, or no offenders).',
        ),
      ),
    ),
  );
  const chart = overviewChart(canvas, s);
  onLeave(() => chart.destroy());
  try {
    const m = worldMap(mapEl, s.top_countries);
    onLeave(() => m.destroy && m.destroy());
  } catch (e) {
    mapEl.textContent = 'Map unavailable.';
  }
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
      h('td', {}, h('span', { class: 'badge ' + (d.failure ? 'warn' : '') }, d.failure ? 'failure' : 'event')),
      h('td', {}, d.jail),
      h('td', {}, ipLink(d.ip), d.country ? ` ${flag(d.country)}` : ''),
      h('td', {}, d.rule + (d.user ? ` (user ${d.user})` : '')),
    );
  }
  const dec = d.decision;
  return h(
    'tr',
    { class: 'feed-' + kind },
    h('td', {}, fmtTime(kind === 'ban' ? dec.created : new Date().toISOString())),
    h('td', {}, h('span', { class: 'badge ' + (kind === 'ban' ? 'bad' : 'ok') }, kind)),
    h('td', {}, dec.jail),
    h('td', {}, ipLink(dec.target)),
    h('td', {}, kind === 'ban' ? dec.reason : `lifted (${d.reason})`),
  );
}

function live() {
  const body = h('tbody', { id: 'feed-rows' });
  const state = h('span', { id: 'feed-state', class: 'badge' }, 'connecting');
  page(
    'Live feed',
    h('p', {}, 'Events and decisions as they happen. ', state),
    h(
      'table',
      { id: 'feed' },
      h('thead', {}, h('tr', {}, ['Time', 'Kind', 'Jail', 'IP', 'What'].map((t) => h('th', {}, t)))),
      body,
    ),
  );
  const es = new EventSource('/api/v1/feed');
  const add = (kind) => (msg) => {
    let d;
    try {
      d = JSON.parse(msg.data);
    } catch {
      return;
    }
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
  for (const k of ['event', 'ban', 'unban']) es.addEventListener(k, add(k));
  es.addEventListener('lagged', (m) => notice(app, `Skipped ${m.data} items (too many at once).`, 'info'));
  onLeave(() => es.close());
}

// ---------------------------------------------------------------------------------------
// IP drill-down

function decisionTable(rows, onUnban) {
  return table(
    [
      { title: 'Target', cell: (r) => ipLink(r.target) },
      { title: 'Jail', cell: (r) => r.jail },
      { title: 'Origin', cell: (r) => r.origin },
      { title: 'Status', cell: (r) => h('span', { class: 'badge ' + (r.in_force ? 'bad' : '') }, r.in_force ? 'in force' : r.status) },
      { title: 'Created', cell: (r) => fmtTime(r.created) },
      { title: 'Expires', cell: (r) => (r.expires ? fmtTime(r.expires) : 'never') },
      { title: 'Reason', cell: (r) => (r.simulated ? '[simulated] ' : '') + r.reason },
      {
        title: '',
        cell: (r) =>
          r.in_force && onUnban
            ? h('button', { class: 'unban', 'data-target': r.target, onclick: () => onUnban(r) }, 'Unban')
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
    { title: 'Time', cell: (r) => fmtTime(r.time) },
    { title: 'Jail', cell: (r) => r.jail },
    { title: 'Rule', cell: (r) => r.rule + (r.user ? ` (user ${r.user})` : '') },
    { title: 'Log line', cls: 'evidence', cell: (r) => r.evidence || '…' },
  ];
  const section = h('section', { id: 'recent-events' });
  const render = () => {
    clear(section).append(
      h('h2', {}, 'Recent events'),
      table(columns, rows, 'No events.'),
      cursor != null ? h('button', { id: 'older-events', onclick: older }, 'Older events') : null,
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

async function ipPage(ip) {
  page('IP ' + ip, h('p', { class: 'loading' }, 'Loading…'));
  let d;
  try {
    d = await api.get('/ips/' + encodeURIComponent(ip));
  } catch (e) {
    page('IP ' + ip, errorBox(e));
    return;
  }
  const reload = () => ipPage(ip);
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
  const where = [g.country && `${flag(g.country)} ${g.country_name || g.country}`, g.city, g.asn && `AS${g.asn} ${g.as_org || ''}`]
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
            h('button', { id: 'unban-current', class: 'unban', onclick: () => unban(d.current_ban) }, 'Unban'),
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
      h('section', {}, h('h2', {}, 'Timeline (30 days)'), h('div', { class: 'chart small' }, canvas)),
    ),
    h('section', {}, h('h2', {}, 'Decisions'), decisionTable(d.decisions, unban)),
    recentEvents(ip, d.recent_events, d.recent_events_cursor),
  );
  const c = timelineChart(canvas, d.timeline);
  onLeave(() => c.destroy());
}

// ---------------------------------------------------------------------------------------
// Decisions

async function decisions() {
  const q = new URLSearchParams(location.search);
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
    ['', 'jail', 'recidive', 'manual', 'fail2ban', 'remote'].map((o) =>
      h('option', { value: o, selected: (q.get('origin') || '') === o }, o || 'any origin'),
    ),
  );
  const filters = h('form', { class: 'inline', id: 'decision-filters' }, status, ip, jail, origin, h('button', { type: 'submit' }, 'Filter'));
  filters.addEventListener('submit', (e) => {
    e.preventDefault();
    const p = new URLSearchParams();
    for (const el of [status, ip, jail, origin]) if (el.value) p.set(el.name, el.value);
    navigate('/decisions?' + p);
  });
  const list = h('div', { id: 'decision-list' }, h('p', { class: 'loading' }, 'Loading…'));
  page('Decisions', filters, h('section', {}, h('h2', {}, 'Ban an address'), banForm('', () => decisions())), list);
  const p = new URLSearchParams();
  p.set('status', q.get('status') || 'active');
  for (const k of ['ip', 'jail', 'origin']) if (q.get(k)) p.set(k, q.get(k));
  p.set('limit', '500');
  try {
    const d = await api.get('/decisions?' + p);
    clear(list).append(
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
  } catch (e) {
    clear(list).append(errorBox(e));
  }
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
          { title: 'Added', cell: (r) => fmtTime(r.created) },
          {
            title: '',
            cell: (r) =>
              h(
                'button',
                {
                  class: 'danger',
                  onclick: async () => {
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

async function jails() {
  page('Jails', h('p', { class: 'loading' }, 'Loading…'));
  try {
    const d = await api.get('/jails');
    const c = d.counters || {};
    page(
      'Jails',
      h(
        'div',
        { class: 'cards' },
        [
          ['Lines read', c.lines],
          ['Events', c.events],
          ['Decisions', c.decisions],
          ['Active bans', d.active_bans],
          ['Responder errors', c.responder_errors],
        ].map(([l, v]) => h('div', { class: 'card' }, h('div', { class: 'value' }, fmtNum(v)), h('div', { class: 'label' }, l))),
      ),
      table(
        [
          { title: 'Jail', cell: (r) => r.name },
          { title: 'Failures', cls: 'num', cell: (r) => fmtNum(r.failures) },
          { title: 'Bans', cls: 'num', cell: (r) => fmtNum(r.detections) },
          { title: 'Tracked addresses', cls: 'num', cell: (r) => fmtNum(r.tracked) },
          { title: 'Evicted', cls: 'num', cell: (r) => fmtNum(r.evicted) },
        ],
        d.jails || [],
        'No jails enabled.',
      ),
    );
  } catch (e) {
    page('Jails', errorBox(e));
  }
}

// ---------------------------------------------------------------------------------------

async function footer() {
  try {
    const m = await api.get('/meta');
    clear(foot).append(
      `Palisade ${m.version}`,
      m.geoip_attribution ? h('span', { id: 'geo-attribution' }, ' · ' + m.geoip_attribution) : '',
    );
  } catch {
    /* not logged in */
  }
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
    loginView();
    return;
  }
  top.hidden = false;
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
  if (path === '/allowlist') return allowlist();
  if (path === '/jails') return jails();
  const m = path.match(/^\/ips\/(.+)$/);
  if (m) return ipPage(decodeURIComponent(m[1]));
  page('Not found', h('p', {}, h('a', { href: '/' }, 'Back to the overview')));
}

render();
