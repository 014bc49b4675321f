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
from hack.steps import Steps, elapsed

RELEASE = "tornado-operator"
OPERATOR_NAMESPACE = "tornado-operator"
DEMO_NAMESPACE = "tornado-demo"
SERVICE = "hello"


def cluster(steps: Steps) -> tuple[str, str]:
    """(provider, kubeconfig) of a running cluster: kind when it works here, else the local one."""
    if shutil.which("kind") and kind.usable():
        what = f"kind cluster {kind.KIND_CLUSTER!r} from kind-config.yaml"
        kc = steps.run(
            "cluster", what, "about 2 min cold", lambda: providers.ensure_cluster("kind")
        )
        return "kind", str(kc)
    what = "local offline cluster (kind is not available here): control plane, node, add-ons"
    kc = steps.run("cluster", what, "about 1 min", lambda: providers.ensure_cluster("local"))
    return "local", str(kc)


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
    steps = Steps("demo", 7)  # the seven steps.run calls below
    provider, kubeconfig = cluster(steps)
    os.environ["KUBECONFIG"] = kubeconfig

    base = steps.run(
        "base-image",
        f"base image: {images.OFFICIAL_BASE} if Docker has it, else Debian bookworm (debootstrap)",
        "about 3 min cold",
        images.default_base,
    )
    refs = steps.run(
        "images",
        f"building the service-template and operator images {images.PROJECT_VERSION} on {base}",
        "about 2 min cold",
        lambda: [images.build_template_image(), images.build_operator_image()],
    )
    steps.run(
        "load",
        "loading the images into the cluster's node",
        "about 30 s",
        lambda: providers.load_images(refs),
    )

    def install() -> None:
        kt.ensure_namespace(OPERATOR_NAMESPACE, kt.RESTRICTED_LABELS)
        kt.adopt_crds(RELEASE, OPERATOR_NAMESPACE)
        print(kt.install(RELEASE, OPERATOR_NAMESPACE))

    steps.run(
        "install",
        f"helm upgrade --install {RELEASE} charts/tornado-operator -n {OPERATOR_NAMESPACE}",
        "about 1 min",
        install,
    )

    def apply() -> str:
        kt.ensure_namespace(DEMO_NAMESPACE, kt.RESTRICTED_LABELS)
        kubectl("-n", DEMO_NAMESPACE, "apply", "-f", str(REPO / "examples" / "hello.yaml"))
        kt.wait_ready(DEMO_NAMESPACE, SERVICE, timeout=300)
        return kubectl("-n", DEMO_NAMESPACE, "get", "tsvc", SERVICE).stdout.rstrip()

    table = steps.run(
        "example",
        f"kubectl apply -f examples/hello.yaml -n {DEMO_NAMESPACE}; waiting for tsvc/{SERVICE}",
        "about 1 min",
        apply,
    )

    def call() -> tuple[int, str]:
        with kt.port_forward(DEMO_NAMESPACE, f"service/{SERVICE}", 80) as url:
            return kt.get_until_ok(f"{url}/")

    status, body = steps.run(
        "call",
        f"calling service/{SERVICE} through kubectl port-forward",
        "a few seconds",
        call,
    )
    print(f"{table}\nGET / -> {status} {body.strip()}")

    env = f"KUBECONFIG={kubeconfig}"
    k, h, path = "kubectl", "helm", _path_line()
    teardown = (
        f"kind delete cluster --name {kind.KIND_CLUSTER}"
        if provider == "kind"
        else "make cluster-down   (python -m hack.cluster down)"
    )
    print(
        f"""
Done in {elapsed(time.monotonic() - started)}. The operator runs in namespace {OPERATOR_NAMESPACE},
the service in {DEMO_NAMESPACE}.

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
  the cluster:  {teardown}
"""
    )
    return 0


def down() -> int:
    """Remove what the demo installed (the kept CRDs stay, as after any `helm uninstall`)."""
    steps = Steps("demo-down", 3)
    kc = steps.run("cluster", "finding the cluster", "a few seconds", providers.ensure_cluster)
    os.environ["KUBECONFIG"] = str(kc)
    steps.run(
        "namespace",
        f"deleting namespace {DEMO_NAMESPACE}",
        "about 30 s",
        lambda: kubectl(
            "delete", "namespace", DEMO_NAMESPACE, "--ignore-not-found", "--wait=true", timeout=300
        ),
    )

    def uninstall() -> None:
        helm("uninstall", RELEASE, "-n", OPERATOR_NAMESPACE, "--ignore-not-found", "--wait")
        kubectl("delete", "namespace", OPERATOR_NAMESPACE, "--ignore-not-found", "--wait=false")

    steps.run(
        "uninstall", f"helm uninstall {RELEASE} -n {OPERATOR_NAMESPACE}", "about 30 s", uninstall
    )
    return 0


if __name__ == "__main__":
    sys.exit(down() if sys.argv[1:] == ["down"] else main())
