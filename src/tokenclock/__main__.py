"""`python -m tokenclock` (also what `torchrun -m tokenclock` runs)."""
import sys

from tokenclock.cli import main

sys.exit(main())
