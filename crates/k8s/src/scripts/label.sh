#!/bin/bash
# `label` sidecar of every replication-mode database pod (registry.k8s.io/kubectl, which has
# bash since Kubernetes 1.28): labels this pod with the role that `configure` and then the
# agent's role watcher publish in $HAPRESS_RUN/role, whenever it changes, retrying every
# LABEL_INTERVAL seconds (2) until the API server accepts it. Its token may only get and
# patch this StatefulSet's pods.
set -uo pipefail
role_file=${HAPRESS_RUN:-/run/hapress}/role
interval=${LABEL_INTERVAL:-2}
applied=
while true; do
  role=$(cat "$role_file" 2>/dev/null)
  want=${role:+"{\"metadata\":{\"labels\":{\"hapress.dev/role\":\"$role\"}}}"}
  if [[ -n $want && $want != "$applied" ]]; then
    if kubectl patch pod "$POD_NAME" --namespace="$POD_NAMESPACE" --type=merge --patch="$want" >/dev/null; then
      echo "label: $want"
      applied=$want
    fi
  fi
  sleep "$interval"
done
