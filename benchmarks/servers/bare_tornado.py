"""A bare Tornado app, as in Tornado's own hello world, plus sequential upstream calls.

python bare_tornado.py PORT [UPSTREAM_URL ...]
"""

from __future__ import annotations

import asyncio
import json
import sys

from tornado.httpclient import AsyncHTTPClient
from tornado.web import Application, RequestHandler

UPSTREAMS = sys.argv[2:]


class Hello(RequestHandler):
    def get(self) -> None:
        self.write("Hello, world!\n")


class Sequential(RequestHandler):
    """Calls the upstreams one after another: what fan-out is measured against."""

    async def get(self) -> None:
        client = AsyncHTTPClient(max_clients=1000)
        codes = []
        for url in UPSTREAMS:
            response = await client.fetch(url, raise_error=False, request_timeout=5)
            codes.append(response.code)
        self.set_status(200 if all(c == 200 for c in codes) else 502)
        self.write(json.dumps({"codes": codes}))


async def main() -> None:
    Application([(r"/", Hello), (r"/compose", Sequential)]).listen(int(sys.argv[1]), "127.0.0.1")
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
