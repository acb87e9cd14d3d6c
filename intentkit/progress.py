"""Progress of long phases: a bar with elapsed time and ETA on a terminal, log lines elsewhere.

On a terminal (stderr is a TTY) each phase gets one tqdm bar; in CI, files and pipes the same
progress is written as plain `logging` lines, as before, so logs stay greppable.
"""
import contextlib
import logging
import sys

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

log = logging.getLogger("intentkit")


def on_terminal():
    return sys.stderr.isatty()


class Progress:
    """`update(steps, message)` after steps of a phase of `total` steps, or `to(done, ...)`."""

    def __init__(self, name, total, unit="step"):
        self.name, self.done = name, 0
        self.bar = (tqdm(total=total, desc=name, unit=unit, leave=False, dynamic_ncols=True)
                    if on_terminal() else None)

    def update(self, steps, message):
        self.done += steps
        if self.bar is None:
            log.info("%s %s", self.name, message)
        else:
            self.bar.set_postfix_str(message, refresh=False)
            self.bar.update(steps)

    def to(self, done, message):
        self.update(done - self.done, message)

    def close(self):
        if self.bar is not None:
            self.bar.close()


@contextlib.contextmanager
def terminal_logging():
    """Log lines printed above the bars instead of through them."""
    if not on_terminal():
        yield
        return
    with logging_redirect_tqdm(loggers=[logging.getLogger()]):
        yield
