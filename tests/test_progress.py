"""One progress bar for a whole run (intentkit.progress.RunProgress): its share per phase and an
ETA that counts the phases still to come."""
import logging

import pytest

from intentkit import progress
from intentkit.progress import Progress, RunProgress, phase, whole_run


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr(progress.time, "perf_counter", fake)
    return fake


def test_the_eta_counts_the_phases_still_to_come(clock):
    run = RunProgress("training", {"prepare": 1, "search": 3, "fit": 4})
    with run.phase("prepare"):
        clock.now += 10
    assert run.fraction() == pytest.approx(1 / 8)
    # 10 s for an eighth of the plan: 70 s for the rest, not 0 s for a finished phase.
    assert run.eta_seconds() == pytest.approx(70)
    with run.phase("search", parts=2):
        run.step(0.5, "trial a epoch 3")  # half of the first of two parts: a quarter of 3
        clock.now += 10
        assert run.fraction() == pytest.approx((1 + 3 / 4) / 8)
        assert run.eta_seconds() == pytest.approx(20 * (1 - 1.75 / 8) / (1.75 / 8))
        run.part_done()
        assert run.fraction() == pytest.approx((1 + 1.5) / 8)
    assert run.seconds == {"prepare": 10.0, "search": 10.0}


def test_a_skipped_phase_leaves_the_plan_and_an_unplanned_one_joins_it(clock):
    run = RunProgress("training", {"prepare": 1, "refit": 1})
    run.skip("refit")
    with run.phase("prepare"):
        pass
    assert run.fraction() == 1.0
    with run.phase("entities"):  # a phase the plan did not name still counts
        assert run.fraction() == pytest.approx(1 / (1 + progress.DEFAULT_PHASE_WEIGHT))


def test_bars_inside_a_run_move_its_one_bar_and_still_log(clock, caplog):
    caplog.set_level(logging.INFO)
    with whole_run("training", {"prepare": 1, "fit": 1}) as run:
        with phase("prepare"):
            pass
        with phase("fit"):
            bar = Progress("cnn", 4, unit="epoch")
            assert bar.bar is None and bar.run is run
            bar.update(2, "epoch 2/4")
            assert run.fraction() == pytest.approx(0.75)
            bar.close()
            assert run.fraction() == pytest.approx(1.0)
    assert "training: fit (phase 2 of 2); 50% done" in caplog.text
    assert "cnn epoch 2/4" in caplog.text
    assert progress.current_run() is None


def test_a_phase_outside_a_run_does_nothing():
    with phase("fit"):
        assert progress.current_run() is None
    assert Progress("alone", 2).run is None
