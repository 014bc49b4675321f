"""Flask's hello world and sequential upstream calls, served by gunicorn with one sync worker.

BENCH_UPSTREAMS=url,url gunicorn -w 1 -k sync -b 127.0.0.1:PORT flask_app:app
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request

from flask import Flask

UPSTREAMS = [u for u in os.environ.get("BENCH_UPSTREAMS", "").split(",") if u]

app = Flask(__name__)


@app.get("/")
def hello() -> str:
    return "Hello, world!\n"


@app.get("/compose")
def compose() -> tuple[dict[str, list[int]], int]:
    codes = []
    for url in UPSTREAMS:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                response.read()
                codes.append(response.status)
        except (urllib.error.URLError, OSError):
            codes.append(599)
    return {"codes": codes}, 200 if all(c == 200 for c in codes) else 502
