"""Start-up of TensorFlow without its C++ banner lines on the user's terminal."""
import contextlib
import os
import sys


@contextlib.contextmanager
def _stderr_silenced():
    """Point file descriptor 2 at /dev/null; TensorFlow's C++ logging bypasses Python."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def import_tensorflow_quietly(verbose=False):
    """Import TensorFlow once. Its oneDNN/absl start-up lines ignore TF_CPP_MIN_LOG_LEVEL in
    2.21, so unless `verbose`, stderr is silenced for the import only: errors raised by the
    import still reach the user as Python exceptions."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if verbose else "3")
    if verbose or "tensorflow" in sys.modules:
        import tensorflow
        return
    with _stderr_silenced():
        import tensorflow  # noqa: F401
