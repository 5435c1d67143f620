"""The session caps, counted once for every worker of a machine."""

from __future__ import annotations

from wcs.cluster.admissions import Admissions, LocalAdmission


def test_the_caps_hold_across_workers_with_the_keys_named():
    caps = Admissions(max_sessions=5, max_sessions_per_address=3)
    assert [caps.enter("1.1", "10.0.0.1"), caps.enter("2.2", "10.0.0.1"),
            caps.enter("1.1", "10.0.0.1")] == ["", "", ""]
    refused = caps.enter("2.2", "10.0.0.1")
    assert refused == "Limit reached: sessions open from one address (max_sessions_per_address=3)"
    assert caps.enter("2.2", "10.0.0.2") == "" and caps.enter("1.1", "10.0.0.3") == ""
    assert caps.enter("1.1", "10.0.0.4") == \
        "Limit reached: sessions open on this server (max_sessions=5)"
    caps.leave("1.1", "10.0.0.1")
    assert caps.enter("2.2", "10.0.0.1") == "" and caps.open_from("10.0.0.1") == 3


def test_a_session_never_counted_leaves_nothing_and_a_dead_worker_gives_all_back():
    caps = Admissions(max_sessions=10, max_sessions_per_address=10)
    caps.leave("1.1", "a")  # never entered: nothing to give back, nothing goes negative
    for _ in range(4):
        caps.enter("1.1", "a")
    caps.enter("2.2", "a")
    caps.leave("2.2", "a")
    caps.leave("2.2", "a")  # once too often: ignored
    assert caps.open_from("a") == 4 and caps.total == 4
    caps.drop("1.1")
    assert caps.open_from("a") == 0 and caps.total == 0


def test_a_connection_handed_to_another_worker_stays_one_session_and_is_its_to_give_back():
    caps = Admissions(max_sessions=10, max_sessions_per_address=2)
    caps.enter("1.1", "a")
    caps.enter("2.2", "a")
    caps.move("a", "2.2", "1.1")  # the media socket went to the session's worker
    assert caps.open_from("a") == 2 and caps.enter("2.2", "a") != ""
    caps.drop("2.2")  # the worker that accepted it dies: the moved one is not its any more
    assert caps.open_from("a") == 2
    caps.leave("1.1", "a")
    caps.leave("1.1", "a")
    assert caps.open_from("a") == 0 and caps.total == 0


def test_one_process_counts_for_itself():
    admission = LocalAdmission(Admissions(max_sessions=1, max_sessions_per_address=1))
    answers: list[str] = []
    admission.enter("a").addCallback(answers.append)
    admission.enter("b").addCallback(answers.append)
    admission.leave("a")
    admission.enter("b").addCallback(answers.append)
    assert answers == ["", "Limit reached: sessions open on this server (max_sessions=1)", ""]


def test_push_slots_are_the_whole_servers_and_a_dead_workers_come_back():
    caps = Admissions(max_sessions=10, max_sessions_per_address=10, max_pushes=2)
    assert caps.take("1.1", "push") == "" and caps.take("2.2", "push") == ""
    assert caps.take("1.1", "push") == "Limit reached: streams pushed to RTMP (max_pushes=2)"
    caps.give("2.2", "push")
    caps.give("2.2", "push")  # once too often: ignored
    assert caps.in_use("push") == 1 and caps.take("2.2", "push") == ""
    caps.drop("1.1")
    assert caps.in_use("push") == 1 and caps.take("1.1", "push") == ""
