"""The signalling socket's rules: what may still go out while the client reads
nothing, which pages may connect, how many messages a second."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from wcs.signalling.websocket import MessageRate, SendBudget, origin_allowed


def test_the_budget_counts_from_the_first_pause_whatever_twisted_repeats():
    budget = SendBudget(1000)
    assert budget.spend(10**6)  # not paused: anything goes
    budget.pauseProducing()
    assert budget.spend(600)
    budget.pauseProducing()  # Twisted says it again at every write while the buffer is full
    assert not budget.spend(600)
    budget.resumeProducing()
    assert budget.spend(5000)
    budget.pauseProducing()
    assert budget.spend(900)  # a new pause starts a new count


@pytest.mark.parametrize("origin, host, allowed, ok", [
    (None, "h:8080", (), True),  # not a browser
    ("http://h:8081", "h:8080", (), True),  # the server's own pages (another port)
    ("http://localhost:8081", "127.0.0.1:8080", (), True),  # both loopback
    ("https://evil.example", "h:8080", (), False),
    ("null", "h:8080", (), False),
    ("https://app.example", "h:8080", ("https://app.example",), True),
    ("https://APP.example/", "h:8080", ("https://app.example",), True),
    ("https://evil.example", "h:8080", ("*",), True),
])
def test_which_pages_may_open_a_session(origin, host, allowed, ok):
    assert origin_allowed(origin, host, allowed) is ok


def test_messages_a_second_in_bursts_of_twice_the_rate():
    clock = Clock()
    rate = MessageRate(5, clock)
    assert [rate.take() for _ in range(11)] == [True] * 10 + [False]
    clock.advance(0.2)  # one more message's worth
    assert rate.take() and not rate.take()
    clock.advance(100)
    assert sum(rate.take() for _ in range(20)) == 10
