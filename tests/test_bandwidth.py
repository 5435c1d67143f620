"""The Chooser: which step a viewer's link carries, from REMB and receiver reports."""

from __future__ import annotations

from wcs.streams import bandwidth
from wcs.streams.bandwidth import Chooser

SOURCE, LOW = 1_330_000, 236_800  # a 1.2 Mb/s file with its audio; its 180p


def feed(chooser: Chooser, start: float, seconds: float, remb=None, loss=None, rate=None,
         every: float = 0.25) -> list[tuple[float, int]]:
    """Feedback every ``every`` s (REMB and a report with ``loss`` each second);
    the moves it asks for, taken at once."""
    moves = []
    steps = int(seconds / every)
    for n in range(steps):
        now = start + n * every
        value = remb(now) if callable(remb) else remb
        report = n % int(1 / every) == 0
        wanted = chooser.feedback(now, value, loss if report else None,
                                  rate if report else None)
        if wanted is not None:
            moves.append((round(now, 2), wanted))
            chooser.moved(wanted, now)
    return moves


def test_an_open_link_keeps_the_source_through_chromes_start_up_guess():
    """Chrome's first REMBs say about 1.1 Mb/s and climb: under what the source
    needs, but with no loss and nothing falling it is no reason to move."""
    chooser = Chooser([SOURCE, LOW], 0.0)
    assert feed(chooser, 0.0, 20, remb=lambda t: min(1_128_000 + 60_000 * t, 1_900_000),
                loss=0.0, rate=1_250_000) == []


def test_a_falling_remb_under_the_need_moves_down_at_once_to_what_fits():
    chooser = Chooser([SOURCE, 600_000, LOW], 0.0)
    feed(chooser, 0.0, 8, remb=1_900_000, loss=0.0, rate=1_250_000)
    moves = feed(chooser, 8.0, 3, remb=lambda t: 1_900_000 if t < 8.5 else 420_000)
    assert moves == [(8.5, 2)]  # 420 kb/s: the 600 kb/s step does not fit, 180p does
    assert chooser.estimate(11.0) == 420_000


def test_while_the_receiver_settles_only_loss_moves_down():
    """A receiver's first estimates rise and fall as it learns (aiortc's fell to
    236 kb/s a second into a play of a 280 kb/s file on an open link)."""
    chooser = Chooser([SOURCE, LOW], 0.0)
    assert feed(chooser, 0.0, bandwidth.SETTLING - 0.5,
                remb=lambda t: 1_900_000 if t < 2 else 300_000) == []
    chooser = Chooser([SOURCE, LOW], 0.0)
    assert feed(chooser, 0.0, 2, loss=0.6, rate=1_250_000) == [(0.0, 1)]


def test_loss_alone_moves_down_by_what_got_through():
    """No REMB at all (a browser that sends none): the receiver reports' loss with
    the rate sent meanwhile is the estimate."""
    chooser = Chooser([SOURCE, 600_000, LOW], 0.0)
    moves = feed(chooser, 0.0, 3, loss=0.5, rate=1_250_000)
    assert moves == [(0.0, 1)]  # (1.25 + 0.064) * 0.5 = 657 kb/s: over 600 * 0.85
    assert bandwidth.LOSSY <= 0.5


def test_little_loss_or_a_small_dip_is_no_move():
    chooser = Chooser([SOURCE, LOW], 0.0)
    assert feed(chooser, 0.0, 10, remb=1_900_000, loss=0.02, rate=1_250_000) == []
    assert feed(chooser, 10.0, 10, remb=lambda t: 1_900_000 - 10_000 * (t - 10),
                loss=0.0, rate=1_250_000) == []  # it eases, never under the need


def test_room_for_the_step_above_moves_up_after_a_while():
    chooser = Chooser([800_000, LOW], 0.0, index=1)
    assert feed(chooser, 0.0, 2.5, remb=1_000_000, loss=0.0, rate=180_000) == []
    moves = feed(chooser, 2.5, 2, remb=1_000_000, loss=0.0, rate=180_000)
    assert moves == [(3.0, 0)]  # 3 s of room over 800 * 1.15


