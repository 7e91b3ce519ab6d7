#!/usr/bin/env bash
# Validates the deployment files offline, with schemas that come inside PyPI packages:
#   - deploy/docker/compose*.yaml against the Compose Specification's JSON schema (the copy
#     vendored in check-jsonschema), alone and merged with compose.yaml, after interpolating
#     ${...} from env.example; plus the references the schema cannot see (services, secrets,
#     volumes, Dockerfiles).
#   - every YAML document in deploy/kubernetes/ (the *.example.yaml Secrets too) against the
#     strict Kubernetes schemas of $K8S_VERSION bundled in kubernetes-validate (unknown fields,
#     kinds and apiVersions are errors), before and after applying kustomization.yaml's
#     namespace, labels and images; plus the references between objects (selectors, named
#     ports, volumes, Secret keys).
#   - kustomization.yaml: every resource it lists exists, and every manifest beside it is listed
#     (the *.example.yaml Secrets excepted: they are created by hand).
# Usage: .ci/validate-deploy.sh [--self-test]
#   --self-test  also breaks copies of the files in a scratch directory, one fault at a time,
#                and requires the validation to fail on each (and to pass on an unbroken copy).
# Installs its tools into a venv under ~/.cache once (FUNLESS_VALIDATE_VENV overrides where).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
here="$repo/.ci"
self_test=0
case "${1:-}" in
  "") ;;
  --self-test) self_test=1 ;;
  *) echo "usage: $0 [--self-test]" >&2; exit 2 ;;
esac

# The Kubernetes version whose API schemas the manifests must satisfy.
K8S_VERSION=1.30
kubernetes_validate_version=1.37.0
check_jsonschema_version=0.39.0

# Pinned tools in a venv of their own (Debian's Python refuses system-wide pip).
venv="${FUNLESS_VALIDATE_VENV:-${HOME}/.cache/funless-validate-deploy}"
installed() {
  "$venv/bin/python" - "$kubernetes_validate_version" "$check_jsonschema_version" 2>/dev/null <<'PY'
import importlib.metadata as m, sys
ok = m.version("kubernetes-validate") == sys.argv[1] and m.version("check-jsonschema") == sys.argv[2]
sys.exit(0 if ok else 1)
PY
}
if ! installed; then
  if ! python3 -m venv "$venv" 2>/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install -q "kubernetes-validate==$kubernetes_validate_version" \
    "check-jsonschema==$check_jsonschema_version"
  installed || { echo "validate-deploy: the pinned tools did not install into $venv" >&2; exit 1; }
fi

# The checks (.ci/validate_deploy.py). Argument: a repository root holding deploy/docker and
# deploy/kubernetes.

validate() {
  "$venv/bin/python" "$here/validate_deploy.py" "$1" "$K8S_VERSION"
}

echo "validate-deploy: kubernetes-validate $kubernetes_validate_version (Kubernetes $K8S_VERSION schemas)," \
  "check-jsonschema $check_jsonschema_version (Compose Specification schema)"
validate "$repo"

if [ "$self_test" = 1 ]; then
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  # Each case: a file under deploy/, a text in it, what replaces that text (once), what the fault
  # is, and a piece of the error that must report it.
  cases=(
    'kubernetes/core.yaml|  replicas: 1\n|  replicas: "two"\n|Deployment replicas as a string|Deployment/funless-core: spec.replicas: '
    'kubernetes/core.yaml|  strategy:\n|  replica: 1\n  strategy:\n|an unknown field under a Deployment spec|Deployment/funless-core: spec: Additional properties are not allowed'
    'kubernetes/worker.yaml|kind: DaemonSet\n|kind: DaemonSett\n|an unknown kind|schema for kind DaemonSett'
    'kubernetes/core.yaml|  replicas: 1\n|  replicas: 1\n  replicas: 2\n|a duplicate key|core.yaml: YAML: duplicate key'
    'kubernetes/core.yaml|      targetPort: api\n|      targetPort: http\n|a Service targetPort no container names|targetPort http is not a port name'
    'kubernetes/secret-postgres.example.yaml|  url: ""\n||a Secret key the Core reads, missing|reads key url of funless-postgres'
    'kubernetes/kustomization.yaml|  - networkpolicy.yaml\n||a manifest the kustomization leaves out|does not list networkpolicy.yaml'
    'kubernetes/kustomization.yaml|  - worker.yaml\n|  - worker.yaml\n  - missing.yaml\n|a listed resource that does not exist|lists missing.yaml, which does not exist'
    'kubernetes/kustomization.yaml|  - name: funless-worker\n|  - name: funless-wrker\n|an image override that matches no container|images funless-wrker matches no container'
    'kubernetes/worker.yaml|              value: $(NODE_NAME)\n|              value: $(NODE)\n|an env $(VAR) not defined before it|uses $(NODE), which is not defined'
    'kubernetes/worker.yaml|            allowPrivilegeEscalation: false\n||a container Pod Security restricted refuses|allowPrivilegeEscalation must be false'
    'docker/compose.yaml|    ports:\n|    ports: 12\n    x-ports:\n|compose ports: 12|services.core.ports: 12 is not of type'
    'docker/compose.yaml|      core:\n        condition|      cor:\n        condition|compose depends_on a missing service|depends_on names no service: cor'
    'docker/Dockerfile.core|HEALTHCHECK|# HEALTHCHECK|compose waits for a healthy Core without a health check|core has no health check'
    'docker/compose.tls.yaml|      - funless_tls_worker_key\n|      - funless_tls_worker_keys\n|a compose secret not defined|secret funless_tls_worker_keys, which the top-level'
    'docker/env.example|POSTGRES_PASSWORD=\n||a compose variable missing from env.example|${POSTGRES_PASSWORD} is required but not in the env file'
  )
  copy_deploy() {
    rm -rf "$scratch/repo"
    mkdir -p "$scratch/repo"
    cp -r "$repo/deploy" "$scratch/repo/deploy"
  }
  echo "== self-test: an unbroken copy passes"
  copy_deploy
  if ! validate "$scratch/repo" >"$scratch/log" 2>&1; then
    cat "$scratch/log"
    echo "self-test FAILED: an unbroken copy of deploy/ did not validate" >&2
    exit 1
  fi
  failed=0
  for entry in "${cases[@]}"; do
    IFS='|' read -r file old new what expect <<<"$entry"
    copy_deploy
    "$venv/bin/python" - "$scratch/repo/deploy/$file" "$old" "$new" <<'PY'
import sys
path, old, new = sys.argv[1], sys.argv[2].replace("\\n", "\n"), sys.argv[3].replace("\\n", "\n")
text = open(path).read()
if old not in text:
    sys.exit(f"self-test case out of date: {old!r} is not in {path}")
open(path, "w").write(text.replace(old, new, 1))
PY
    if validate "$scratch/repo" >"$scratch/log" 2>&1; then
      echo "self-test FAILED: $what ($file) was not caught" >&2
      failed=1
    elif ! grep '^ERROR' "$scratch/log" | grep -F -- "$expect" >/dev/null; then
      cat "$scratch/log" >&2
      echo "self-test FAILED: $what ($file) failed, but not with an error saying: $expect" >&2
      failed=1
    else
      echo "caught: $what: $(grep '^ERROR' "$scratch/log" | grep -F -- "$expect" | head -n1 | cut -c7-)"
    fi
  done
  if [ "$failed" != 0 ]; then exit 1; fi
  echo "self-test: all ${#cases[@]} broken copies failed validation, as they must"
fi
