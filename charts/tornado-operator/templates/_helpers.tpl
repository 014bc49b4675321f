{{/* Names ---------------------------------------------------------------- */}}

{{- define "tornado-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Prefix of every object name. Truncated to 52 characters so that suffixes such as "-cluster" or "-test"
still leave a valid 63-character name.
*/}}
{{- define "tornado-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "tornado-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tornado-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tornado-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "tornado-operator.peeringName" -}}
{{- default (include "tornado-operator.fullname" .) .Values.operator.peering.name }}
{{- end }}

{{/* Labels --------------------------------------------------------------- */}}

{{/* Only name and instance: selectors are immutable, so they must never carry a version. */}}
{{- define "tornado-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tornado-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "tornado-operator.labels" -}}
helm.sh/chart: {{ include "tornado-operator.chart" . }}
{{ include "tornado-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tornado-operator
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The test hook's labels use a different app.kubernetes.io/name on purpose: a pod matching the operator
Deployment's selector without a controller would be adopted by its ReplicaSet.
*/}}
{{- define "tornado-operator.testLabels" -}}
helm.sh/chart: {{ include "tornado-operator.chart" . }}
app.kubernetes.io/name: {{ include "tornado-operator.name" . }}-test
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tornado-operator
app.kubernetes.io/component: test
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Images --------------------------------------------------------------- */}}

{{/* repository[:tag][@digest]; the digest, when given, is what the runtime pulls. */}}
{{- define "tornado-operator.imageRef" -}}
{{- $ref := .repository }}
{{- if .tag }}{{ $ref = printf "%s:%s" $ref .tag }}{{ end }}
{{- if .digest }}{{ $ref = printf "%s@%s" $ref .digest }}{{ end }}
{{- $ref }}
{{- end }}

{{- define "tornado-operator.image" -}}
{{- $img := dict "repository" .Values.image.repository "tag" (default .Chart.AppVersion .Values.image.tag) "digest" .Values.image.digest }}
{{- include "tornado-operator.imageRef" $img }}
{{- end }}

{{- define "tornado-operator.defaultServiceImage" -}}
{{- include "tornado-operator.imageRef" .Values.operator.defaultServiceImage }}
{{- end }}

{{- define "tornado-operator.testImage" -}}
{{- if .Values.tests.image.repository }}
{{- include "tornado-operator.imageRef" .Values.tests.image }}
{{- else }}
{{- include "tornado-operator.image" . }}
{{- end }}
{{- end }}

{{/* Scope ---------------------------------------------------------------- */}}

{{/* "true" when the operator watches every namespace (no list given). */}}
{{- define "tornado-operator.clusterWide" -}}
{{- if not .Values.operator.watchNamespaces }}true{{ end }}
{{- end }}

{{/*
Where the helm test puts its TornadoService: tests.namespace, else the release namespace when the
operator watches it, else the first watched namespace.
*/}}
{{- define "tornado-operator.testNamespace" -}}
{{- if .Values.tests.namespace }}
{{- .Values.tests.namespace }}
{{- else if or (not .Values.operator.watchNamespaces) (has .Release.Namespace .Values.operator.watchNamespaces) }}
{{- .Release.Namespace }}
{{- else }}
{{- first .Values.operator.watchNamespaces }}
{{- end }}
{{- end }}

{{/* Values the schema cannot check (they depend on the release). */}}
{{- define "tornado-operator.validate" -}}
{{- if and .Values.tests.enabled .Values.tests.namespace .Values.operator.watchNamespaces }}
{{- if not (has .Values.tests.namespace .Values.operator.watchNamespaces) }}
{{- fail (printf "tests.namespace %q is not in operator.watchNamespaces %v: the operator would never make the test's TornadoService Ready" .Values.tests.namespace .Values.operator.watchNamespaces) }}
{{- end }}
{{- end }}
{{- end }}
