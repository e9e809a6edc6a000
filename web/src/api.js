// Talking to /api/v1: the session cookie rides along (same origin); state changes carry the
// session's CSRF token, which /api/v1/auth/me and the login answer hand out.

let csrf = null;

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function call(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && csrf) headers['X-CSRF-Token'] = csrf;
  const r = await fetch('/api/v1' + path, {
    method,
    headers,
    credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  if (r.status !== 204) {
    try {
      data = await r.json();
    } catch {
      data = null;
    }
  }
  if (!r.ok) {
    if (r.status === 401 && path !== '/auth/login' && path !== '/auth/me') {
      window.dispatchEvent(new CustomEvent('palisade:logged-out'));
    }
    throw new ApiError(r.status, data);
  }
  return data;
}

export const api = {
  get: (p) => call('GET', p),
  post: (p, b) => call('POST', p, b ?? {}),
  del: (p) => call('DELETE', p),
  async me() {
    const m = await call('GET', '/auth/me');
    csrf = m.csrf_token || null;
    return m;
  },
  async login(username, password) {
    const m = await call('POST', '/auth/login', { username, password });
    csrf = m.csrf_token || null;
    return m;
  },
  async logout() {
    try {
      await call('POST', '/auth/logout', {});
    } finally {
      csrf = null;
    }
  },
};
