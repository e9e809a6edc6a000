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
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function fmtTime(s) {
  if (!s) return '—';
  const d = new Date(s);
  if (Number.isNaN(d.getTime())) return s;
  return d.toLocaleString(undefined, { hour12: false });
}

export function fmtNum(n) {
  return (n ?? 0).toLocaleString();
}

export function ipLink(ip) {
  const bare = String(ip).replace(/\/(32|128)$/, '');
  return h('a', { href: '/ips/' + encodeURIComponent(bare), class: 'ip', 'data-link': '' }, bare);
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

export function table(columns, rows, empty = 'Nothing here.') {
  if (!rows.length) return h('p', { class: 'empty' }, empty);
  return h(
    'table',
    {},
    h('thead', {}, h('tr', {}, columns.map((c) => h('th', {}, c.title)))),
    h(
      'tbody',
      {},
      rows.map((r) => h('tr', {}, columns.map((c) => h('td', { class: c.cls }, c.cell(r))))),
    ),
  );
}
