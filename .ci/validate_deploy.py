#!/usr/bin/env python3
"""The checks of .ci/validate-deploy.sh: compose files against the Compose Specification
schema that check-jsonschema vendors, Kubernetes manifests against kubernetes-validate's
schemas (strict), and what the schemas cannot see. Run by that script inside its venv.
Arguments: a repository root holding deploy/docker and deploy/kubernetes, and the
Kubernetes version of the schemas."""
import copy, glob, json, os, re, sys

import jsonschema
import yaml
from importlib import metadata, resources
from ruamel.yaml import YAML
import kubernetes_validate.utils as kv

root, k8s_version = sys.argv[1], sys.argv[2]
errors = []


def error(where, message):
    errors.append(f"{where}: {message}")
    print(f"ERROR {where}: {message}")


def ok(message):
    print(f"ok    {message}")


def rel(path):
    return os.path.relpath(path, root)


# ---------------------------------------------------------------- Compose
# Compose reads YAML 1.2 and rejects duplicate keys; ruamel's safe loader does the same.
compose_yaml = YAML(typ="safe", pure=True)
schema_file = resources.files("check_jsonschema") / "builtin_schemas/vendor/compose-spec.json"
compose_schema = json.loads(schema_file.read_text())
compose_validator = jsonschema.Draft202012Validator(compose_schema)
cj = f"compose-spec schema of check-jsonschema {metadata.version('check-jsonschema')}"


def schema_errors(validator, doc, where):
    found = list(validator.iter_errors(doc))
    paths = [tuple(map(str, e.absolute_path)) for e in found]
    # A wrong value also makes its parent's properties "unevaluated": report the value alone.
    found = [e for e, p in zip(found, paths) if not (e.validator == "unevaluatedProperties" and any(
        len(q) > len(p) and q[:len(p)] == p for q in paths))]
    found.sort(key=lambda e: (-len(e.absolute_path), list(map(str, e.absolute_path))))
    for e in found:
        path = ".".join(map(str, e.absolute_path)) or "(top)"
        error(where, f"{path}: {e.message}")
    return not found


def read_env_file(path):
    env = {}
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", line)
            if not m:
                error(f"{rel(path)}:{number}", "not a NAME=value line")
                continue
            env[m.group(1)] = m.group(2)
    return env


# ${NAME}, ${NAME:-default} (and -, :?, ?, :+, +), $NAME, $$; one level of nesting in the
# default, as Compose allows.
VARIABLE = re.compile(
    r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])((?:[^{}]|\{[^{}]*\})*))?\}"
    r"|([A-Za-z_][A-Za-z0-9_]*)|(\{[^}]*\}?))"
)


def interpolate(value, env, used, where):
    def substitute(m):
        if m.group(1):
            return "$"
        if m.group(6) is not None:
            error(where, f"malformed variable ${m.group(6)}")
            return ""
        name = m.group(2) or m.group(5)
        op, arg = m.group(3), m.group(4) or ""
        used.add(name)
        declared = name in env
        current = env.get(name, "")
        if op == ":-":
            return current if current else interpolate(arg, env, used, where)
        if op == "-":
            return current if declared else interpolate(arg, env, used, where)
        if op == ":+":
            return interpolate(arg, env, used, where) if current else ""
        if op == "+":
            return interpolate(arg, env, used, where) if declared else ""
        if op in (":?", "?"):
            if not declared:
                error(where, f"${{{name}}} is required but not in the env file")
            return current
        if not declared:
            error(where, f"${{{name}}} is not in the env file and has no default")
        return current

    return VARIABLE.sub(substitute, value)


def interpolate_doc(node, env, used, where):
    if isinstance(node, dict):
        return {k: interpolate_doc(v, env, used, f"{where}.{k}") for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate_doc(v, env, used, f"{where}[{i}]") for i, v in enumerate(node)]
    if isinstance(node, str):
        return interpolate(node, env, used, where)
    return node


REPLACED_LISTS = {"command", "entrypoint", "test"}


