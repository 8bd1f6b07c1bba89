"""`python -m svertka ...`, as `torchrun -m svertka train ...` starts each rank."""
import sys

from .cli import main

sys.exit(main())
