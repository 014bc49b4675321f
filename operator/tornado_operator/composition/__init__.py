"""Composition: whom a TornadoService calls (spec.upstreams), who may call it, and how its calls go.

- `spec`: the upstream entries of a spec, their targets, URL resolution, the UPSTREAMS value,
  and the operator's copy of the CRD's CEL rules on spec.upstreams and spec.ingress.
- `topology`: which other TornadoServices need a reconcile when one changes (pure memory).
- `health`: per-upstream windows over the callers' own metrics, states, status.upstreams and
  the UpstreamsHealthy condition (pure).
- `exposition`: the template's per-upstream metrics out of a Prometheus text exposition.
- `monitor`: the operator's loop that scrapes callers every 10 s (only on the active replica).
"""