def test_a_low_step_tries_the_one_above_and_waits_longer_after_each_failure():
    """REMB tops out at 1.5 times what it receives, so from 180p it never shows
    room for the source: the viewer tries the source after a quiet while, and
    comes back (a failure) twice as late each time; a trial that lasts resets it."""
    chooser = Chooser([SOURCE, LOW], 0.0, index=1)
    trials = []
    now = 0.0
    for _ in range(3):
        moves = feed(chooser, now, 200, remb=350_000, loss=0.0, rate=173_000)
        assert moves[0][1] == 0, moves
        trials.append(moves[0][0] - now)
        now = moves[0][0] + 2.0
        chooser.moved(1, now)  # down again: the link did not carry it
    assert trials == [bandwidth.TRIAL_AFTER, 2 * bandwidth.TRIAL_AFTER,
                      4 * bandwidth.TRIAL_AFTER]
    moves = feed(chooser, now, 200, remb=350_000, loss=0.0, rate=173_000)
    chooser.moved(1, moves[0][0] + bandwidth.TRIAL_FAILS_WITHIN + 5)  # it held a while
    assert chooser._trial_wait == bandwidth.TRIAL_AFTER


def test_no_trial_while_the_link_loses_or_remb_is_under_its_ceiling():
    chooser = Chooser([SOURCE, LOW], 0.0, index=1)
    assert feed(chooser, 0.0, 60, remb=350_000, loss=0.1, rate=173_000) == []
    assert feed(chooser, 60.0, 60, remb=240_000, loss=0.0, rate=173_000) == []


def test_a_source_of_unknown_rate_is_measured_before_anything_moves():
    """A publisher's stream says no bitrate: what the viewer is sent stands for it."""
    chooser = Chooser([0, LOW], 0.0)
    assert chooser.feedback(0.0, 200_000, None, None) is None  # nothing to compare with
    assert feed(chooser, 1.0, 7, remb=1_900_000, loss=0.0, rate=900_000) == []
    assert 900_000 < chooser.needs[0] <= 964_000
    moves = feed(chooser, 8.0, 2, remb=lambda t: 1_900_000 if t < 8.5 else 300_000)
    assert moves == [(8.5, 1)]


def test_one_overuse_of_a_busy_machine_is_no_move():
    """Chrome answers a delay (a busy machine's as a slow link's) by estimating 0.85
    of what it receives: that alone is no reason to leave the source."""
    chooser = Chooser([SOURCE, LOW], 0.0)
    feed(chooser, 0.0, 5, remb=1_900_000, loss=0.0, rate=1_250_000)
    assert feed(chooser, 5.0, 5, remb=lambda t: 1_900_000 if t < 6 else int(0.85 * 1_300_000),
                loss=0.0, rate=1_250_000) == []


def test_random_loss_in_single_reports_is_no_move():
    """3 % random loss puts 5 % in one report of 60 packets one time in four:
    the share is averaged over the reports of the last ``LOSSY_FOR`` s."""
    chooser = Chooser([SOURCE, LOW], 0.0)
    losses = [0.0, 0.067, 0.0, 0.033, 0.05, 0.0, 0.0, 0.067, 0.017, 0.0] * 3
    moves = []
    for n, loss in enumerate(losses):
        now = 7.0 + n
        wanted = chooser.feedback(now, 900_000, loss, 1_250_000)  # REMB under the need too
        if wanted is not None:
            moves.append(wanted)
    assert moves == []
    assert chooser.feedback(40.0, 900_000, 0.2, 1_250_000) == 1  # lasting loss is congestion


def test_while_the_receiver_settles_its_low_remb_is_no_measure_of_a_lossy_link():
    """aiortc's REMB said 264 kb/s 4 s into a play losing 3-6 %: what got through
    (94 % of 1.25 Mb/s) is the measure then, and it fits the source."""
    chooser = Chooser([SOURCE, LOW], 0.0)
    assert feed(chooser, 0.0, bandwidth.SETTLING - 0.5, remb=264_000, loss=0.06,
                rate=1_250_000) == []
    assert feed(chooser, bandwidth.SETTLING, 2, remb=264_000, loss=0.06,
                rate=1_250_000) == [(bandwidth.SETTLING, 1)]  # settled: it is
