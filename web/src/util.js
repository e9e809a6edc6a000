// Small DOM helpers. Every value from the API goes into the page as text, never as HTML.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

const pad = (n, w = 2) => String(Math.abs(Math.trunc(n))).padStart(w, '0');

/** The browser's zone as `UTC` or `±hh:mm` (for times shown and for axis titles). */
export function zoneLabel(d = new Date()) {
  const off = -d.getTimezoneOffset();
  if (off === 0) return 'UTC';
  return `${off < 0 ? '-' : '+'}${pad(off / 60)}:${pad(off % 60)}`;
}

/**
 * A time as `YYYY-MM-DD HH:MM:SS ±hh:mm` (or `… UTC`) in the browser's zone, the same in
 * every locale. `parts` picks a shorter form: `minute`, `day`, or `tick` (`MM-DD HH:MM`).
 */
export function fmtTime(s, parts = 'second') {
  if (s === undefined || s === null || s === '') return '—';
  const d = s instanceof Date ? s : new Date(s);
  if (Number.isNaN(d.getTime())) return String(s);
  const day = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  if (parts === 'day') return day;
  const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  if (parts === 'minute') return `${day} ${hm}`;
  if (parts === 'tick') return `${day.slice(5)} ${hm}`;
  return `${day} ${hm}:${pad(d.getSeconds())} ${zoneLabel(d)}`;
}

/** Numbers with a plain thin grouping, the same in every locale. */
export function fmtNum(n) {
  return String(Math.trunc(Number(n ?? 0))).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

/** A duration in seconds as `10m`, `1h`, `1h30m`, `1d`, `1w`. */
export function fmtDuration(secs) {
  if (secs === undefined || secs === null) return '—';
  let s = Math.round(Number(secs));
  if (!s) return '0s';
  let out = '';
  for (const [u, n] of [['w', 604800], ['d', 86400], ['h', 3600], ['m', 60], ['s', 1]]) {
    if (s >= n) {
      out += Math.floor(s / n) + u;
      s %= n;
    }
  }
  return out;
}

// English country names whatever the browser's language (the dashboard is in English).
let regionNames = null;
export function countryName(code) {
  if (!code) return '';
  try {
    regionNames ??= new Intl.DisplayNames(['en'], { type: 'region' });
    return regionNames.of(String(code).toUpperCase()) || code;
  } catch {
    return code;
  }
}

export function ipLink(ip) {
  const bare = String(ip).replace(/\/(32|128)$/, '');
  return h('a', { href: '/ips/' + encodeURIComponent(bare).replace(/%3A/gi, ':'), class: 'ip', 'data-link': '' }, bare);
}

// Flags as emoji need a colour-emoji font, which servers' browsers often lack; the dashboard
// shows country codes instead.
export function flag() {
  return '';
}

export function notice(el, text, kind = 'error') {
  const n = h('div', { class: 'notice ' + kind, role: kind === 'error' ? 'alert' : 'status' }, text);
  el.prepend(n);
  setTimeout(() => n.remove(), 6000);
}

/**
 * A table (wrapped so that a wide one scrolls on its own on a narrow screen, never the
 * page). Columns: `{ title, cell(row), cls }`; a `num` class right-aligns header and cells.
 */
export function table(columns, rows, empty = 'Nothing here.') {
  if (!rows.length) return h('p', { class: 'empty' }, empty);
  return h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      {},
      h('thead', {}, h('tr', {}, columns.map((c) => h('th', { class: c.cls }, c.title)))),
      h(
        'tbody',
        {},
        rows.map((r) => h('tr', {}, columns.map((c) => h('td', { class: c.cls }, c.cell(r))))),
      ),
    ),
  );
}

/**
 * Asks before a destructive action, in a modal dialog: resolves true when the user confirms.
 * `what` says what will happen, `verb` labels the confirming button.
 */
export function confirmAction(what, verb) {
  return new Promise((resolve) => {
    const ok = h('button', { type: 'button', id: 'confirm-ok', class: 'danger' }, verb);
    const cancel = h('button', { type: 'button', id: 'confirm-cancel', class: 'secondary' }, 'Cancel');
    const dlg = h(
      'dialog',
      { id: 'confirm', 'aria-labelledby': 'confirm-text' },
      h('p', { id: 'confirm-text' }, what),
      h('div', { class: 'dialog-buttons' }, cancel, ok),
    );
    const done = (v) => {
      dlg.close();
      dlg.remove();
      resolve(v);
    };
    ok.addEventListener('click', () => done(true));
    cancel.addEventListener('click', () => done(false));
    dlg.addEventListener('cancel', (e) => {
      e.preventDefault();
      done(false);
    });
    document.body.append(dlg);
    dlg.showModal();
    cancel.focus();
  });
}