def merge(base, override, key=None):
    """Compose's merge of an override file: mappings merge, most sequences are unions, a
    command, entrypoint or health-check test is replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for k, v in override.items():
            out[k] = merge(base[k], v, k) if k in base else v
        return out
    if isinstance(base, list) and isinstance(override, list) and key not in REPLACED_LISTS:
        return base + [v for v in override if v not in base]
    return override


def dockerfile_of(service, directory):
    build = service.get("build")
    if isinstance(build, str):
        build = {"context": build}
    if not isinstance(build, dict) or "://" in str(build.get("context", ".")):
        return None
    context = os.path.normpath(os.path.join(directory, build.get("context", ".")))
    return os.path.join(context, build.get("dockerfile", "Dockerfile"))


def has_healthcheck(service, directory):
    check = service.get("healthcheck")
    if isinstance(check, dict) and not check.get("disable") and check.get("test") not in (["NONE"], "NONE"):
        return True
    dockerfile = dockerfile_of(service, directory)
    if check is None and dockerfile and os.path.isfile(dockerfile):
        checks = []
        with open(dockerfile) as f:
            for line in f:
                words = line.split()
                if words and words[0].upper() == "HEALTHCHECK":
                    checks.append(words[1].upper() if len(words) > 1 else "")
        # The last HEALTHCHECK of the file (its final stage) is the image's.
        return bool(checks) and checks[-1] != "NONE"
    return False


def compose_references(doc, directory, where):
    services = doc.get("services") or {}
    top = {kind: set((doc.get(kind) or {}).keys()) for kind in ("secrets", "configs", "volumes", "networks")}
    good = True
    for name, service in services.items():
        here = f"{where} service {name}"
        if not isinstance(service, dict):
            continue
        if "image" not in service and "build" not in service:
            error(here, "has neither image nor build")
            good = False
        depends = service.get("depends_on") or []
        for target in depends if isinstance(depends, list) else depends.keys():
            if target not in services:
                error(here, f"depends_on names no service: {target}")
                good = False
            elif isinstance(depends, dict) and (depends[target] or {}).get("condition") == "service_healthy" \
                    and not has_healthcheck(services[target], directory):
                error(here, f"waits for {target} to be healthy, but {target} has no health check "
                            "(in the compose file or its Dockerfile)")
                good = False
        for kind in ("secrets", "configs"):
            for item in service.get(kind) or []:
                source = item if isinstance(item, str) else item.get("source")
                if source not in top[kind]:
                    error(here, f"uses {kind[:-1]} {source}, which the top-level {kind} do not define")
                    good = False
        for item in service.get("volumes") or []:
            if isinstance(item, str):
                source = item.split(":")[0] if ":" in item else None
                named = source and not source.startswith((".", "/", "~", "$"))
            else:
                source = item.get("source")
                named = item.get("type") == "volume" and source
            if named and source not in top["volumes"]:
                error(here, f"mounts volume {source}, which the top-level volumes do not define")
                good = False
        networks = service.get("networks") or []
        for network in networks if isinstance(networks, list) else networks.keys():
            if network != "default" and network not in top["networks"]:
                error(here, f"joins network {network}, which the top-level networks do not define")
                good = False
        dockerfile = dockerfile_of(service, directory)
        if dockerfile and not os.path.isfile(dockerfile):
            error(here, f"build.dockerfile {rel(dockerfile)} does not exist")
            good = False
    return good


def check_compose():
    directory = os.path.join(root, "deploy/docker")
    env_path = os.path.join(directory, "env.example")
    env = read_env_file(env_path) if os.path.exists(env_path) else {}
    # Empty values are the ones the user fills in (the password): check with a stand-in.
    blanks = sorted(k for k, v in env.items() if v == "")
    filled = {k: (v if v != "" else "placeholder") for k, v in env.items()}
    base_path = os.path.join(directory, "compose.yaml")
    files = sorted(glob.glob(os.path.join(directory, "compose*.yaml")) + glob.glob(os.path.join(directory, "compose*.yml")),
                   key=lambda p: (p != base_path, p))
    if not files:
        error(rel(directory), "no compose files")
        return
    docs, used = {}, set()
    start = len(errors)
    for path in files:
        where = rel(path)
        try:
            with open(path) as f:
                doc = compose_yaml.load(f)
        except Exception as e:
            error(where, f"YAML: {e}")
            continue
        if not isinstance(doc, dict):
            error(where, "not a mapping")
            continue
        raw_ok = schema_errors(compose_validator, doc, where)
        doc = interpolate_doc(doc, filled, used, where)
        if raw_ok and schema_errors(compose_validator, doc, f"{where} (interpolated)"):
            ok(f"{where}: {cj}, as written and with env.example interpolated")
        docs[path] = doc
    unused = sorted(set(env) - used)
    if unused:
        error(rel(env_path), f"sets variables no compose file uses: {', '.join(unused)}")
    else:
        note = f" ({', '.join(blanks)} left for the user; checked with a stand-in)" if blanks else ""
        ok(f"{rel(env_path)}: sets every variable without a default that the compose files use{note}")
    # compose.yaml alone, and each other compose*.yaml as an override on top of it (-f compose.yaml -f x).
    base = docs.get(base_path)
    if base is None or len(errors) > start:
        # The reference checks below assume the shapes the schema guarantees.
        return
    for path, doc in docs.items():
        if path == base_path:
            combined, where = base, rel(base_path)
        else:
            combined, where = merge(base, doc), f"{rel(base_path)} + {rel(path)}"
        merged_ok = path == base_path or schema_errors(compose_validator, combined, f"{where} (merged)")
        if compose_references(combined, directory, where) and merged_ok:
            services = ", ".join(combined.get("services", {}))
            ok(f"{where}: services {services}; depends_on (and its health checks), secrets, volumes and Dockerfiles resolve")


# ---------------------------------------------------------------- Kubernetes
class UniqueKeyLoader(yaml.SafeLoader):
    """YAML 1.1, as Kubernetes reads it, with duplicate keys refused."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


