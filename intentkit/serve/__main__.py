"""`python -m intentkit.serve ...` = `intentkit serve ...`."""
import sys

from ..cli import main

sys.exit(main(["serve", *sys.argv[1:]], progs={"serve": "python -m intentkit.serve"}))
