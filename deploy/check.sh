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

# One checkov run over everything: it spends most of its time starting.
# --skip-download: no network; every skip is written inline with its reason.
step checkov
"$bin/checkov" --quiet --compact --skip-download --framework cloudformation dockerfile \
    -f deploy/aws/telemetry.yaml -f Dockerfile
