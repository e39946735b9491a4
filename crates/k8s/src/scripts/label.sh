#!/bin/bash
# `label` sidecar of every replication-mode database pod (registry.k8s.io/kubectl, which has
# bash since Kubernetes 1.28): labels this pod with the role that `configure` and then the
# agent's role watcher publish in $HAPRESS_RUN/role, whenever it changes, retrying every
# LABEL_INTERVAL seconds (2) until the API server accepts it. When the role watcher asks for a
# rebuild ($HAPRESS_RUN/rebuild: the server diverged), it evicts this pod, once, so that the
# StatefulSet starts it again and its `clone` init container copies a healthy peer (the old
# data directory is kept aside). Its token may only get and patch this StatefulSet's pods, and
# evict them (which their PodDisruptionBudget may refuse for a while).
set -uo pipefail
run=${HAPRESS_RUN:-/run/hapress}
role_file=$run/role
interval=${LABEL_INTERVAL:-2}
applied=
evicted=
while true; do
  role=$(cat "$role_file" 2>/dev/null)
  want=${role:+"{\"metadata\":{\"labels\":{\"hapress.dev/role\":\"$role\"}}}"}
  if [[ -n $want && $want != "$applied" ]]; then
    if kubectl patch pod "$POD_NAME" --namespace="$POD_NAMESPACE" --type=merge --patch="$want" >/dev/null; then
      echo "label: $want"
      applied=$want
    fi
  fi
  if [[ -s $run/rebuild && -z $evicted ]]; then
    # An eviction, not a delete: the database PodDisruptionBudget decides when (two diverged
    # replicas are not taken down at once); refused for now, it is asked again next round.
    echo "label: rebuild asked ($(<"$run/rebuild")); evicting pod $POD_NAME"
    eviction="{\"apiVersion\":\"policy/v1\",\"kind\":\"Eviction\",\"metadata\":{\"name\":\"$POD_NAME\",\"namespace\":\"$POD_NAMESPACE\"}}"
    if kubectl create --raw "/api/v1/namespaces/$POD_NAMESPACE/pods/$POD_NAME/eviction" -f - <<<"$eviction" >/dev/null; then
      evicted=1
    fi
  fi
  sleep "$interval"
done
