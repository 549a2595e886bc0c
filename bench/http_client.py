"""A lean HTTP/1.1 keep-alive JSON client for the benchmarks.

The load generator shares this 2-core machine with the server it measures, so it must cost
little: httpx spent about 1.7 ms of CPU per request here (and a new httpx.Client per request,
as the first version of the benchmark did, far more), which the server's two workers then
lacked. http.client on one persistent connection per thread costs a fraction of that."""
from __future__ import annotations

import http.client
import json
import threading
from urllib.parse import urlencode, urlsplit


class Response:
    __slots__ = ("status", "body")

    def __init__(self, status: int, body: bytes):
        self.status, self.body = status, body

    def json(self):
        return json.loads(self.body)


class LeanClient:
    """One keep-alive connection per thread to one server."""

    def __init__(self, base: str, timeout: float = 120):
        parts = urlsplit(base)
        self.host, self.port, self.timeout = parts.hostname, parts.port, timeout
        self._local = threading.local()

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return conn

    def request(self, method: str, path: str, *, json_body=None, params=None, headers=None) -> Response:
        if params:
            path = f"{path}?{urlencode(params)}"
        body = json.dumps(json_body).encode() if json_body is not None else None
        hdrs = {"Content-Type": "application/json"} if body is not None else {}
        hdrs.update(headers or {})
        for attempt in (1, 2):   # a keep-alive connection the server closed is reopened once
            conn = self._conn()
            try:
                conn.request(method, path, body=body, headers=hdrs)
                r = conn.getresponse()
                return Response(r.status, r.read())
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                conn.close()
                self._local.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def get(self, path, **kw) -> Response:
        return self.request("GET", path, **kw)

    def post(self, path, **kw) -> Response:
        return self.request("POST", path, **kw)
