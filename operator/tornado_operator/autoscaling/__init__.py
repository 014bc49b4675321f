"""Concurrency autoscaling: the operator's own autoscaler for `spec.autoscaling.metric:
concurrency`, scaling on requests in flight per ready pod in the style of Knative's KPA.

- `algorithm`: the pure decision (windows, panic mode, stabilization, policies, bounds).
- `scrape`: the metric contract, which pods to scrape, the bounded scraper, request rates.
- `config`: a defaulted spec to the algorithm's parameters, and the spec rules it needs.
- `controller`: one tick for one service (scrape, sample, decide) with the scraper injected.
- `report`: status.autoscaling and the scale Event for a decision.
- `metrics`: the autoscaler's own Prometheus metrics.
"""
