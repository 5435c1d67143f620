"""MSE media sockets matched to the plays of their session, in order."""

from __future__ import annotations

from wcs.mse.channels import MediaChannels


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
