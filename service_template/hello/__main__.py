"""`python -m hello`: run the service until SIGTERM."""

from hello.server import main

raise SystemExit(main())
