"""Waiting for a condition, never for a time.

A test that sleeps a fixed time and then asserts is betting that the machine was fast enough
(and, with a wall clock, that no step or minute boundary fell inside the sleep). These
helpers poll a predicate until it holds or a generous deadline passes; the deadline only
bounds a failure, it is never what the test measures."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 30.0, every: float = 0.02, what: str = "") -> T:
    """The first truthy value of `predicate()`; AssertionError if none came within `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what or predicate}")
        time.sleep(every)


async def until(predicate: Callable[[], T], timeout: float = 30.0, every: float = 0.02, what: str = "") -> T:
    """`wait_until` for code on an event loop (the loop keeps running while it waits)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what or predicate}")
        await asyncio.sleep(every)
