"""The project's cluster tool: a real Kubernetes cluster for the tests and the demo.

`python -m hack.cluster up|down|status|kubeconfig|load IMAGE...|build-images` (see __main__.py).
local.py is the offline cluster, kind.py the kind provider, providers.py picks between them.
"""
