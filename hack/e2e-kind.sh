#!/usr/bin/env bash
# End to end on kind (needs Docker): build both images, load them into a kind cluster, install
# the chart, seed the models volume, train demo-v1, promote it, train demo-v2, promote it, and
# check that the inference pod followed both moves without a restart. See docs/kind.md.
#
# Environment: KIND_CLUSTER (certmodel), NAMESPACE (certmodel-system), RELEASE (certmodel),
# TAG (e2e), TIMEOUT per wait (20m), KEEP_CLUSTER=true keeps a cluster this script created,
# SKIP_BUILD=true reuses images already built, KIND / HELM / KUBECTL / DOCKER override the tools.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${CERTMODEL_CACHE:-$HOME/.cache/certmodel}
CLUSTER=${KIND_CLUSTER:-certmodel}
NS=${NAMESPACE:-certmodel-system}
RELEASE=${RELEASE:-certmodel}
TAG=${TAG:-e2e}
TIMEOUT=${TIMEOUT:-20m}
KEEP_CLUSTER=${KEEP_CLUSTER:-false}
SKIP_BUILD=${SKIP_BUILD:-false}
OPERATOR_IMAGE=certmodel/operator:$TAG
RUNTIME_IMAGE=certmodel/runtime:$TAG

tool() { # tool NAME: $NAME from the environment, then PATH, then the project's cache
  local var
  var=$(tr '[:lower:]' '[:upper:]' <<<"$1")
  if [[ -n ${!var:-} ]]; then
    echo "${!var}"
  elif command -v "$1" >/dev/null; then
    command -v "$1"
  elif [[ -x $CACHE/tools/$1 ]]; then
    echo "$CACHE/tools/$1"
  else
    echo "e2e-kind: '$1' not found (install it, or set ${var}=/path/to/$1)" >&2
    exit 2
  fi
}
DOCKER=$(tool docker)
KIND=$(tool kind)
HELM=$(tool helm)
KUBECTL=$(tool kubectl)

log() { printf '\n==> %s\n' "$*"; }
k() { "$KUBECTL" --context "kind-$CLUSTER" --namespace "$NS" "$@"; }

created=false
cleanup() {
  local rc=$?
  if ((rc != 0)); then
    log "FAILED (exit $rc); the cluster is kept for debugging: kind-$CLUSTER"
    k get all,pvc,modeltrainings,certifiedmodels,configmaps -o wide || true
    k logs "deployment/$RELEASE-operator" --tail=200 || true
    k get events --sort-by=.lastTimestamp | tail -n 40 || true
  elif [[ $created == true && $KEEP_CLUSTER != true ]]; then
    log "deleting kind cluster $CLUSTER (KEEP_CLUSTER=true keeps it)"
    "$KIND" delete cluster --name "$CLUSTER"
  fi
}
trap cleanup EXIT

log "kind cluster $CLUSTER"
if ! "$KIND" get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  "$KIND" create cluster --name "$CLUSTER" --wait 180s
  created=true
fi

if [[ $SKIP_BUILD != true ]]; then
  log "building $OPERATOR_IMAGE and $RUNTIME_IMAGE"
  "$DOCKER" build -f "$ROOT/Dockerfile.operator" -t "$OPERATOR_IMAGE" "$ROOT"
  "$DOCKER" build -f "$ROOT/Dockerfile.runtime" --build-arg WITH_DEMO_BASE=true \
    -t "$RUNTIME_IMAGE" "$ROOT"
fi
log "loading the images into kind"
"$KIND" load docker-image --name "$CLUSTER" "$OPERATOR_IMAGE" "$RUNTIME_IMAGE"

log "installing the chart as $RELEASE in $NS"
"$HELM" upgrade --install "$RELEASE" "$ROOT/charts/certmodel" \
  --kube-context "kind-$CLUSTER" --namespace "$NS" --create-namespace \
  --set "fullnameOverride=$RELEASE" \
  --set operator.image.repository=certmodel/operator --set "operator.image.tag=$TAG" \
  --set runtime.image.repository=certmodel/runtime --set "runtime.image.tag=$TAG" \
  --set operator.image.pullPolicy=Never --set runtime.image.pullPolicy=Never \
  --set models.size=5Gi --set 'models.accessModes={ReadWriteOnce}' \
  --set inference.enabled=true --set inference.model=demo
k rollout status "deployment/$RELEASE-operator" --timeout "$TIMEOUT"

log "seeding the models volume: base model smollm2-135m, datasets/demo.jsonl"
dataset=$(mktemp)
for i in $(seq 1 200); do
  printf '{"text": "Question %d: what does certmodel keep? Answer: certified, DNA-named model versions, one CURRENT pointer per line."}\n' "$i"
done >"$dataset"
k create configmap demo-dataset --from-file=demo.jsonl="$dataset" --dry-run=client -o yaml |
  k apply -f -
rm -f "$dataset"
k delete job seed-models --ignore-not-found
sed -e "s|@RUNTIME_IMAGE@|$RUNTIME_IMAGE|" -e "s|@RELEASE@|$RELEASE|g" \
  "$ROOT/hack/e2e-kind/seed-job.yaml" | k apply -f -
k wait --for=condition=Complete job/seed-models --timeout "$TIMEOUT"

train_and_promote() { # train_and_promote TRAINING: wait for it, make its DNA CURRENT
  local training=$1 dna
  log "training $training"
  k apply -f "$ROOT/config/samples/modeltraining-$training.yaml"
  k wait --for=jsonpath='{.status.phase}'=Succeeded "modeltraining/$training" --timeout "$TIMEOUT"
  dna=$(k get "modeltraining/$training" -o jsonpath='{.status.dna}')
  log "promoting $dna"
  k patch certifiedmodel demo --type merge -p "{\"spec\":{\"promotion\":{\"current\":\"$dna\"}}}"
  k wait --for=jsonpath='{.status.current}'="$dna" certifiedmodel/demo --timeout "$TIMEOUT"
  k wait --for=condition=Ready certifiedmodel/demo --timeout "$TIMEOUT"
}

k apply -f "$ROOT/config/samples/certifiedmodel-demo.yaml"
train_and_promote demo-v1
k rollout status "deployment/$RELEASE-inference" --timeout "$TIMEOUT"
pods_before=$(k get pods -l certmodel.io/model=demo \
  -o jsonpath='{range .items[*]}{.metadata.name}:{.status.containerStatuses[0].restartCount} {end}')
train_and_promote demo-v2
pods_after=$(k get pods -l certmodel.io/model=demo \
  -o jsonpath='{range .items[*]}{.metadata.name}:{.status.containerStatuses[0].restartCount} {end}')
if [[ $pods_before != "$pods_after" ]]; then
  echo "e2e-kind: inference pods changed across the promotion: '$pods_before' -> '$pods_after'" >&2
  exit 1
fi
k get modeltrainings,certifiedmodels
log "OK: two versions trained and certified; the inference pods ($pods_after) hot-reloaded"
