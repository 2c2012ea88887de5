"""`python -m ems_local`: the same as `ems local up`."""

from ems_local.cli import main

raise SystemExit(main())
