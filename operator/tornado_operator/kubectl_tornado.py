"""`kubectl tornado`: a kubectl plugin for TornadoServices (the console script `kubectl-tornado`).

    kubectl tornado status [NAME] [-n NS | -A] [-o table|wide|json]
    kubectl tornado graph [-n NS | -A] [--dot | -o json]

`status`: one table, one row per TornadoService: Ready, replicas (ready/desired), the autoscaling
state and the health of its upstreams. `graph`: the call graph of the namespace (spec.upstreams),
each edge with what the caller saw over its last window (status.upstreams), as a text tree, in
Graphviz's dot language with `--dot`, or as JSON.

kubectl's conventions: `-n/--namespace` (default: the kubeconfig context's namespace, else
`default`), `-A/--all-namespaces`, `--kubeconfig` (else $KUBECONFIG, else ~/.kube/config),
`--context`, `-o json`; errors go to stderr as `error: ...` (or `Error from server (Reason): ...`
for what the API server said) and exit with 1; success exits with 0, also when nothing is found
("No resources found in NS namespace.", on stderr, as kubectl says it).

Everything but `main` and `fetch` is pure: the tests feed it TornadoService objects.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NoReturn

from tornado_operator import GROUP, PLURAL, VERSION

JSONDict = dict[str, Any]
Key = tuple[str, str]

PROG = "kubectl tornado"
FAILING = ("Failing", "NotFound")


class PluginError(Exception):
    """Something to say on stderr before exiting with 1."""


# -- reading a TornadoService --------------------------------------------------------------------


def _condition(obj: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == type_:
            return cond
    return None


def _key(obj: Mapping[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


def ready_of(obj: Mapping[str, Any]) -> str:
    cond = _condition(obj, "Ready")
    return str(cond.get("status")) if cond else "Unknown"


def replicas_of(obj: Mapping[str, Any]) -> str:
    status = obj.get("status") or {}
    summary = status.get("replicaSummary")
    if summary:
        return str(summary)
    desired = (obj.get("spec") or {}).get("replicas", 1)
    return f"{status.get('readyReplicas', 0)}/{desired}"


def autoscaling_of(obj: Mapping[str, Any]) -> str:
    """`off`, `cpu 80% 2-5`, `concurrency 10 2-5` or (a consumer) `lag 100/replica 1-8`, with
    what the operator's autoscaler saw."""
    auto = (obj.get("spec") or {}).get("autoscaling") or {}
    if not auto.get("enabled"):
        return "off"
    bounds = f"{auto.get('minReplicas', 2)}-{auto.get('maxReplicas', 5)}"
    if auto.get("metric") == "concurrency":
        text = f"concurrency {auto.get('targetConcurrency', '?'):g} {bounds}".replace(
            "concurrency ? ", "concurrency "
        )
        seen = (obj.get("status") or {}).get("autoscaling") or {}
        if isinstance(seen.get("observedConcurrency"), int | float):
            text += f" (seen {seen['observedConcurrency']:.1f}"
            if seen.get("desiredReplicas") is not None:
                text += f", wants {seen['desiredReplicas']}"
            text += ")"
        if seen.get("panicMode"):
            text += " panic"
        return text
    if auto.get("metric") == "lag":
        # A consumer (spec.consumer): the backlog is status.consumer's, the decision autoscaling's.
        text = f"lag {auto.get('targetLagPerReplica', '?')}/replica {bounds}"
        status = obj.get("status") or {}
        backlog = (status.get("consumer") or {}).get("backlog")
        wants = (status.get("autoscaling") or {}).get("desiredReplicas")
        seen = [f"backlog {backlog}" if isinstance(backlog, int) else None]
        seen.append(f"wants {wants}" if wants is not None else None)
        if any(seen):
            text += " (" + ", ".join(part for part in seen if part) + ")"
        return text
    return f"cpu {auto.get('targetCPUUtilizationPercentage', 80)}% {bounds}"


