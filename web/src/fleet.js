// Fleet mode in the dashboard (issue 16 item 8): the Agents page, the Events page with its
// host filter, the host column and filter shared by Events, Decisions and Live, fleet bans
// (origin `fleet`) marked as such, and the overview's fleet card.
import { api } from './api.js';
import { h, clear, fmtTime, fmtNum, ipLink, notice, table, confirmAction } from './util.js';

/** An event rate, with the digits that matter. */
function fmtRate(v) {
  const n = Number(v || 0);
  return n >= 10 ? n.toFixed(0) : n >= 1 ? n.toFixed(1) : n.toFixed(2);
}

/** The `host` value that means this host's own events (never an agent name). */
export const LOCAL_HOST = '@local';

/** Enrolled agents' names (not revoked); [] when this host is no fleet server. */
export async function agentNames() {
  try {
    const d = await api.get('/fleet/agents');
    return d.items.filter((a) => !a.revoked).map((a) => a.name);
  } catch {
    return [];
  }
}

/** The host select of a filter form (`name=host`): any host, this host, each agent. */
export function hostSelect(names, current) {
  const cur = current || '';
  const opts = [
    ['', 'any host'],
    [LOCAL_HOST, 'this host'],
    ...names.map((n) => [n, n]),
  ];
  // A host in the address that is no longer listed (revoked) stays selectable.
  if (cur && !opts.some(([v]) => v === cur)) opts.push([cur, cur]);
  return h(
    'select',
    { name: 'host', id: 'host-filter', 'aria-label': 'Host' },
    opts.map(([v, label]) => h('option', { value: v, selected: v === cur }, label)),
  );
}

/** A host cell: the agent's name (a link to its events), or "this host". */
export function hostCell(host) {
  if (!host) return h('span', { class: 'muted host', 'data-host': LOCAL_HOST }, 'this host');
  return h('a', { href: '/events?host=' + encodeURIComponent(host), class: 'host', 'data-host': host }, host);
}

/** The badge of a decision's origin; fleet bans are marked as such. */
export function originCell(origin) {
  if (origin === 'fleet') return h('span', { class: 'badge info fleet-badge', title: 'Pushed by the fleet server' }, 'fleet');
  return origin;
}

/** The fleet ban log table (entries of /fleet/decisions). */
export function fleetDecisionTable(rows, empty = 'No fleet bans.') {
  return table(
    [
      { title: 'Target', cell: (r) => ipLink(r.target) },
      { title: 'Origin', cell: () => originCell('fleet') },
      { title: 'Host', cell: (r) => (r.origin_agent ? hostCell(r.origin_agent) : h('span', { class: 'muted' }, 'fleet server')) },
      { title: 'Applies to', cell: (r) => (r.scope ? r.scope.join(', ') : 'all agents') },
      { title: 'Jail', cell: (r) => r.jail },
      { title: 'Action', cell: (r) => h('span', { class: 'badge ' + (r.in_force ? 'bad' : '') }, r.in_force ? 'in force' : r.action) },
      { title: 'Created', cls: 'time', cell: (r) => fmtTime(r.created) },
      { title: 'Expires', cls: 'time', cell: (r) => (r.expires ? fmtTime(r.expires) : 'never') },
      { title: 'Reason', cell: (r) => r.reason },
    ],
    rows,
    empty,
  );
}

// ---------------------------------------------------------------------------------------
// Events

/** The Events page: every stored event, newest first, by host, address and jail. */
export async function eventsPage(ctx) {
  const q = new URLSearchParams(location.search);
  const names = await agentNames();
  const host = hostSelect(names, q.get('host'));
  const ip = h('input', { name: 'ip', value: q.get('ip') || '', placeholder: 'IP address' });
  const jail = h('input', { name: 'jail', value: q.get('jail') || '', placeholder: 'jail' });
  const form = h('form', { class: 'inline', id: 'event-filters' }, host, ip, jail, h('button', { type: 'submit' }, 'Filter'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const p = new URLSearchParams();
    for (const el of [host, ip, jail]) if (el.value.trim()) p.set(el.name, el.value.trim());
    ctx.navigate('/events' + (p.toString() ? '?' + p : ''));
  });
  const list = h('div', { id: 'event-list' }, h('p', { class: 'loading' }, 'Loading…'));
  ctx.page('Events', form, list);
  const base = new URLSearchParams();
  for (const k of ['host', 'ip', 'jail']) if (q.get(k)) base.set(k, q.get(k));
  base.set('limit', '100');
  let rows = [];
  let cursor = null;
  const columns = [
    { title: 'Time', cls: 'time', cell: (r) => fmtTime(r.time) },
    { title: 'Host', cell: (r) => hostCell(r.host) },
    { title: 'Jail', cell: (r) => r.jail },
    { title: 'IP', cell: (r) => ipLink(r.ip) },
    { title: 'Rule', cell: (r) => h('span', { class: r.failure ? 'failure' : '' }, r.rule + (r.user ? ` (user ${r.user})` : '')) },
    { title: 'Log line', cls: 'evidence', cell: (r) => r.evidence || '…' },
  ];
  const show = () =>
    clear(list).append(
      h('p', { class: 'count', id: 'event-count' }, `${fmtNum(rows.length)} event${rows.length === 1 ? '' : 's'}${cursor != null ? ' (more below)' : ''}.`),
      table(columns, rows, 'No events match.'),
      ...(cursor != null ? [h('button', { id: 'older-events', onclick: older }, 'Older events')] : []),
    );
  const fetchPage = async (c) => {
    const p = new URLSearchParams(base);
    if (c != null) p.set('cursor', String(c));
    return api.get('/events?' + p);
  };
  const older = async () => {
    try {
      const p = await fetchPage(cursor);
      rows = rows.concat(p.items);
      cursor = p.next_cursor ?? null;
      show();
    } catch (err) {
      notice(ctx.app, err.message);
    }
  };
  try {
    const p = await fetchPage(null);
    rows = p.items;
    cursor = p.next_cursor ?? null;
    show();
  } catch (e) {
    clear(list).append(ctx.errorBox(e));
  }
}

