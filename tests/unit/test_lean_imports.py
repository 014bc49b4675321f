"""lean_imports: the operator's process loads kopf and kubernetes_asyncio without any client
model, and the client still loads a kubeconfig and talks to a server. Run in a fresh
interpreter each, since imports are once per process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys
    from aiohttp import web
    from tornado_operator import lean_imports
    assert lean_imports.apply()
    assert lean_imports.apply()  # a second call changes nothing
    import kopf
    from kopf._cogs.helpers import thirdparty
    from tornado_operator import handlers, kubeapi
    from tornado_operator.resources import TORNADO_SERVICE

    async def main() -> dict:
        seen = []

        async def handle(request):
            seen.append((request.path, request.headers.get("Authorization")))
            return web.json_response({"kind": "TornadoService", "metadata": {"name": "a"}})

        app = web.Application()
        app.router.add_get("/{tail:.*}", handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        with open(sys.argv[1], "w") as f:
            json.dump({
                "apiVersion": "v1", "kind": "Config", "current-context": "c",
                "clusters": [{"name": "k", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                "users": [{"name": "u", "user": {"token": "t0ken"}}],
                "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
            }, f)
        import os
        os.environ["KUBECONFIG"] = sys.argv[1]
        kube = await kubeapi.Kube.from_environment()
        got = await kube.get(TORNADO_SERVICE, "ns", "a")
        await kube.close()
        await runner.cleanup()
        return {
            "got": got,
            "seen": seen,
            "kopf_sees_no_client": thirdparty.V1ObjectMetaAsync is None,
            "modules": sorted(
                m for m, mod in sys.modules.items() if mod and m.startswith("kubernetes")
            ),
        }

    print(json.dumps(asyncio.run(main())))
    """
)


def test_the_operator_loads_no_client_model_and_still_talks(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "kubeconfig")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.splitlines()[-1])
    assert result["got"] == {"kind": "TornadoService", "metadata": {"name": "a"}}
    assert result["seen"] == [
        ["/apis/tornado-operator.dev/v1alpha1/namespaces/ns/tornadoservices/a", "Bearer t0ken"]
    ]
    assert result["kopf_sees_no_client"]
    modules = result["modules"]
    assert "kubernetes_asyncio.client.api_client" in modules
    assert not [m for m in modules if m.startswith("kubernetes_asyncio.client.models.")]
    assert not [m for m in modules if m.startswith("kubernetes_asyncio.client.api.")]
    assert not [m for m in modules if m == "kubernetes" or m.startswith("kubernetes.")]


def test_too_late_is_said() -> None:
    script = (
        "import kubernetes_asyncio.client\n"
        "from tornado_operator import lean_imports\n"
        "print(lean_imports.apply())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