def _entries(obj: Mapping[str, Any]) -> list[JSONDict]:
    """The caller's upstreams: status.upstreams items, with spec entries not yet in status."""
    namespace = _key(obj)[0]
    seen = {
        str(i.get("name")): dict(i)
        for i in (obj.get("status") or {}).get("upstreams") or []
        if isinstance(i, Mapping)
    }
    out: list[JSONDict] = []
    for item in (obj.get("spec") or {}).get("upstreams") or []:
        name = str(item.get("name"))
        entry: JSONDict = {"name": name}
        if item.get("service"):
            entry["service"] = item["service"]
            entry["namespace"] = item.get("namespace") or namespace
        elif item.get("url"):
            entry["url"] = item["url"]
        entry.update(seen.get(name, {}))
        entry.setdefault("state", "Unknown")
        out.append(entry)
    return out


def upstreams_of(obj: Mapping[str, Any]) -> str:
    """`-` without upstreams, else `2/3 healthy` and the failing ones by name."""
    entries = _entries(obj)
    if not entries:
        return "-"
    bad = [e for e in entries if e["state"] in FAILING]
    good = sum(1 for e in entries if e["state"] in ("Healthy", "Idle"))
    text = f"{good}/{len(entries)} healthy"
    if bad:
        text += " (" + ", ".join(f"{e['name']} {str(e['state']).lower()}" for e in bad) + ")"
    return text


def _age(obj: Mapping[str, Any], now: datetime.datetime) -> str:
    stamp = (obj.get("metadata") or {}).get("creationTimestamp")
    try:
        created = datetime.datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    seconds = int((now - created).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit != "m" else 1):
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def status_row(obj: Mapping[str, Any]) -> JSONDict:
    """What `status` says of one TornadoService (also its `-o json` item)."""
    namespace, name = _key(obj)
    ready = _condition(obj, "Ready") or {}
    health = _condition(obj, "UpstreamsHealthy")
    return {
        "namespace": namespace,
        "name": name,
        "ready": ready_of(obj),
        "readyReason": ready.get("reason"),
        "replicas": replicas_of(obj),
        "autoscaling": autoscaling_of(obj),
        "upstreams": upstreams_of(obj),
        "upstreamsHealthy": health.get("status") if health else None,
        "upstreamDetails": _entries(obj),
    }


def table(rows: Sequence[Sequence[str]]) -> str:
    """Columns padded as kubectl pads them: three spaces between, no trailing space."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [c.ljust(w) for c, w in zip(row, widths, strict=True)]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def status_table(
    objects: Sequence[Mapping[str, Any]],
    *,
    all_namespaces: bool,
    wide: bool = False,
    now: datetime.datetime | None = None,
) -> str:
    now = now or datetime.datetime.now(datetime.UTC)
    header = ["NAME", "READY", "REPLICAS", "AUTOSCALING", "UPSTREAMS", "AGE"]
    if wide:
        header.insert(2, "REASON")
    if all_namespaces:
        header.insert(0, "NAMESPACE")
    rows = [header]
    for obj in sorted(objects, key=_key):
        row = status_row(obj)
        cells = [
            row["name"],
            row["ready"],
            row["replicas"],
            row["autoscaling"],
            row["upstreams"],
            _age(obj, now),
        ]
        if wide:
            cells.insert(2, str(row["readyReason"] or ""))
        if all_namespaces:
            cells.insert(0, row["namespace"])
        rows.append(cells)
    return table(rows)


# -- the call graph ------------------------------------------------------------------------------


def edges_of(objects: Iterable[Mapping[str, Any]]) -> list[JSONDict]:
    """One edge per spec.upstreams entry: from the caller to a TornadoService or a URL."""
    found: list[JSONDict] = []
    for obj in sorted(objects, key=_key):
        caller = _key(obj)
        for entry in _entries(obj):
            edge: JSONDict = {
                "from": {"namespace": caller[0], "name": caller[1]},
                "name": entry["name"],
                "state": entry["state"],
            }
            if "service" in entry:
                edge["to"] = {"namespace": entry["namespace"], "name": entry["service"]}
            else:
                edge["to"] = {"url": entry.get("url")}
            for field in (
                "calls",
                "errorRatio",
                "latencyP50Milliseconds",
                "latencyP99Milliseconds",
                "breaker",
                "message",
            ):
                if field in entry:
                    edge[field] = entry[field]
            found.append(edge)
    return found


def _node(ref: Mapping[str, Any], home: str | None) -> str:
    if "url" in ref:
        return str(ref["url"])
    return str(ref["name"]) if ref["namespace"] == home else f"{ref['namespace']}/{ref['name']}"


def outcome(edge: Mapping[str, Any]) -> str:
    """An edge's outcome in a few words: state, calls, errors, latency, breaker."""
    parts = [str(edge["state"])]
    if "calls" in edge:
        parts.append(f"{edge['calls']} calls, {float(edge.get('errorRatio', 0)) * 100:.0f}% errors")
    if "latencyP99Milliseconds" in edge:
        parts.append(f"p99 {edge['latencyP99Milliseconds']:g} ms")
    if edge.get("breaker") not in (None, "closed"):
        parts.append(f"breaker {edge['breaker']}")
    if edge["state"] == "NotFound":
        parts.append("no such TornadoService")
    return ", ".join(parts)


