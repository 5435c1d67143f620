"""The test harness's own promises: the ports it hands out are ones a browser will dial."""

from testkit import harness


def test_no_port_chromium_refuses_is_ever_handed_out() -> None:
    ports = list(harness._below_ephemeral())
    assert ports, "the harness found no port range at all"
    assert len(ports) == len(set(ports))
    assert 10080 in range(min(ports), max(ports) + 1)
    assert not harness.CHROMIUM_UNSAFE & set(ports)