CLUSTER_SCOPED = {"Namespace", "PersistentVolume", "StorageClass", "ClusterRole", "ClusterRoleBinding",
                  "CustomResourceDefinition", "PriorityClass", "IngressClass", "RuntimeClass", "Node"}


def name_of(obj):
    return f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"


def validate_object(obj, where):
    try:
        version = kv.validate(obj, k8s_version, strict=True)
        return version
    except kv.ValidationError as e:
        path = ".".join(map(str, e.path)) or "(top)"
        error(where, f"{name_of(obj)}: {path}: {e.message}")
    except kv.SchemaNotFoundError as e:
        error(where, f"{name_of(obj)}: {e.message} (a typo in kind or apiVersion?)")
    except kv.VersionNotSupportedError as e:
        error(where, e.message)
    return None


def load_manifests(path):
    where = rel(path)
    try:
        with open(path) as f:
            docs = [d for d in yaml.load_all(f, Loader=UniqueKeyLoader) if d is not None]
    except Exception as e:
        error(where, f"YAML: {e}")
        return []
    objects = []
    for i, doc in enumerate(docs):
        if not isinstance(doc, dict) or not all(k in doc for k in ("apiVersion", "kind", "metadata")):
            error(where, f"document {i + 1} is not an object with apiVersion, kind and metadata")
            continue
        objects.append(doc)
    return objects


def pod_template(obj):
    spec = obj.get("spec") or {}
    kind = obj.get("kind")
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        return spec.get("template") or {}
    if kind == "CronJob":
        return ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
    if kind == "Pod":
        return obj
    return None