// ---------------------------------------------------------------------------------------
// Agents

function statusBadge(a) {
  if (a.revoked) return h('span', { class: 'badge bad' }, 'revoked');
  if (a.connected) return h('span', { class: 'badge ok' }, 'connected');
  return h('span', { class: 'badge warn' }, 'disconnected');
}

function skewCell(a) {
  if (a.clock_offset_ms == null) return '—';
  const s = `${a.clock_offset_ms > 0 ? '+' : ''}${(a.clock_offset_ms / 1000).toFixed(1)} s`;
  return a.skewed ? h('span', { class: 'badge bad skewed', title: 'Clock off by more than 30 s' }, s + ' skewed') : s;
}

function blockForm(ctx, names, done) {
  const targets = h('textarea', { name: 'targets', rows: 3, cols: 30, placeholder: 'One address or CIDR a line', required: true });
  const agents = h('input', { name: 'agents', placeholder: 'agents (comma-separated; empty = all)', size: 30, list: 'agent-names' });
  const dur = h('input', { name: 'duration', placeholder: '1d, empty = until lifted', size: 12 });
  const reason = h('input', { name: 'reason', placeholder: 'Reason', size: 20 });
  const f = h(
    'form',
    { class: 'inline', id: 'block-form' },
    targets,
    agents,
    h('datalist', { id: 'agent-names' }, names.map((n) => h('option', { value: n }))),
    dur,
    reason,
    h('button', { type: 'submit' }, 'Push fleet bans'),
  );
  f.addEventListener('submit', async (e) => {
    e.preventDefault();
    const list = targets.value
      .split('\n')
      .map((l) => l.split('#')[0].trim())
      .filter(Boolean);
    const to = agents.value
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    try {
      const r = await api.post('/fleet/block', {
        targets: list,
        agents: to.length ? to : null,
        duration: dur.value.trim() || null,
        reason: reason.value.trim() || null,
      });
      notice(ctx.app, `Pushed ${fmtNum(r.appended)} fleet ban(s) to ${to.length ? to.join(', ') : 'all agents'}.`, 'info');
      targets.value = '';
      done();
    } catch (err) {
      notice(ctx.app, err.message);
    }
  });
  return f;
}

