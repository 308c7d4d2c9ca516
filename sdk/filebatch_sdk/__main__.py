"""`python -m filebatch_sdk ...`: see `filebatch_sdk.cli`."""

from filebatch_sdk.cli import main

raise SystemExit(main())
