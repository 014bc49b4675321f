{{/*
RBAC rules. Keep in step with the operator's own list of API calls (see tests/chart/test_rbac.py, which
checks the live result of these rules against an allowlist with `kubectl auth can-i --list`).
*/}}

{{/* Cluster-scoped: needed whatever the watched namespaces are. */}}
{{- define "tornado-operator.rules.cluster" -}}
# kopf: discovers the served version of its resources from the CRDs.
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [get, list, watch]
{{- if and .Values.operator.peering.enabled (include "tornado-operator.clusterWide" .) }}
# kopf: heartbeats of the replicas, one active and the others standing by.
- apiGroups: [kopf.dev]
  resources: [clusterkopfpeerings]
  verbs: [get, list, watch, patch]
{{- end }}
{{- end }}

{{/* Namespaced: in every namespace (ClusterRole) or in each watched one (Role). */}}
{{- define "tornado-operator.rules.namespaced" -}}
# The API: kopf watches TornadoServices and keeps its progress in annotations; the operator writes status.
- apiGroups: [tornado-operator.dev]
  resources: [tornadoservices]
  verbs: [get, list, watch, patch]
- apiGroups: [tornado-operator.dev]
  resources: [tornadoservices/status]
  verbs: [get, patch]
# Children, server-side applied under one field manager; HPA and PDB are deleted when switched off.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch]
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, patch]
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, list, watch, create, patch, delete]
# Why a service is not Ready: image pulls and crash loops show on the pods.
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
# Events for the important transitions (kopf posts core/v1 Events).
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- if and .Values.operator.peering.enabled (not (include "tornado-operator.clusterWide" .)) }}
# kopf: heartbeats of the replicas, one active and the others standing by.
- apiGroups: [kopf.dev]
  resources: [kopfpeerings]
  verbs: [get, list, watch, patch]
{{- end }}
{{- end }}
