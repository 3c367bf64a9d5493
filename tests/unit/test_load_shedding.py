"""Load shedding's decisions, with the event loop's samples given rather than measured: when a
saturated loop makes the server refuse new calls, and how the refused share moves. (Over real
channels: tests/e2e/test_load_shedding.py; under overload: bench/overload_bench.py.)"""

from __future__ import annotations

import asyncio
import selectors
import socket

from domicile import eventloop
from domicile.config import LoadSheddingSettings
from domicile.loadshed import EVENT_LOOP_SATURATED, SATURATED_SAMPLES, SERVER_CONCURRENCY, LoadShedder

BUSY = 0.05  # a sample in which the loop waited for work 5% of the time
IDLE = 0.9


def shedder(**settings) -> LoadShedder:
    return LoadShedder(LoadSheddingSettings(**{"max_event_loop_lag_seconds": 0.1, **settings}))


def test_a_loop_that_hardly_waits_for_work_sheds_once_it_stays_so():
    # Calls arriving faster than the loop takes them: it runs on time, but never waits.
    shed = shedder(min_event_loop_idle_share=0.25)
    for _ in range(SATURATED_SAMPLES - 1):
        shed.observe(0.0, BUSY)
    assert shed.shed_share == 0, "a short busy spell is not overload"
    shed.observe(0.0, BUSY)
    assert shed.shed_share > 0
    for _ in range(20):
        shed.observe(0.0, BUSY)
    assert shed.shed_share == 1.0
    shed.in_flight = 0
    assert shed.server_refusal() == EVENT_LOOP_SATURATED


def test_the_refused_share_falls_back_once_the_loop_waits_again():
    shed = shedder(min_event_loop_idle_share=0.25)
    for _ in range(SATURATED_SAMPLES + 4):
        shed.observe(0.0, BUSY)
    peak = shed.shed_share
    shed.observe(0.0, IDLE)
    assert 0 < shed.shed_share < peak, "it falls gradually: one idle sample is not recovery"
    for _ in range(100):
        shed.observe(0.0, IDLE)
    assert shed.shed_share == 0
    assert shed.server_refusal() == ""


def test_a_late_loop_sheds_even_where_idleness_is_not_measured():
    shed = shedder(max_event_loop_lag_seconds=0.01)
    for _ in range(SATURATED_SAMPLES):
        shed.observe(0.03, None)
    assert shed.shed_share > 0
    assert shed.lag == 0.03 and shed.idle_share is None


def test_either_test_can_be_turned_off():
    idle_off = shedder(min_event_loop_idle_share=0)
    lag_off = shedder(max_event_loop_lag_seconds=0)
    for _ in range(10):
        idle_off.observe(0.0, 0.0)
        lag_off.observe(5.0, IDLE)
    assert idle_off.shed_share == 0 and lag_off.shed_share == 0


def test_the_concurrency_limit_comes_first():
    shed = shedder(max_concurrent_rpcs=2)
    shed.in_flight = 2
    assert shed.server_refusal() == SERVER_CONCURRENCY
    shed.in_flight = 1
    assert shed.server_refusal() == ""


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_selector_adds_up_the_time_its_loop_waited(monkeypatch):
    clock = FakeClock()
    selector = eventloop.IdleTrackingSelector(clock=clock)
    real_select = selectors.DefaultSelector.select

    def kept_4ms(self, timeout=None):
        clock.now += 0.004
        return real_select(self, 0)

    monkeypatch.setattr(selectors.DefaultSelector, "select", kept_4ms)
    a, b = socket.socketpair()
    try:
        selector.register(a, selectors.EVENT_READ)
        assert selector.select(0.01) == []
        b.send(b"x")
        assert [key.fileobj for key, _ in selector.select(0.01)] == [a]
        assert abs(selector.waited_seconds - 0.008) < 1e-9
    finally:
        selector.close()
        a.close()
        b.close()


def test_only_loops_built_here_are_tracked():
    loop = eventloop.new_event_loop()
    other = asyncio.new_event_loop()
    try:
        assert isinstance(eventloop.idle_tracker(loop), eventloop.IdleTrackingSelector)
        assert eventloop.idle_tracker(other) is None
    finally:
        loop.close()
        other.close()
