"""The signalling socket's outgoing budget: what may still go out while the
client reads nothing."""

from __future__ import annotations

from wcs.signalling.websocket import SendBudget


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
