"""MSE media sockets matched to the plays of their session, in order."""

from __future__ import annotations

import pytest

from wcs.errors import MediaTransportRefused
from wcs.mse.channels import PARKED_LIMIT, MediaChannels


def test_a_waiting_play_gets_the_socket_when_it_comes():
    channels, got = MediaChannels(), []
    channels.wait("s1", got.append)
    channels.arrived("s2", "other session's socket")
    assert got == []
    channels.arrived("s1", "socket")
    assert got == ["socket"]


def test_a_socket_that_comes_first_is_kept_for_the_next_play():
    channels, got = MediaChannels(), []
    channels.arrived("s1", "socket")
    channels.wait("s1", got.append)
    assert got == ["socket"]
    channels.wait("s1", got.append)
    assert got == ["socket"]  # one socket, one play


def test_plays_are_served_in_order_and_may_give_up():
    channels, first, second, third = MediaChannels(), [], [], []
    channels.wait("s1", first.append)
    channels.wait("s1", second.append)
    channels.wait("s1", third.append)
    channels.cancel("s1", second.append)
    channels.arrived("s1", "a")
    channels.arrived("s1", "b")
    assert (first, second, third) == (["a"], [], ["b"])


def test_closed_sockets_and_sessions_are_forgotten():
    channels, got = MediaChannels(), []
    channels.arrived("s1", "socket")
    channels.gone("s1", "another socket")
    channels.gone("s1", "socket")
    channels.wait("s1", got.append)
    assert got == []
    channels.forget("s1")
    channels.arrived("s1", "late")
    assert got == []


def test_a_socket_is_matched_once_a_second_connect_is_refused():
    channels, got = MediaChannels(), []
    channels.wait("s1", got.append)
    channels.arrived("s1", "socket")
    with pytest.raises(MediaTransportRefused, match="already serves a play"):
        channels.arrived("s1", "socket")
    with pytest.raises(MediaTransportRefused, match="already serves a play"):
        channels.arrived("s2", "socket")  # nor taken for another session
    channels.wait("s1", got.append)
    assert got == ["socket"]  # the next play waits for a socket of its own
    channels.arrived("s1", "own socket")
    assert got == ["socket", "own socket"]


def test_sockets_that_come_first_serve_the_next_plays_in_order_up_to_a_limit():
    channels, got = MediaChannels(), []
    for n in range(PARKED_LIMIT):
        channels.arrived("s1", f"socket {n}")
    with pytest.raises(MediaTransportRefused, match=f"{PARKED_LIMIT} media sockets"):
        channels.arrived("s1", "one too many")
    channels.wait("s1", got.append)
    channels.wait("s1", got.append)
    assert got == ["socket 0", "socket 1"]
    channels.gone("s1", "socket 2")
    channels.wait("s1", got.append)
    assert got == ["socket 0", "socket 1", "socket 3"]


def test_a_closed_socket_is_forgotten_wherever_it_was():
    channels = MediaChannels()
    channels.arrived("s1", "socket")
    channels.gone("other session", "socket")  # its session is known from its arrival
    channels.arrived("s1", "socket")  # once closed, it is not remembered either
    channels.forget("s1")
    assert channels._parked == {} and channels._matched == {} and channels._waiting == {}
