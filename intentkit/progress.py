"""Progress of long phases: a bar with elapsed time and ETA on a terminal, log lines elsewhere.

On a terminal (stderr is a TTY) each phase gets one tqdm bar; in CI, files and pipes the same
progress is written as plain `logging` lines, as before, so logs stay greppable.

A whole run (`RunProgress`, e.g. training's prepare -> search -> fit -> refit -> write) is one
bar instead: its phases are planned with weights (the last run's seconds per phase, else
typical ones), each phase's own steps move it within the phase's share, and its ETA covers the
phases still to come, not only the current one.
"""
import contextlib
import logging
import sys
import time

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

log = logging.getLogger("intentkit")


def on_terminal():
    return sys.stderr.isatty()


class Progress:
    """`update(steps, message)` after steps of a phase of `total` steps, or `to(done, ...)`."""

    def __init__(self, name, total, unit="step"):
        self.name, self.done, self.total = name, 0, total
        self.run = _current_run
        self.bar = (tqdm(total=total, desc=name, unit=unit, leave=False, dynamic_ncols=True)
                    if on_terminal() and self.run is None else None)

    def update(self, steps, message):
        self.done += steps
        if self.run is not None:
            self.run.step(self.done / self.total if self.total else 1.0, f"{self.name} {message}")
        if self.bar is not None:
            self.bar.set_postfix_str(message, refresh=False)
            self.bar.update(steps)
        elif self.run is None or self.run.bar is None:  # on a terminal the run's bar says it
            log.info("%s %s", self.name, message)

    def to(self, done, message):
        self.update(done - self.done, message)

    def close(self):
        if self.run is not None:
            self.run.part_done()
        if self.bar is not None:
            self.bar.close()


_current_run = None  # the RunProgress whose phases Progress bars report to, if any
DEFAULT_PHASE_WEIGHT = 1.0  # a phase the plan did not name (a share of a typical whole of 10)


class RunProgress:
    """One bar for a whole run of named phases. `plan`: phase -> weight (seconds expected, or
    any unit), in order; a phase run without being planned gets DEFAULT_PHASE_WEIGHT. Within a
    phase of `parts` Progress bars, each bar moves 1/parts of the phase's share. The fraction
    done is the weights of finished phases plus the current one's done share, over all; the ETA
    is the elapsed time scaled by what is left, so it covers the remaining phases."""

    def __init__(self, name, plan):
        self.name, self.plan = name, {phase: float(w) for phase, w in plan.items() if w > 0}
        self.started = time.perf_counter()
        self.finished_weight, self.seconds = 0.0, {}
        self.current, self.parts, self.parts_done, self.part_fraction = None, 1, 0, 0.0
        self.bar = (tqdm(total=1000, desc=name, leave=True, dynamic_ncols=True,
                         bar_format="{desc} {percentage:3.0f}%|{bar}| {elapsed} elapsed"
                         "{postfix}") if on_terminal() else None)

    def fraction(self):
        total = sum(self.plan.values())
        current = (self.plan.get(self.current, 0.0)
                   * min(1.0, (self.parts_done + self.part_fraction) / self.parts))
        return min(1.0, (self.finished_weight + current) / total) if total else 0.0

    def eta_seconds(self):
        """Seconds left at the pace so far, over every phase still to run; None at the start."""
        done = self.fraction()
        if done <= 0:
            return None
        return (time.perf_counter() - self.started) * (1 - done) / done

    def describe(self):
        eta = self.eta_seconds()
        left = "ETA unknown" if eta is None else f"about {_duration(eta)} left"
        phases = list(self.plan)
        where = (f"{self.current} (phase {phases.index(self.current) + 1} of {len(phases)})"
                 if self.current in phases else "")
        return f"{self.fraction():.0%} done, {left}", where

    @contextlib.contextmanager
    def phase(self, name, parts=1):
        """The phase `name`, made of `parts` Progress bars (or none: it then jumps at its end)."""
        self.plan.setdefault(name, DEFAULT_PHASE_WEIGHT)
        self.current, self.parts, self.parts_done, self.part_fraction = name, max(1, parts), 0, 0.0
        started = time.perf_counter()
        done, where = self.describe()
        if self.bar is None:
            log.info("%s: %s; %s", self.name, where, done)
        self._show(where)
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - started, 1)
            self.finished_weight += self.plan[name]
            self.current = None
            self._show(f"{name} done")

    def skip(self, name):
        """A planned phase this run turned out not to need: its share leaves the plan."""
        self.plan.pop(name, None)

    def step(self, part_fraction, message):
        self.part_fraction = max(0.0, min(1.0, part_fraction))
        self._show(f"{self.current}: {message}")

    def part_done(self):
        self.parts_done, self.part_fraction = min(self.parts, self.parts_done + 1), 0.0
        self._show(self.current or "")

    def _show(self, message):
        if self.bar is None:
            return
        done, _ = self.describe()
        self.bar.n = round(self.fraction() * 1000)
        self.bar.set_postfix_str(f"{done.split(', ')[1]} | {message}", refresh=False)
        self.bar.refresh()

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _duration(seconds):
    seconds = round(seconds)
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


@contextlib.contextmanager
def whole_run(name, plan):
    """A RunProgress that every Progress bar and `phase` inside reports to."""
    global _current_run
    outer, _current_run = _current_run, RunProgress(name, plan)
    try:
        yield _current_run
    finally:
        _current_run.close()
        _current_run = outer


def phase(name, parts=1):
    """A phase of the whole run in progress (see RunProgress.phase); nothing without one."""
    return _current_run.phase(name, parts) if _current_run is not None else contextlib.nullcontext()


def current_run():
    """The RunProgress in progress, or None."""
    return _current_run


@contextlib.contextmanager
def terminal_logging():
    """Log lines printed above the bars instead of through them."""
    if not on_terminal():
        yield
        return
    with logging_redirect_tqdm(loggers=[logging.getLogger()]):
        yield