def containers(pod_spec):
    return (pod_spec.get("initContainers") or []) + (pod_spec.get("containers") or [])


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def kubernetes_references(objects):
    """What the API server or the running pods would trip on but the schemas cannot see."""
    by_kind = {}
    for obj, where in objects:
        by_kind.setdefault(obj["kind"], {})[obj["metadata"].get("name")] = obj
    secrets = by_kind.get("Secret", {})
    config_maps = by_kind.get("ConfigMap", {})
    pods = []  # (labels, pod spec, where, owner)
    for obj, where in objects:
        template = pod_template(obj)
        if template is None:
            continue
        labels = (template.get("metadata") or {}).get("labels") or {}
        pod_spec = template.get("spec") or {}
        pods.append((labels, pod_spec, where, name_of(obj)))
        here = f"{where}: {name_of(obj)}"
        selector = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels")
        if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet") and not matches(selector, labels):
            error(here, "spec.selector.matchLabels does not match the pod template's labels")
        volumes = {v.get("name") for v in pod_spec.get("volumes") or []}
        volumes |= {(t.get("metadata") or {}).get("name") for t in (obj.get("spec") or {}).get("volumeClaimTemplates") or []}
        for volume in pod_spec.get("volumes") or []:
            claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            if claim and claim not in by_kind.get("PersistentVolumeClaim", {}):
                error(here, f"volume {volume.get('name')} claims PersistentVolumeClaim {claim}, which no manifest defines")
            secret = (volume.get("secret") or {}).get("secretName")
            if secret and secret not in secrets:
                error(here, f"volume {volume.get('name')} uses Secret {secret}, which no manifest defines")
        if obj["kind"] == "StatefulSet":
            service = (obj.get("spec") or {}).get("serviceName")
            if service and service not in by_kind.get("Service", {}):
                error(here, f"serviceName {service} names no Service")
        for container in containers(pod_spec):
            c = f"{here} container {container.get('name')}"
            for mount in container.get("volumeMounts") or []:
                if mount.get("name") not in volumes:
                    error(c, f"mounts volume {mount.get('name')}, which the pod does not define")
            ports = {p.get("name") for p in container.get("ports") or [] if p.get("name")}
            for probe_name in ("startupProbe", "readinessProbe", "livenessProbe"):
                probe = container.get(probe_name) or {}
                for action in ("httpGet", "tcpSocket", "grpc"):
                    port = (probe.get(action) or {}).get("port")
                    if isinstance(port, str) and port not in ports:
                        error(c, f"{probe_name} uses port {port}, which the container does not name")
            defined = set()
            for env in container.get("env") or []:
                # $(NAME) expands only names defined earlier in the list; others stay literal.
                for name in re.findall(r"(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_]*)\)", str(env.get("value", ""))):
                    if name not in defined:
                        error(c, f"env {env.get('name')} uses $({name}), which is not defined before it")
                defined.add(env.get("name"))
                source = env.get("valueFrom") or {}
                for ref_kind, pool in (("secretKeyRef", secrets), ("configMapKeyRef", config_maps)):
                    ref = source.get(ref_kind)
                    if not ref or ref.get("optional"):
                        continue
                    target = pool.get(ref.get("name"))
                    if target is None:
                        error(c, f"env {env.get('name')} reads {ref_kind} {ref.get('name')}, which no manifest (or example) defines")
                    elif ref.get("key") not in {**(target.get("data") or {}), **(target.get("stringData") or {})}:
                        error(c, f"env {env.get('name')} reads key {ref.get('key')} of {ref.get('name')}, which it does not have")
    for obj, where in objects:
        here = f"{where}: {name_of(obj)}"
        spec = obj.get("spec") or {}
        if obj["kind"] == "Service" and spec.get("selector"):
            targets = [p for p in pods if matches(spec["selector"], p[0])]
            if not targets:
                error(here, "its selector matches no pod template")
            for port in spec.get("ports") or []:
                target = port.get("targetPort")
                if isinstance(target, str) and not any(
                        target in {p.get("name") for c in containers(t[1]) for p in c.get("ports") or []}
                        for t in targets):
                    error(here, f"targetPort {target} is not a port name of the pods it selects")
        if obj["kind"] == "NetworkPolicy":
            selectors = [(spec.get("podSelector") or {}).get("matchLabels")]
            for rule in (spec.get("ingress") or []) + (spec.get("egress") or []):
                for peer in (rule.get("from") or []) + (rule.get("to") or []):
                    if "podSelector" in peer and "namespaceSelector" not in peer:
                        selectors.append((peer["podSelector"] or {}).get("matchLabels"))
            for selector in selectors:
                if selector and not any(matches(selector, p[0]) for p in pods):
                    error(here, f"pod selector {selector} matches no pod template")


KUSTOMIZATION_FIELDS = {
    "apiVersion", "kind", "metadata", "resources", "components", "namespace", "namePrefix", "nameSuffix",
    "labels", "commonLabels", "commonAnnotations", "images", "replicas", "patches", "patchesStrategicMerge",
    "patchesJson6902", "configMapGenerator", "secretGenerator", "generatorOptions", "generators",
    "transformers", "validators", "replacements", "vars", "crds", "openapi", "buildMetadata",
    "sortOptions", "helmCharts", "helmGlobals", "bases", "configurations", "nameReference",
}


def image_name(image):
    image = image.split("@")[0]
    slash = image.rfind("/")
    colon = image.rfind(":")
    return image[:colon] if colon > slash else image


