{{/*
RBAC rules: exactly what `tornado-operator run` (kopf and the operator) calls. kopf runs with scanning
disabled, so it needs no access to CRDs or Namespaces. tests/chart/test_install.py checks the live result
of these rules against an allowlist with `kubectl auth can-i --list`.
*/}}

{{/* Namespaced rules: granted in every namespace (ClusterRole) or in each watched one (Role). */}}
{{- define "tornado-operator.rules.namespaced" -}}
# kopf watches TornadoServices and keeps its handler state in their annotations.
- apiGroups: [tornado-operator.dev]
  resources: [tornadoservices]
  verbs: [get, list, watch, patch]
# The operator writes status: conditions, replicas, selector, url, and the concurrency
# autoscaler's status.autoscaling.
- apiGroups: [tornado-operator.dev]
  resources: [tornadoservices/status]
  verbs: [get, patch]
# The concurrency autoscaler (spec.autoscaling.metric concurrency) reads and writes spec.replicas
# through the scale subresource, as an HPA would. It scrapes the pods' /metrics on their IPs,
# which takes no RBAC (only network access, see the README on NetworkPolicies).
- apiGroups: [tornado-operator.dev]
  resources: [tornadoservices/scale]
  verbs: [get, patch]
# Children, server-side applied (an apply that creates needs create as well as patch) and watched
# for drift. Deleting them is left to garbage collection through their owner references.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch]
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, patch]
# HPA and PDB are also deleted when switched off (only the operator's own, by uid precondition).
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, list, watch, create, patch, delete]
# NetworkPolicies (spec.networkPolicy): deleted when switched off, like HPA and PDB.
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [get, list, watch, create, patch, delete]
# Read only: why a service is not Ready (image pulls, crash loops).
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
# Events on the important transitions (core/v1).
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- if and .Values.operator.peering.enabled (not (include "tornado-operator.clusterWide" .)) }}
# kopf peering in a watched namespace: one replica active, the others standing by.
- apiGroups: [kopf.dev]
  resources: [kopfpeerings]
  verbs: [get, list, watch, patch]
{{- end }}
{{- end }}

{{/* Cluster-scoped rules: only when watching every namespace. */}}
{{- define "tornado-operator.rules.cluster" -}}
{{- if .Values.operator.peering.enabled }}
# kopf peering across the cluster: one replica active, the others standing by.
- apiGroups: [kopf.dev]
  resources: [clusterkopfpeerings]
  verbs: [get, list, watch, patch]
{{- end }}
{{- end }}
