"""The project's cluster tool: a real Kubernetes cluster for tests and the demo.

`python -m tests.cluster up|down|status|kubeconfig|load IMAGE...`
"""
