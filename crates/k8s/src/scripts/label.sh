#!/bin/bash
# `label` sidecar of every replication-mode database pod (registry.k8s.io/kubectl, which has
# bash since Kubernetes 1.28): labels this pod with the role that `configure` and then the
# agent's role watcher publish in $HAPRESS_RUN/role, whenever it changes, retrying every
# LABEL_INTERVAL seconds (2) until the API server accepts it. When the role watcher asks for a
# rebuild ($HAPRESS_RUN/rebuild: the server diverged), it deletes this pod, once, so that the
# StatefulSet starts it again and its `clone` init container copies a healthy peer (the old
# data directory is kept aside). Its token may only get, patch and delete this StatefulSet's
# pods.
set -uo pipefail
run=${HAPRESS_RUN:-/run/hapress}
role_file=$run/role
interval=${LABEL_INTERVAL:-2}
applied=
deleted=
while true; do
  role=$(cat "$role_file" 2>/dev/null)
  want=${role:+"{\"metadata\":{\"labels\":{\"hapress.dev/role\":\"$role\"}}}"}
  if [[ -n $want && $want != "$applied" ]]; then
    if kubectl patch pod "$POD_NAME" --namespace="$POD_NAMESPACE" --type=merge --patch="$want" >/dev/null; then
      echo "label: $want"
      applied=$want
    fi
  fi
  if [[ -s $run/rebuild && -z $deleted ]]; then
    echo "label: rebuild asked ($(<"$run/rebuild")); deleting pod $POD_NAME"
    if kubectl delete pod "$POD_NAME" --namespace="$POD_NAMESPACE" --wait=false >/dev/null; then
      deleted=1
    fi
  fi
  sleep "$interval"
done
