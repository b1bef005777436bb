"""Entry point of ``python -m deepgemm.precompile``."""

from .cli import main

raise SystemExit(main())
