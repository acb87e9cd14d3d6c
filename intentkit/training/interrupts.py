"""Ctrl-C during training: stop before publishing, whatever was running.

Python raises KeyboardInterrupt at the next bytecode of the main thread, but native code that
checks for signals (TensorFlow's ops do) can clear the exception, and the run then goes on and
publishes. The flag set by our handler survives that: it is checked at every epoch end and
before publishing.
"""
import contextlib
import signal
import threading

_interrupted = threading.Event()


def _on_sigint(signum, frame):
    _interrupted.set()
    raise KeyboardInterrupt


@contextlib.contextmanager
def interruptible():
    """Within: Ctrl-C stops the work at the next check, even if an exception was swallowed."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread
        return
    _interrupted.clear()
    previous = signal.signal(signal.SIGINT, _on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def stop_if_interrupted():
    if _interrupted.is_set():
        raise KeyboardInterrupt