RESTRICTED_VOLUMES = {"name", "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                      "persistentVolumeClaim", "projected", "secret"}


def pod_security_restricted(obj, where):
    """The Pod Security Standards' restricted profile, which the funless namespace enforces: a
    pod that breaks it is refused at admission."""
    template = pod_template(obj)
    if template is None:
        return
    here = f"{where}: {name_of(obj)}"
    spec = template.get("spec") or {}
    pod_context = spec.get("securityContext") or {}
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            error(here, f"{field} is not allowed")
    for volume in spec.get("volumes") or []:
        for kind in set(volume) - RESTRICTED_VOLUMES:
            error(here, f"volume {volume.get('name')}: {kind} volumes are not allowed")
    for container in containers(spec):
        c = f"{here} container {container.get('name')}"
        context = container.get("securityContext") or {}
        if context.get("privileged"):
            error(c, "privileged is not allowed")
        if context.get("allowPrivilegeEscalation") is not False:
            error(c, "securityContext.allowPrivilegeEscalation must be false")
        capabilities = context.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            error(c, "securityContext.capabilities.drop must include ALL")
        for added in set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}:
            error(c, f"capability {added} may not be added")
        if context.get("runAsNonRoot", pod_context.get("runAsNonRoot")) is not True:
            error(c, "runAsNonRoot must be true (pod or container)")
        if context.get("runAsUser", pod_context.get("runAsUser")) == 0:
            error(c, "runAsUser must not be 0")
        seccomp = (context.get("seccompProfile") or pod_context.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            error(c, "seccompProfile.type must be RuntimeDefault or Localhost (pod or container)")
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                error(c, f"hostPort {port['hostPort']} is not allowed")


def render(obj, kustomization):
    """kustomization.yaml's namespace, labels and images applied, as `kubectl apply -k` sends it."""
    obj = copy.deepcopy(obj)
    metadata = obj.setdefault("metadata", {})
    if kustomization.get("namespace") and obj["kind"] not in CLUSTER_SCOPED:
        metadata["namespace"] = kustomization["namespace"]
    template = pod_template(obj)
    for entry in kustomization.get("labels") or []:
        pairs = entry.get("pairs") or {}
        metadata.setdefault("labels", {}).update(pairs)
        if template is not None and (entry.get("includeTemplates") or entry.get("includeSelectors")):
            template.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
        if entry.get("includeSelectors") and obj["kind"] != "Pod":
            spec = obj.setdefault("spec", {})
            if obj["kind"] == "Service":
                spec.setdefault("selector", {}).update(pairs)
            elif template is not None:
                spec.setdefault("selector", {}).setdefault("matchLabels", {}).update(pairs)
    if template is not None:
        for container in containers(template.get("spec") or {}):
            for image in kustomization.get("images") or []:
                if image_name(container.get("image", "")) == image.get("name"):
                    old = container["image"]
                    name = image.get("newName", image_name(old))
                    if image.get("digest"):
                        container["image"] = f"{name}@{image['digest']}"
                    elif image.get("newTag"):
                        container["image"] = f"{name}:{image['newTag']}"
                    else:
                        container["image"] = name + old[len(image_name(old)):]
    return obj


def check_kubernetes():
    directory = os.path.join(root, "deploy/kubernetes")
    kustomization_path = os.path.join(directory, "kustomization.yaml")
    files = sorted(p for p in glob.glob(os.path.join(directory, "*.yaml")) + glob.glob(os.path.join(directory, "*.yml"))
                   if p != kustomization_path)
    objects = []
    start = len(errors)
    for path in files:
        loaded = load_manifests(path)
        good = [name_of(o) for o in loaded if validate_object(o, rel(path))]
        if good and len(good) == len(loaded):
            ok(f"{rel(path)}: {', '.join(good)}: Kubernetes {k8s_version} schemas (strict)")
        objects += [(o, rel(path)) for o in loaded]
    seen = {}
    for obj, where in objects:
        key = (obj["apiVersion"].split("/")[0] if "/" in obj["apiVersion"] else "", obj["kind"], obj["metadata"].get("name"))
        if key in seen:
            error(where, f"{name_of(obj)} is also defined in {seen[key]}")
        seen[key] = where
    # The checks from here on assume the shapes the schemas guarantee.
    schemas_ok = len(errors) == start
    before = len(errors)
    if schemas_ok:
        kubernetes_references(objects)
    if schemas_ok and len(errors) == before:
        ok(f"{rel(directory)}: selectors, named ports, volumes, claims and Secret keys resolve between the {len(objects)} objects")

    # kustomization.yaml
    where = rel(kustomization_path)
    try:
        with open(kustomization_path) as f:
            kustomization = yaml.load(f, Loader=UniqueKeyLoader)
    except Exception as e:
        error(where, f"YAML: {e}")
        return
    if not isinstance(kustomization, dict):
        error(where, "not a mapping")
        return
    before = len(errors)
    if kustomization.get("apiVersion") != "kustomize.config.k8s.io/v1beta1" or kustomization.get("kind") != "Kustomization":
        error(where, "apiVersion/kind are not kustomize.config.k8s.io/v1beta1 Kustomization")
    for field in sorted(set(kustomization) - KUSTOMIZATION_FIELDS):
        error(where, f"unknown field {field}")
    listed = kustomization.get("resources") or []
    for item in listed:
        if not isinstance(item, str):
            error(where, f"resource {item!r} is not a path")
        elif listed.count(item) > 1:
            error(where, f"lists {item} twice")
        elif not os.path.isfile(os.path.join(directory, item)):
            error(where, f"lists {item}, which does not exist")
        elif ".example." in item:
            error(where, f"lists {item}: the example Secrets are created by hand, never by apply -k")
    for path in files:
        name = os.path.basename(path)
        if ".example." not in name and name not in listed:
            error(where, f"does not list {name}")
    chosen = [(o, w) for o, w in objects if w in {rel(os.path.join(directory, str(i))) for i in listed}]
    namespace = kustomization.get("namespace")
    namespaces = [o["metadata"].get("name") for o, _ in chosen if o["kind"] == "Namespace"]
    if namespace and namespaces and namespace not in namespaces:
        error(where, f"namespace {namespace} is not the Namespace the resources create ({', '.join(namespaces)})")
    for obj, w in objects:
        ns = obj["metadata"].get("namespace")
        if namespace and ns and ns != namespace:
            error(w, f"{name_of(obj)} is in namespace {ns}, the kustomization's is {namespace}")
    for entry in kustomization.get("labels") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("pairs"), dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in entry["pairs"].items()):
            error(where, f"labels entry {entry!r} needs pairs of strings")
    if not schemas_ok:
        return
    images_in_use = {image_name(c.get("image", "")) for o, _ in chosen if pod_template(o) is not None
                     for c in containers((pod_template(o).get("spec") or {}))}
    for image in kustomization.get("images") or []:
        if not isinstance(image, dict) or not isinstance(image.get("name"), str):
            error(where, f"images entry {image!r} has no name")
            continue
        for field in ("newName", "newTag", "digest"):
            if field in image and not isinstance(image[field], str):
                error(where, f"images {image['name']}: {field} must be a string (quote it)")
        if image["name"] not in images_in_use:
            error(where, f"images {image['name']} matches no container image of the resources ({', '.join(sorted(images_in_use))})")
    if len(errors) > before:
        return
    rendered = [(render(o, kustomization), w) for o, w in chosen]
    if all(validate_object(o, f"{where} (rendered)") for o, _ in rendered):
        ok(f"{where}: lists every manifest ({', '.join(listed)}); the {len(rendered)} objects it renders "
           f"(namespace, labels, images applied) pass the Kubernetes {k8s_version} schemas (strict)")
    restricted = {o["metadata"].get("name") for o, _ in rendered if o["kind"] == "Namespace" and
                  (o["metadata"].get("labels") or {}).get("pod-security.kubernetes.io/enforce") == "restricted"}
    before = len(errors)
    workloads = [(o, w) for o, w in rendered if pod_template(o) is not None and o["metadata"].get("namespace") in restricted]
    for obj, w in workloads:
        pod_security_restricted(obj, w)
    if workloads and len(errors) == before:
        ok(f"{where}: {', '.join(name_of(o) for o, _ in workloads)} meet Pod Security 'restricted', "
           f"which namespace {', '.join(sorted(restricted))} enforces")


try:
    check_compose()
    check_kubernetes()
except Exception as e:
    import traceback
    traceback.print_exc()
    error("validate-deploy", f"stopped by {e!r}: a file has a shape the checks do not expect")
if errors:
    print(f"validate-deploy: {len(errors)} error(s)")
    sys.exit(1)
print("validate-deploy: all deployment files valid")
