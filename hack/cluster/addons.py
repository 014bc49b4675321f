"""Cluster add-ons a kind cluster has or tests need: CoreDNS and metrics-server, as real pods.

Their images are the static binaries built from the Go module proxy, wrapped
into one-layer images (images.import_binary_image), so no registry is needed.
"""

from __future__ import annotations

import time

from hack import images
from hack.kubetools import kubectl
from hack.paths import DNS_IP, VERSIONS, Paths

COREDNS_IMAGE = f"tornado-operator.local/coredns:v{VERSIONS['COREDNS_VERSION']}"
METRICS_SERVER_IMAGE = (
    f"tornado-operator.local/metrics-server:v{VERSIONS['METRICS_SERVER_VERSION']}"
)

_RESTRICTED = """
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          runAsNonRoot: true
          runAsUser: 65532
          capabilities: {drop: [ALL]}
          seccompProfile: {type: RuntimeDefault}"""

COREDNS = f"""
apiVersion: v1
kind: ServiceAccount
metadata: {{name: coredns, namespace: kube-system}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: "system:coredns"}}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: "system:coredns"}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}}
subjects: [{{kind: ServiceAccount, name: coredns, namespace: kube-system}}]
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: coredns, namespace: kube-system}}
data:
  # Cluster names only: this machine has no upstream resolver a pod could use.
  Corefile: |
    .:5353 {{
        errors
        health {{
            lameduck 5s
        }}
        ready :8181
        kubernetes cluster.local in-addr.arpa ip6.arpa {{
            pods insecure
            ttl 30
        }}
        cache 30
        loadbalance
    }}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: coredns, namespace: kube-system, labels: {{k8s-app: kube-dns}}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{k8s-app: kube-dns}}}}
  template:
    metadata: {{labels: {{k8s-app: kube-dns}}}}
    spec:
      serviceAccountName: coredns
      dnsPolicy: Default
      priorityClassName: system-cluster-critical
      containers:
      - name: coredns
        image: {COREDNS_IMAGE}
        imagePullPolicy: Never
        args: ["-conf", "/etc/coredns/Corefile"]
        ports:
        - {{containerPort: 5353, name: dns, protocol: UDP}}
        - {{containerPort: 5353, name: dns-tcp, protocol: TCP}}
        readinessProbe: {{httpGet: {{path: /ready, port: 8181}}, periodSeconds: 2}}
        livenessProbe: {{httpGet: {{path: /health, port: 8080}}, periodSeconds: 10}}
        resources: {{requests: {{cpu: 50m, memory: 40Mi}}, limits: {{memory: 170Mi}}}}
        volumeMounts: [{{name: config, mountPath: /etc/coredns, readOnly: true}}]{_RESTRICTED}
      volumes: [{{name: config, configMap: {{name: coredns}}}}]
---
apiVersion: v1
kind: Service
metadata: {{name: kube-dns, namespace: kube-system, labels: {{k8s-app: kube-dns}}}}
spec:
  clusterIP: {DNS_IP}
  selector: {{k8s-app: kube-dns}}
  ports:
  - {{name: dns, port: 53, targetPort: 5353, protocol: UDP}}
  - {{name: dns-tcp, port: 53, targetPort: 5353, protocol: TCP}}
"""

METRICS_SERVER = f"""
apiVersion: v1
kind: ServiceAccount
metadata: {{name: metrics-server, namespace: kube-system}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: "system:aggregated-metrics-reader"
  labels:
    rbac.authorization.k8s.io/aggregate-to-admin: "true"
    rbac.authorization.k8s.io/aggregate-to-edit: "true"
    rbac.authorization.k8s.io/aggregate-to-view: "true"
rules:
- apiGroups: [metrics.k8s.io]
  resources: [pods, nodes]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: "system:metrics-server"}}
rules:
- apiGroups: [""]
  resources: [nodes/metrics]
  verbs: [get]
- apiGroups: [""]
  resources: [pods, nodes]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: metrics-server-auth-reader, namespace: kube-system}}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: extension-apiserver-authentication-reader
subjects: [{{kind: ServiceAccount, name: metrics-server, namespace: kube-system}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: "metrics-server:system:auth-delegator"}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:auth-delegator"}}
subjects: [{{kind: ServiceAccount, name: metrics-server, namespace: kube-system}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: "system:metrics-server"}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:metrics-server"}}
subjects: [{{kind: ServiceAccount, name: metrics-server, namespace: kube-system}}]
---
apiVersion: v1
kind: Service
metadata: {{name: metrics-server, namespace: kube-system, labels: {{k8s-app: metrics-server}}}}
spec:
  selector: {{k8s-app: metrics-server}}
  ports: [{{name: https, port: 443, targetPort: https, protocol: TCP}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: metrics-server, namespace: kube-system, labels: {{k8s-app: metrics-server}}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{k8s-app: metrics-server}}}}
  template:
    metadata: {{labels: {{k8s-app: metrics-server}}}}
    spec:
      serviceAccountName: metrics-server
      priorityClassName: system-cluster-critical
      containers:
      - name: metrics-server
        image: {METRICS_SERVER_IMAGE}
        imagePullPolicy: Never
        args:
        - --cert-dir=/tmp
        - --secure-port=10250
        - --kubelet-preferred-address-types=InternalIP
        - --kubelet-use-node-status-port
        # The kubelet's serving certificate is self-signed, as in a kind cluster.
        - --kubelet-insecure-tls
        - --metric-resolution=15s
        ports: [{{containerPort: 10250, name: https, protocol: TCP}}]
        readinessProbe: {{httpGet: {{path: /readyz, port: https, scheme: HTTPS}}, periodSeconds: 5}}
        livenessProbe: {{httpGet: {{path: /livez, port: https, scheme: HTTPS}}, periodSeconds: 10}}
        resources: {{requests: {{cpu: 50m, memory: 50Mi}}}}
        volumeMounts: [{{name: tmp, mountPath: /tmp}}]{_RESTRICTED}
      volumes: [{{name: tmp, emptyDir: {{}}}}]
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {{name: v1beta1.metrics.k8s.io, labels: {{k8s-app: metrics-server}}}}
spec:
  service: {{name: metrics-server, namespace: kube-system}}
  group: metrics.k8s.io
  version: v1beta1
  insecureSkipTLSVerify: true
  groupPriorityMinimum: 100
  versionPriority: 100
"""


def install(p: Paths, timeout: float = 120) -> None:
    images.import_binary_image(p, COREDNS_IMAGE, p.bin / "coredns", ["/coredns"])
    images.import_binary_image(
        p, METRICS_SERVER_IMAGE, p.bin / "metrics-server", ["/metrics-server"]
    )
    kubectl("apply", "-f", "-", input=COREDNS + "---" + METRICS_SERVER, kubeconfig=p.kubeconfig)
    for name in ("coredns", "metrics-server"):
        kubectl(
            "-n",
            "kube-system",
            "rollout",
            "status",
            f"deployment/{name}",
            f"--timeout={int(timeout)}s",
            kubeconfig=p.kubeconfig,
            timeout=timeout + 10,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = kubectl(
            "get",
            "apiservice",
            "v1beta1.metrics.k8s.io",
            "-o",
            "jsonpath={.status.conditions[?(@.type=='Available')].status}",
            kubeconfig=p.kubeconfig,
            check=False,
        )
        if r.stdout.strip() == "True":
            return
        time.sleep(1)
    raise RuntimeError("metrics-server's APIService did not become Available")
