"""`python -m purgewarden`: the command line."""

from purgewarden.cli import main

raise SystemExit(main())