/** The Agents page: every enrolled agent, its state, and (admins) revoke and block lists. */
export async function agentsPage(ctx, refresh = false) {
  if (!refresh) ctx.page('Agents', h('p', { class: 'loading' }, 'Loading…'));
  let d;
  let bans;
  try {
    [d, bans] = await Promise.all([api.get('/fleet/agents'), api.get('/fleet/decisions?status=active&limit=200')]);
  } catch (e) {
    if (!refresh) ctx.page('Agents', ctx.errorBox(e));
    return;
  }
  if (location.pathname !== '/agents') return;
  // Nothing typed into the block form is thrown away by a refresh.
  if (refresh && [...ctx.app.querySelectorAll('#block-form textarea')].some((t) => t.value)) return;
  ctx.leave();
  const admin = ctx.me().scope === 'admin';
  const reload = () => agentsPage(ctx, true);
  const revoke = async (a) => {
    const ok = await confirmAction(
      `Revoke agent ${a.name}? Its identity is refused from now on and its connection is cut within a second; it has to enroll again with a new token.`,
      'Revoke',
    );
    if (!ok) return;
    try {
      await api.post('/fleet/agents/' + encodeURIComponent(a.name) + '/revoke');
      notice(ctx.app, `Revoked agent ${a.name}.`, 'info');
      reload();
    } catch (err) {
      notice(ctx.app, err.message);
    }
  };
  const live = d.items.filter((a) => !a.revoked);
  const names = live.map((a) => a.name);
  const card = (label, value, cls = '') =>
    h('div', { class: 'card ' + cls }, h('div', { class: 'value' }, value), h('div', { class: 'label' }, label));
  ctx.page(
    'Agents',
    ctx.updatedAt(),
    d.items.length
      ? h(
          'div',
          { class: 'cards' },
          card('Connected', `${fmtNum(live.filter((a) => a.connected).length)} / ${fmtNum(live.length)}`, live.some((a) => !a.connected) ? 'alert' : ''),
          card('Events/s', fmtRate(live.reduce((s, a) => s + a.events_per_sec, 0))),
          card('Backlog', fmtNum(live.reduce((s, a) => s + a.backlog, 0))),
          card('Gaps', fmtNum(live.reduce((s, a) => s + a.gaps, 0)), live.some((a) => a.gaps) ? 'alert' : ''),
          card('Clock skewed', fmtNum(live.filter((a) => a.skewed).length), live.some((a) => a.skewed) ? 'alert' : ''),
          card('Fleet bans', fmtNum(bans.items.length)),
        )
      : '',
    h(
      'section',
      { id: 'agent-list' },
      table(
        [
          { title: 'Name', cell: (a) => h('strong', { class: 'agent-name' }, a.name) },
          { title: 'Status', cell: statusBadge },
          { title: 'Last seen', cls: 'time', cell: (a) => fmtTime(a.last_seen) },
          { title: 'Events', cls: 'num', cell: (a) => h('a', { href: '/events?host=' + encodeURIComponent(a.name) }, fmtNum(a.events)) },
          { title: 'Events/s', cls: 'num', cell: (a) => fmtRate(a.events_per_sec) },
          { title: 'Backlog', cls: 'num', cell: (a) => fmtNum(a.backlog) },
          { title: 'Gaps', cls: 'num', cell: (a) => (a.gaps ? h('span', { class: 'badge warn', title: 'Events dropped by the agent’s spool cap' }, fmtNum(a.gaps)) : '0') },
          { title: 'Version', cell: (a) => `${a.version || '—'} (protocol ${a.protocol})` },
          { title: 'Clock', cell: skewCell },
          { title: 'Fleet bans', cls: 'num', cell: (a) => fmtNum(a.fleet_bans) },
          ...(admin
            ? [
                {
                  title: '',
                  cell: (a) =>
                    a.revoked ? '' : h('button', { class: 'danger revoke', 'data-agent': a.name, onclick: () => revoke(a) }, 'Revoke'),
                },
              ]
            : []),
        ],
        d.items,
        'No agents. This host is no fleet server, or none has enrolled yet: run palisade fleet token add here and palisade fleet join on the agent.',
      ),
    ),
    admin && names.length
      ? h('section', {}, h('h2', {}, 'Push a block list'), blockForm(ctx, names, reload))
      : '',
    h('section', { id: 'fleet-bans' }, h('h2', {}, 'Fleet bans in force'), fleetDecisionTable(bans.items)),
  );
  ctx.every(() => agentsPage(ctx, true));
}

// ---------------------------------------------------------------------------------------
// Overview

/** The overview's fleet card (nothing when this host has no agents). */
export async function fleetCard() {
  let f;
  try {
    f = await api.get('/fleet/overview');
  } catch {
    return '';
  }
  if (!f.agents_total) return '';
  const card = (label, value, cls = '') =>
    h('div', { class: 'card ' + cls }, h('div', { class: 'value' }, value), h('div', { class: 'label' }, label));
  return h(
    'section',
    { id: 'fleet-overview' },
    h('h2', {}, 'Fleet'),
    h(
      'div',
      { class: 'cards' },
      h(
        'a',
        { class: 'card' + (f.agents_connected < f.agents_total ? ' alert' : ''), href: '/agents', id: 'fleet-connected' },
        h('div', { class: 'value' }, `${fmtNum(f.agents_connected)} / ${fmtNum(f.agents_total)}`),
        h('div', { class: 'label' }, 'Agents connected'),
      ),
      card('Events/s', fmtRate(f.events_per_sec)),
      card('Fleet bans', fmtNum(f.fleet_bans)),
      card('Backlog', fmtNum(f.backlog)),
      card('Gaps', fmtNum(f.gaps), f.gaps ? 'alert' : ''),
      card('Clock skewed', fmtNum(f.agents_skewed), f.agents_skewed ? 'alert' : ''),
    ),
    table(
      [
        { title: 'Host', cell: (r) => hostCell(r.host) },
        { title: 'Status', cell: (r) => h('span', { class: 'badge ' + (r.connected ? 'ok' : 'warn') }, r.connected ? 'connected' : 'disconnected') },
        { title: 'Events', cls: 'num', cell: (r) => fmtNum(r.events) },
        { title: 'Events/s', cls: 'num', cell: (r) => fmtRate(r.events_per_sec) },
        { title: 'Fleet bans', cls: 'num', cell: (r) => fmtNum(r.fleet_bans) },
      ],
      f.hosts,
    ),
  );
}
