#!/bin/bash
# `label` sidecar of every replication-mode database pod (registry.k8s.io/kubectl, which has
# bash since Kubernetes 1.28): applies the role label patch that `configure` and then the
# agent's role watcher publish in $HAPRESS_RUN/role-patch.json to this pod, whenever it
# changes, retrying every LABEL_INTERVAL seconds (2) until the API server accepts it. Its
# token may only get and patch this StatefulSet's pods.
set -uo pipefail
patch_file=${HAPRESS_RUN:-/run/hapress}/role-patch.json
interval=${LABEL_INTERVAL:-2}
applied=
while true; do
  want=$(cat "$patch_file" 2>/dev/null)
  if [[ -n $want && $want != "$applied" ]]; then
    if kubectl patch pod "$POD_NAME" --namespace="$POD_NAMESPACE" --type=merge --patch="$want" >/dev/null; then
      echo "label: $want"
      applied=$want
    fi
  fi
  sleep "$interval"
done
