"""`python -m intentkit.serve ...` = `intentkit serve ...` (the older spelling, kept working)."""
import sys

from ..cli import main

sys.exit(main(["serve", *sys.argv[1:]], progs={"serve": "python -m intentkit.serve"}))