def graph_json(objects: Sequence[Mapping[str, Any]]) -> JSONDict:
    nodes = [
        {"namespace": k[0], "name": k[1], "ready": ready_of(o)}
        for k, o in sorted((_key(o), o) for o in objects)
    ]
    return {"nodes": nodes, "edges": edges_of(objects)}


def tree(objects: Sequence[Mapping[str, Any]], *, namespace: str | None) -> str:
    """The call graph as a text tree: each service that nobody here calls is a root (or, in a
    cycle with no such service, the first by name), its upstreams below it with the edge's
    outcome; a service met again on the same path is marked (cycle) and not expanded."""
    by_key = {_key(o): o for o in objects}
    edges = edges_of(objects)
    out_of: dict[Key, list[JSONDict]] = {}
    called: set[Key] = set()
    for edge in edges:
        src = (edge["from"]["namespace"], edge["from"]["name"])
        out_of.setdefault(src, []).append(edge)
        if "name" in edge["to"]:
            called.add((edge["to"]["namespace"], edge["to"]["name"]))
    roots = [k for k in sorted(by_key) if k not in called]
    covered: set[Key] = set()
    lines: list[str] = []

    def label(key: Key) -> str:
        obj = by_key.get(key)
        name = key[1] if key[0] == namespace else f"{key[0]}/{key[1]}"
        if obj is None:
            return f"{name} (not found)"
        return f"{name} (Ready {ready_of(obj)}, {replicas_of(obj)})"

    def walk(key: Key, prefix: str, path: tuple[Key, ...]) -> None:
        covered.add(key)
        children = out_of.get(key, [])
        for i, edge in enumerate(children):
            last = i == len(children) - 1
            branch, indent = ("└── ", "    ") if last else ("├── ", "│   ")
            to = edge["to"]
            if "url" in to:
                lines.append(f"{prefix}{branch}{edge['name']}: {to['url']}  [{outcome(edge)}]")
                continue
            target = (to["namespace"], to["name"])
            shown = label(target)
            if target in path or target == key:
                lines.append(f"{prefix}{branch}{edge['name']}: {shown} (cycle)  [{outcome(edge)}]")
                continue
            lines.append(f"{prefix}{branch}{edge['name']}: {shown}  [{outcome(edge)}]")
            if target in by_key:
                walk(target, prefix + indent, (*path, target))

    for root in roots:
        lines.append(label(root))
        walk(root, "", (root,))
    for key in sorted(by_key):  # cycles nobody outside calls
        if key not in covered:
            lines.append(label(key))
            walk(key, "", (key,))
    return "\n".join(lines) + "\n" if lines else ""


