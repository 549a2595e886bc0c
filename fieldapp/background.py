"""Work off the UI thread: blocking calls (HTTP, SQLite, file reads) in worker threads, and
coroutines (bleak, zeroconf) on one asyncio loop running in its own thread. Results and
errors come back through `post`, which the Kivy app sets to run them on the UI thread
(Clock.schedule_once); tests of plain Python code pass a direct call.

    bg = Background(post=lambda fn: Clock.schedule_once(lambda dt: fn()))
    bg.call(client.sync, done=show_result, failed=show_error)
    bg.spawn(scanner.run(stop), failed=show_error)

A failure with no `failed` callback is logged and handed to `on_error` (the app shows it),
never swallowed."""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from typing import Any, Awaitable, Callable

__all__ = ["Background"]

log = logging.getLogger("cityloop.fieldapp")


class Background:
    def __init__(self, post: Callable[[Callable[[], None]], None] | None = None, workers: int = 3,
                 on_error: Callable[[BaseException], None] | None = None):
        self.post = post or (lambda fn: fn())
        self.on_error = on_error
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="field-bg")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.closed = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The asyncio loop for bleak and zeroconf, started on first use."""
        with self._lock:
            if self._loop is None:
                ready = threading.Event()

                def run() -> None:
                    self._loop = asyncio.new_event_loop()
                    asyncio.set_event_loop(self._loop)
                    ready.set()
                    self._loop.run_forever()

                self._loop_thread = threading.Thread(target=run, name="field-asyncio", daemon=True)
                self._loop_thread.start()
                ready.wait()
            assert self._loop is not None
            return self._loop

    def _deliver(self, future: concurrent.futures.Future, done, failed) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        if exc is None:
            if done is not None:
                result = future.result()
                self.post(lambda: done(result))
            return
        if failed is not None:
            self.post(lambda: failed(exc))
            return
        log.error("background work failed", exc_info=exc)
        if self.on_error is not None:
            handler = self.on_error
            self.post(lambda: handler(exc))

    def call(self, fn: Callable[..., Any], *args, done: Callable[[Any], None] | None = None,
             failed: Callable[[BaseException], None] | None = None, **kwargs) -> concurrent.futures.Future:
        """Run fn(*args, **kwargs) in a worker thread; done(result) or failed(exc) on the UI thread."""
        future = self.pool.submit(fn, *args, **kwargs)
        future.add_done_callback(lambda f: self._deliver(f, done, failed))
        return future

    def spawn(self, coro: Awaitable[Any], *, done: Callable[[Any], None] | None = None,
              failed: Callable[[BaseException], None] | None = None) -> concurrent.futures.Future:
        """Run a coroutine on the background asyncio loop."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]
        future.add_done_callback(lambda f: self._deliver(f, done, failed))
        return future

    def close(self, timeout: float = 5.0) -> None:
        """Stop taking work, let running work finish (up to `timeout` for the loop)."""
        self.closed = True
        self.pool.shutdown(wait=False, cancel_futures=True)
        loop = self._loop
        if loop is not None and loop.is_running():
            async def _cancel_all() -> None:
                tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            try:
                asyncio.run_coroutine_threadsafe(_cancel_all(), loop).result(timeout)
            except (concurrent.futures.TimeoutError, RuntimeError):
                log.warning("background coroutines did not stop within %.1f s", timeout)
            loop.call_soon_threadsafe(loop.stop)
            if self._loop_thread is not None:
                self._loop_thread.join(timeout)
