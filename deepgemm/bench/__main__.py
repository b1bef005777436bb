"""Entry point of ``python -m deepgemm.bench``."""

from .cli import main

raise SystemExit(main())
