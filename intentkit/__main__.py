"""`python -m intentkit ...` = the `intentkit` command."""
import sys

from .cli import main

sys.exit(main())
