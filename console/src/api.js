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

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
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