_DOT_COLORS = {"Healthy": "darkgreen", "Failing": "red", "NotFound": "red", "Idle": "grey"}


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dot(objects: Sequence[Mapping[str, Any]], *, namespace: str | None) -> str:
    """The call graph in Graphviz's dot language: `kubectl tornado graph --dot | dot -Tsvg`."""
    lines = ["digraph tornado {", "  rankdir=LR;", "  node [shape=box];"]
    for obj in sorted(objects, key=_key):
        key = _key(obj)
        name = key[1] if key[0] == namespace else f"{key[0]}/{key[1]}"
        ready = ready_of(obj)
        color = "darkgreen" if ready == "True" else "red"
        text = f"{name} (Ready {ready})"
        lines.append(f"  {_quote(name)} [color={color}, label={_quote(text)}];")
    for edge in edges_of(objects):
        src = _node(edge["from"], namespace)
        dst = _node(edge["to"], namespace)
        color = _DOT_COLORS.get(str(edge["state"]), "black")
        label = f"{edge['name']}: {outcome(edge)}"
        lines.append(f"  {_quote(src)} -> {_quote(dst)} [color={color}, label={_quote(label)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


# -- the command line ----------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # kubectl's way: one line, a pointer to --help, exit code 1.
        sys.stderr.write(f"error: {message}\nSee '{self.prog} --help' for usage.\n")
        raise SystemExit(1)


def parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("-n", "--namespace", help="the namespace (default: the context's)")
    common.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    common.add_argument("--kubeconfig", help="the kubeconfig file (default: $KUBECONFIG)")
    common.add_argument("--context", help="the kubeconfig context to use")
    p = _Parser(prog=PROG, description="TornadoServices at a glance: status and call graph.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    st = sub.add_parser(
        "status", parents=[common], help="ready, replicas, autoscaling and upstream health"
    )
    st.add_argument("name", nargs="?", help="one TornadoService (default: all)")
    st.add_argument("-o", "--output", choices=["table", "wide", "json"], default="table")
    gr = sub.add_parser("graph", parents=[common], help="the call graph, each edge's outcome")
    gr.add_argument("--dot", action="store_true", help="Graphviz dot instead of a tree")
    gr.add_argument("-o", "--output", choices=["tree", "json"], default="tree")
    return p


def _api(args: argparse.Namespace) -> tuple[Any, str]:
    """A CustomObjectsApi on the chosen kubeconfig and context, and the context's namespace."""
    from kubernetes import client, config  # imported here: the pure parts need no client
    from kubernetes.config.config_exception import ConfigException

    try:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=args.kubeconfig, context=args.context
        )
        _contexts, active = config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
            config_file=args.kubeconfig
        )
    except (ConfigException, OSError, TypeError) as exc:
        raise PluginError(f"cannot load the kubeconfig: {exc}") from None
    if args.context:
        contexts = {c["name"]: c for c in _contexts}
        active = contexts.get(args.context, active)
    namespace = ((active or {}).get("context") or {}).get("namespace") or "default"
    return client.CustomObjectsApi(), str(namespace)


def fetch(args: argparse.Namespace) -> tuple[list[JSONDict], str | None]:
    """The TornadoServices asked for, and the namespace (None with -A)."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    api, context_namespace = _api(args)
    namespace = None if args.all_namespaces else (args.namespace or context_namespace)
    try:
        if getattr(args, "name", None):
            if namespace is None:
                raise PluginError("a resource cannot be retrieved by name across all namespaces")
            return [
                api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, args.name)
            ], namespace
        if namespace is None:
            found = api.list_cluster_custom_object(GROUP, VERSION, PLURAL)
        else:
            found = api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    except ApiException as exc:
        raise PluginError(_server_error(exc, getattr(args, "name", None))) from None
    except (HTTPError, OSError) as exc:
        raise PluginError(f"cannot reach the API server: {exc}") from None
    return list(found.get("items") or []), namespace


def _server_error(exc: Any, name: str | None) -> str:
    try:
        body = json.loads(exc.body or "{}")
    except ValueError:
        body = {}
    reason = body.get("reason") or exc.reason or "Error"
    message = body.get("message") or str(exc)
    if exc.status == 404 and name and "not found" not in message:
        message = f'{PLURAL}.{GROUP} "{name}" not found'
    return f"Error from server ({reason}): {message}"


def run(args: argparse.Namespace, out: Any = sys.stdout, err: Any = sys.stderr) -> int:
    if args.all_namespaces and args.namespace:
        raise PluginError("--namespace and --all-namespaces exclude each other")
    objects, namespace = fetch(args)
    if not objects and args.output != "json":
        where = f"in {namespace} namespace" if namespace else ""
        err.write(f"No resources found {where}.\n".replace(" .", "."))
        return 0
    if args.command == "status":
        if args.output == "json":
            out.write(json.dumps({"items": [status_row(o) for o in objects]}, indent=2) + "\n")
        else:
            out.write(
                status_table(objects, all_namespaces=namespace is None, wide=args.output == "wide")
            )
    elif args.output == "json":
        out.write(json.dumps(graph_json(objects), indent=2) + "\n")
    elif args.dot:
        out.write(dot(objects, namespace=namespace))
    else:
        out.write(tree(objects, namespace=namespace))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return run(args)
    except PluginError as exc:
        text = str(exc)
        sys.stderr.write(text if text.startswith("Error from server") else f"error: {text}")
        sys.stderr.write("\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
