"""The README's first command: a cluster, the images, the operator, and a Tornado service answering.

`python -m hack.demo` (or `make demo`); `python -m hack.demo down` (or `make demo-down`) undoes it.
With kind and Docker it uses a kind cluster made from kind-config.yaml and `kind load docker-image`;
otherwise the project's local offline cluster.
Every step is idempotent, so running it again only re-checks and re-prints.
"""

from __future__ import annotations

import os
import shutil
import sys
import time

from hack import images
from hack import kubetools as kt
from hack.cluster import kind, providers
from hack.kubetools import binary, helm, kubectl
from hack.paths import REPO

RELEASE = "tornado-operator"
OPERATOR_NAMESPACE = "tornado-operator"
DEMO_NAMESPACE = "tornado-demo"
SERVICE = "hello"


def step(message: str) -> None:
    print(f"==> {message}", flush=True)


def build_images() -> list[str]:
    base = images.default_base()
    step(f"building {images.TEMPLATE_IMAGE} and {images.OPERATOR_IMAGE} (base {base})")
    return [images.build_template_image(), images.build_operator_image()]


def cluster() -> tuple[str, str]:
    """(provider, kubeconfig) of a running cluster: kind when it works here, else the local one."""
    if shutil.which("kind") and kind.usable():
        step(f"kind cluster {kind.KIND_CLUSTER!r} from kind-config.yaml")
        return "kind", str(providers.ensure_cluster("kind"))
    step("local offline cluster (kind is not available here)")
    return "local", str(providers.ensure_cluster("local"))


def _path_line() -> str:
    """An `export PATH=...` line when PATH does not already find the project's kubectl and helm."""
    dirs = []
    for tool in ("kubectl", "helm"):
        path = binary(tool)
        if shutil.which(tool) != path:
            dirs.append(os.path.dirname(path))
    return f"  export PATH={':'.join(dict.fromkeys(dirs))}:$PATH\n" if dirs else ""


def main() -> int:
    started = time.monotonic()
    provider, kubeconfig = cluster()
    os.environ["KUBECONFIG"] = kubeconfig

    refs = build_images()
    step("loading the images into the cluster's node")
    providers.load_images(refs)

    step(f"helm upgrade --install {RELEASE} charts/tornado-operator -n {OPERATOR_NAMESPACE}")
    kt.ensure_namespace(OPERATOR_NAMESPACE, kt.RESTRICTED_LABELS)
    kt.adopt_crds(RELEASE, OPERATOR_NAMESPACE)
    kt.install(RELEASE, OPERATOR_NAMESPACE)

    step(f"kubectl apply -f examples/hello.yaml -n {DEMO_NAMESPACE}")
    kt.ensure_namespace(DEMO_NAMESPACE, kt.RESTRICTED_LABELS)
    kubectl("-n", DEMO_NAMESPACE, "apply", "-f", str(REPO / "examples" / "hello.yaml"))
    step(f"waiting for tsvc/{SERVICE} to be Ready")
    kt.wait_ready(DEMO_NAMESPACE, SERVICE, timeout=300)
    print(kubectl("-n", DEMO_NAMESPACE, "get", "tsvc", SERVICE).stdout.rstrip())

    step(f"calling service/{SERVICE} through kubectl port-forward")
    with kt.port_forward(DEMO_NAMESPACE, f"service/{SERVICE}", 80) as url:
        status, body = kt.get_until_ok(f"{url}/")
    print(f"GET / -> {status}\n{body.strip()}")

    env = f"KUBECONFIG={kubeconfig}"
    k, h, path = "kubectl", "helm", _path_line()
    down = (
        f"kind delete cluster --name {kind.KIND_CLUSTER}"
        if provider == "kind"
        else "make cluster-down   (python -m hack.cluster down)"
    )
    print(
        f"""
Done in {time.monotonic() - started:.0f}s. The operator runs in namespace {OPERATOR_NAMESPACE}, the
service in {DEMO_NAMESPACE}.

Reach it again:
{path}  export {env}
  {k} -n {DEMO_NAMESPACE} port-forward service/{SERVICE} 8080:80 &
  curl http://127.0.0.1:8080/

Look around:
  {k} -n {DEMO_NAMESPACE} get tsvc,deploy,svc,pdb,pods
  {k} -n {DEMO_NAMESPACE} scale tsvc/{SERVICE} --replicas=3
  {h} test {RELEASE} -n {OPERATOR_NAMESPACE}

Tear down:
  the demo:     make demo-down   (python -m hack.demo down)
  the cluster:  {down}
"""
    )
    return 0


def down() -> int:
    """Remove what the demo installed (the kept CRDs stay, as after any `helm uninstall`)."""
    os.environ["KUBECONFIG"] = str(providers.ensure_cluster())
    step(f"deleting namespace {DEMO_NAMESPACE}")
    kubectl("delete", "namespace", DEMO_NAMESPACE, "--ignore-not-found", "--wait=true", timeout=300)
    step(f"helm uninstall {RELEASE} -n {OPERATOR_NAMESPACE}")
    helm("uninstall", RELEASE, "-n", OPERATOR_NAMESPACE, "--ignore-not-found", "--wait")
    kubectl("delete", "namespace", OPERATOR_NAMESPACE, "--ignore-not-found", "--wait=false")
    return 0


if __name__ == "__main__":
    sys.exit(down() if sys.argv[1:] == ["down"] else main())
