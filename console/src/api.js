// The console talks to the server only through the public HTTP API, as the tablet does.
// Errors come back in the server's one shape {error, message, errors}; ApiError carries it.
const TOKEN_KEY = 'cityloop.token';
let onUnauthorized = () => {};

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.code = (body && body.error) || 'http_error';
    this.errors = (body && body.errors) || null;
    this.body = body;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

// expiresIn (seconds, from the log-in answer) schedules the renewal: a person at a desk all day
// is not sent back to the log-in every 30 minutes (the server allows renewals for 12 hours).
export function setToken(value, expiresIn) {
  clearTimeout(renewTimer);
  if (!value) {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(RENEW_KEY);
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, value);
  if (expiresIn) sessionStorage.setItem(RENEW_KEY, String(Date.now() + expiresIn * 1000 * RENEW_AT));
  keepFresh();
}

const RENEW_KEY = 'cityloop.renewAt';
const RENEW_AT = 2 / 3; // of the token's life
let renewTimer;

// Renew the token when two thirds of its life have passed (by this browser's clock, counted
// from when the token arrived, so a skewed clock does not matter); a token found after a
// reload is renewed soon.
export function keepFresh() {
  clearTimeout(renewTimer);
  if (!token()) return;
  const at = Number(sessionStorage.getItem(RENEW_KEY)) || Date.now() + 5000;
  renewTimer = setTimeout(renew, Math.max(1000, at - Date.now()));
}

async function renew() {
  try {
    const out = await request('POST', '/api/v1/auth/refresh');
    setToken(out.access_token, out.expires_in);
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return; // the handler shows the log-in
    renewTimer = setTimeout(renew, 60_000); // unreachable or busy: try again in a minute
  }
}

// Called when the server says the token is no good (expired, revoked): back to the log-in.
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

function query(params) {
  if (!params) return '';
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === '') continue;
    if (Array.isArray(v)) v.forEach((x) => q.append(k, x));
    else q.append(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

// request('GET', '/api/v1/work-orders', {params, json, form, signal, raw})
export async function request(method, path, { params, json, form, signal, raw = false } = {}) {
  const headers = {};
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  let body;
  if (json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(json);
  } else if (form !== undefined) {
    body = form; // FormData: the browser sets the multipart boundary
  }
  let response;
  try {
    response = await fetch(path + query(params), { method, headers, body, signal });
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new ApiError(0, { error: 'unreachable', message: String(err.message || err) });
  }
  if (raw && response.ok) return response;
  const type = response.headers.get('content-type') || '';
  const data = type.includes('json') ? await response.json().catch(() => null) : await response.text();
  if (!response.ok) {
    const err = new ApiError(response.status, typeof data === 'object' ? data : { message: data });
    if (response.status === 401 && t) onUnauthorized(err);
    throw err;
  }
  return data;
}

export const api = {
  get: (path, params, opts) => request('GET', path, { ...opts, params }),
  post: (path, json, opts) => request('POST', path, { ...opts, json }),
  put: (path, json, opts) => request('PUT', path, { ...opts, json }),
  upload: (path, form, opts) => request('POST', path, { ...opts, form }),
  del: (path, opts) => request('DELETE', path, opts),
};
