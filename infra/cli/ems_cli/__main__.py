"""`python -m ems_cli`: the `ems` command."""

from ems_cli import main

raise SystemExit(main())
