"""Labels and selectors shared by every child object."""

from __future__ import annotations

import re

from tornado_operator import FIELD_MANAGER

MANAGED_BY = "app.kubernetes.io/managed-by"
INSTANCE = "app.kubernetes.io/instance"
NAME = "app.kubernetes.io/name"
COMPONENT = "app.kubernetes.io/component"
PART_OF = "app.kubernetes.io/part-of"
VERSION = "app.kubernetes.io/version"

# On a consumer's pods (spec.consumer): the broker's NetworkPolicy (deploy/broker/redis/redis.yaml)
# lets in the pods that carry it with the value "true".
BROKER_CLIENT = "tornado-operator.dev/broker-client"

# Server-side filter for the child watches: every child and pod carries it.
MANAGED_SELECTOR = f"{MANAGED_BY}={FIELD_MANAGER}"

_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def selector_labels(name: str) -> dict[str, str]:
    """The pod selector. Deployment selectors are immutable, so this never includes anything
    that can change over the life of a TornadoService."""
    return {NAME: name, INSTANCE: name, MANAGED_BY: FIELD_MANAGER}


def selector_string(name: str) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(selector_labels(name).items()))


def image_version(image: str) -> str | None:
    """The tag of an image reference, when it is a valid label value (digests are not)."""
    last = image.rsplit("/", 1)[-1]
    if "@" in last or ":" not in last:
        return None
    tag = last.rsplit(":", 1)[1]
    return tag if len(tag) <= 63 and _LABEL_VALUE.match(tag) else None


def common_labels(name: str, image: str) -> dict[str, str]:
    """The recommended app.kubernetes.io/* labels for a child object and its pods."""
    labels = {
        **selector_labels(name),
        COMPONENT: "web",
        PART_OF: name,
    }
    version = image_version(image)
    if version:
        labels[VERSION] = version
    return labels
