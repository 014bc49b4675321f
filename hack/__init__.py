"""Dev tooling: the local cluster, image builds and the demo (not part of the operator's wheel).

See hack/README.md. The tests import from here; nothing here imports the tests.
"""
