"""`python -m bots` runs the same CLI as `dify-bots`."""

from bots.cli import main

raise SystemExit(main())
