#!/bin/sh
# Every deployment file through its validator; `make test` runs this first.
# $1: the folder of the tools (make tools). Rendered manifests go to $1/../rendered.
set -eu
bin=$1
out=$(dirname "$bin")/rendered
mkdir -p "$out"
step() { printf '== %s\n' "$*"; }

step hadolint Dockerfile
"$bin/hadolint" Dockerfile

step docker-compose config
"$bin/docker-compose" -f docker-compose.yml config --quiet

step cfn-lint deploy/aws
"$bin/cfn-lint" deploy/aws/telemetry.yaml

chart=deploy/helm/telemetry
step helm lint --strict, default and production values
"$bin/helm" lint --strict "$chart"
"$bin/helm" lint --strict "$chart" -f deploy/helm/production-values.yaml

step helm template, then every manifest against the Kubernetes 1.33 schemas
"$bin/helm" template telemetry "$chart" -n telemetry > "$out/default.yaml"
"$bin/helm" template telemetry "$chart" -n telemetry -f deploy/helm/production-values.yaml \
    > "$out/production.yaml"
# (KEDA's ScaledObject has no schema there: a warning, not an error.)
"$bin/kubernetes-validate" --strict --quiet --kubernetes-version 1.33.0 \
    "$out/default.yaml" "$out/production.yaml"

# One checkov run over everything: it spends most of its time starting.
# --skip-download: no network; every skip is written inline with its reason.
step checkov
"$bin/checkov" --quiet --compact --skip-download \
    --framework cloudformation kubernetes dockerfile \
    -f deploy/aws/telemetry.yaml -f Dockerfile -f "$out/default.yaml" -f "$out/production.yaml"
