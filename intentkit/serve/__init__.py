"""`python -m intentkit.serve` is kept for scripts written before `python -m intentkit serve`;
the service itself is intentkit.serving.app."""
