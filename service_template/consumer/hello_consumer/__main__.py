"""`python -m hello_consumer`: consume the stream until SIGTERM."""

from hello_consumer.server import main

raise SystemExit(main())
