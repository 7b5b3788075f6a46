"""Schema and contract checks for the rendered manifests.

scripts/validate-manifests.sh renders every kustomization, then runs

    validate_manifests.py PLAN POLICY COUNTS

with the Python environment it builds (kubernetes-validate, cloudcoil's CRD models,
cel-python, promql-parser, PyYAML). PLAN has one line per rendered target,
"name<TAB>rendered.yaml<TAB>versions" (versions such as "1.26 1.30 latest"); POLICY
is manifests/base/policy.yaml; COUNTS receives "passed failed". Progress and failures
go to stderr; the exit status is 1 when any check failed.
"""

import ipaddress
import json
import re
import sys

import celpy
import kubernetes_validate
import promql_parser
import yaml
from kubernetes_validate.utils import (
    SchemaNotFoundError,
    ValidationError,
    VersionNotSupportedError,
    latest_version,
)

WEBHOOK = "pods.ci-pod-webhook.ci.skao.int"
GPU_WEBHOOK = "gpu-workloads.ci-pod-webhook.ci.skao.int"
RESIZE_WEBHOOK = "resize.ci-pod-webhook.ci.skao.int"
EPHEMERAL_WEBHOOK = "ephemeral-containers.ci-pod-webhook.ci.skao.int"
# The subresource entries: (name, resource), allowed or denied only, failurePolicy Fail.
SUBRESOURCE_WEBHOOKS = [(RESIZE_WEBHOOK, "pods/resize"), (EPHEMERAL_WEBHOOK, "pods/ephemeralcontainers")]
SYSTEM_NAMESPACES = {"kube-system", "kube-public", "kube-node-lease"}
NAMESPACE = "ci-pod-webhook"
SERVICE = "ci-pod-webhook"
SANS = [
    SERVICE,
    f"{SERVICE}.{NAMESPACE}",
    f"{SERVICE}.{NAMESPACE}.svc",
    f"{SERVICE}.{NAMESPACE}.svc.cluster.local",
]
# Exactly the metric names the webhook exports (histogram series included) and the
# API server series the alerts and the dashboard use.
METRICS = {
    "ci_pod_webhook_requests_total",
    "ci_pod_webhook_request_duration_seconds_bucket",
    "ci_pod_webhook_request_duration_seconds_sum",
    "ci_pod_webhook_request_duration_seconds_count",
    "ci_pod_webhook_overrides_total",
    "ci_pod_webhook_policy_reloads_total",
    "ci_pod_webhook_certificate_reloads_total",
    "ci_pod_webhook_build_info",
    "ci_pod_webhook_job_pods",
    "ci_pod_webhook_job_pod_info",
    "ci_pod_webhook_job_container_terminations_total",
    "ci_pod_webhook_class_limit",
    "ci_pod_webhook_policy_info",
    # The kubelets' cAdvisor series the sizing panels set against the class limits.
    "container_memory_working_set_bytes",
    "container_cpu_usage_seconds_total",
    "up",
    "apiserver_admission_webhook_fail_open_count",
    "apiserver_admission_webhook_rejection_count",
    "apiserver_admission_webhook_request_total",
    "apiserver_admission_webhook_admission_duration_seconds_bucket",
}
LABEL_VALUES = {  # label -> values the webhook can emit
    "outcome": {"mutated", "unchanged", "skipped", "denied", "invalid", "would_mutate", "would_deny"},
    "verdict": {"ok", "drift", "unpolicied", "would-mutate", "would-deny"},
    "result": {"applied", "clamped", "rejected", "success", "failure"},
}


def crd_models():
    from cloudcoil.models.cert_manager import v1 as cert_manager
    from cloudcoil.models.prometheus_operator import v1 as prometheus_operator

    return {
        ("cert-manager.io/v1", "Certificate"): cert_manager.Certificate,
        ("cert-manager.io/v1", "Issuer"): cert_manager.Issuer,
        ("monitoring.coreos.com/v1", "ServiceMonitor"): prometheus_operator.ServiceMonitor,
        ("monitoring.coreos.com/v1", "PrometheusRule"): prometheus_operator.PrometheusRule,
    }


# Set by main(): the policy the manifests ship (parsed and as text) and the CRD models.
POLICY = {}
POLICY_TEXT = ""
CRDS = {}
# What the checks found: failures as "where: message", and the count of checks passed.
errors = []
passed = 0


def fail(where, message):
    errors.append(f"{where}: {message}")


def check(cond, where, message):
    global passed
    if cond:
        passed += 1
    else:
        fail(where, message)


def unknown_fields(given, kept, path=""):
    """Keys present in `given` that the model dropped: fields the CRD does not define."""
    found = []
    if isinstance(given, dict) and isinstance(kept, dict):
        for key, value in given.items():
            sub = f"{path}.{key}" if path else key
            if key not in kept:
                found.append(sub)
            else:
                found += unknown_fields(value, kept[key], sub)
    elif isinstance(given, list) and isinstance(kept, list):
        # A model keeps every item of a list it accepts; stop at the shorter all the same.
        for i, (a, b) in enumerate(zip(given, kept, strict=False)):
            found += unknown_fields(a, b, f"{path}[{i}]")
    return found


def validate_schema(name, obj, versions):
    ident = f"{name}: {obj['kind']}/{obj['metadata'].get('name')}"
    key = (obj["apiVersion"], obj["kind"])
    if key in CRDS:
        try:
            model = CRDS[key].model_validate(obj)
        except Exception as e:  # pydantic.ValidationError: message lists every problem
            fail(ident, f"invalid against the {obj['apiVersion']} CRD model: {e}")
            return
        extra = unknown_fields(obj, model.model_dump(by_alias=True, exclude_unset=True, mode="json"))
        check(not extra, ident, f"fields the CRD does not define: {', '.join(extra)}")
        return
    for version in versions:
        v = latest_version() if version == "latest" else version
        try:
            kubernetes_validate.validate(obj, v, strict=True)
            check(True, ident, "")
        except ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            fail(ident, f"Kubernetes {e.version} strict schema: {path}: {e.message}")
        except SchemaNotFoundError:
            fail(ident, f"no Kubernetes {v} schema and no CRD model for {key[0]} {key[1]}")
        except VersionNotSupportedError:
            fail(ident, f"kubernetes-validate has no schemas for Kubernetes {v}")


def find(objs, kind, name=None):
    return [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objs, kind, name, where):
    found = find(objs, kind, name)
    check(len(found) == 1, where, f"expected exactly one {kind}/{name}, found {len(found)}")
    return found[0] if found else None


# ---- contract checks ---------------------------------------------------------------------


def check_webhook(where, objs):
    mwc = one(objs, "MutatingWebhookConfiguration", "ci-pod-webhook", where)
    if not mwc:
        return
    names = [w["name"] for w in mwc["webhooks"]]
    expected = [WEBHOOK, GPU_WEBHOOK, RESIZE_WEBHOOK, EPHEMERAL_WEBHOOK]
    check(names == expected, where, f"webhooks {names}, expected {expected}")
    # The subresource entries: their own failurePolicy (Fail) and rule, the pods entry's
    # namespaceSelector and service (docs/deploy.md).
    for w in mwc["webhooks"][2:]:
        resource = dict(SUBRESOURCE_WEBHOOKS).get(w["name"])
        expect = {
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "matchPolicy": "Equivalent",
            "admissionReviewVersions": ["v1"],
            "rules": [
                {
                    "operations": ["UPDATE"],
                    "apiGroups": [""],
                    "apiVersions": ["v1"],
                    "resources": [resource],
                    "scope": "Namespaced",
                }
            ],
            "namespaceSelector": mwc["webhooks"][0].get("namespaceSelector"),
        }
        for key, value in expect.items():
            check(
                w.get(key) == value, where, f"webhook {w['name']} {key} is {w.get(key)!r}, expected {value!r}"
            )
        check(0 < w.get("timeoutSeconds", 10) <= 5, where, f"{w['name']}: timeoutSeconds must be at most 5")
        check("matchConditions" not in w, where, f"{w['name']}: no matchConditions (the rule is the filter)")
        svc = w["clientConfig"].get("service", {})
        check(
            svc == {"name": SERVICE, "namespace": NAMESPACE, "path": "/mutate", "port": 443},
            where,
            f"clientConfig.service of {w['name']} is {svc}",
        )
    # The count of entries is checked just above; check the ones there are.
    for w, path in zip(mwc["webhooks"], ["/mutate", "/mutate/gpu-workloads"], strict=False):
        expect = {
            "failurePolicy": "Ignore",
            "sideEffects": "None",
            "reinvocationPolicy": "IfNeeded",
            "matchPolicy": "Equivalent",
            "admissionReviewVersions": ["v1"],
            "rules": [
                {
                    "operations": ["CREATE"],
                    "apiGroups": [""],
                    "apiVersions": ["v1"],
                    "resources": ["pods"],
                    "scope": "Namespaced",
                }
            ],
        }
        for key, value in expect.items():
            check(
                w.get(key) == value, where, f"webhook {w['name']} {key} is {w.get(key)!r}, expected {value!r}"
            )
        check(0 < w.get("timeoutSeconds", 10) <= 5, where, "timeoutSeconds must be at most 5")
        svc = w["clientConfig"].get("service", {})
        check(
            svc == {"name": SERVICE, "namespace": NAMESPACE, "path": path, "port": 443},
            where,
            f"clientConfig.service of {w['name']} is {svc}",
        )
    if len(mwc["webhooks"]) > 1:
        gpu = mwc["webhooks"][1]
        exprs = gpu.get("namespaceSelector", {}).get("matchExpressions", [])
        only = exprs[0] if len(exprs) == 1 else {}
        check(
            only.get("key") == "kubernetes.io/metadata.name"
            and only.get("operator") == "NotIn"
            and set(only.get("values", [])) == SYSTEM_NAMESPACES | {NAMESPACE},
            where,
            "the GPU workloads entry selects every namespace but the system ones and the webhook's own",
        )
        legacy = "gpu-workloads-without-match-conditions" in where or "kubernetes-1.26" in where
        check(
            bool(gpu.get("matchConditions")) != legacy,
            where,
            "the GPU workloads entry has matchConditions exactly when the 1.26-1.29 component is not used",
        )
    w = mwc["webhooks"][0]
    exprs = w.get("namespaceSelector", {}).get("matchExpressions", [])
    prefix = POLICY["prefix"]
    check(
        {"key": f"{prefix}/pod-policy", "operator": "In", "values": ["enabled", "warn"]} in exprs,
        where,
        f"namespaceSelector must require {prefix}/pod-policy In [enabled, warn]",
    )
    excluded = [e for e in exprs if e["key"] == "kubernetes.io/metadata.name" and e["operator"] == "NotIn"]
    check(
        excluded and {"kube-system", NAMESPACE} <= set(excluded[0]["values"]),
        where,
        "namespaceSelector must exclude kube-system and the webhook's namespace",
    )
    return mwc


def check_deployment(where, objs):
    d = one(objs, "Deployment", "ci-pod-webhook", where)
    if not d:
        return
    spec = d["spec"]["template"]["spec"]
    check(d["spec"]["replicas"] >= 2, where, "at least 2 replicas")
    psc = spec.get("securityContext", {})
    check(
        psc.get("runAsNonRoot") is True and psc.get("runAsUser") == 65532 and psc.get("runAsGroup") == 65532,
        where,
        "pod must run as non-root 65532:65532",
    )
    check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", where, "seccomp RuntimeDefault")
    check(
        spec.get("topologySpreadConstraints") and spec.get("affinity", {}).get("podAntiAffinity"),
        where,
        "topology spread and pod anti-affinity expected",
    )
    (c,) = [c for c in spec["containers"] if c["name"] == "webhook"]
    sc = c.get("securityContext", {})
    check(
        sc.get("readOnlyRootFilesystem") is True
        and sc.get("allowPrivilegeEscalation") is False
        and sc.get("capabilities", {}).get("drop") == ["ALL"],
        where,
        "container security context",
    )
    check("cpu" not in c["resources"].get("limits", {}), where, "no CPU limit (see the comment)")
    check("memory" in c["resources"].get("limits", {}), where, "memory limit")
    env = {e["name"]: e.get("value") for e in c.get("env", [])}
    expect_env = {
        "CI_POD_WEBHOOK_LISTEN": "0.0.0.0:8443",
        "CI_POD_WEBHOOK_ADMIN_LISTEN": "0.0.0.0:8080",
        "CI_POD_WEBHOOK_TLS_CERT": "/etc/ci-pod-webhook/tls/tls.crt",
        "CI_POD_WEBHOOK_TLS_KEY": "/etc/ci-pod-webhook/tls/tls.key",
        "CI_POD_WEBHOOK_POLICY": "/etc/ci-pod-webhook/policy/policy.yaml",
        "CI_POD_WEBHOOK_LOG_FORMAT": "json",
    }
    for k, v in expect_env.items():
        check(env.get(k) == v, where, f"env {k}={env.get(k)!r}, expected {v!r}")
    # Empty in the base, for the admin to fill in (docs/network.md).
    trusted = "10.0.0.10/32,10.0.0.11/32" if "trusted peers, filled in" in where else ""
    check(
        env.get("CI_POD_WEBHOOK_TRUSTED_PEERS") == trusted,
        where,
        f"env CI_POD_WEBHOOK_TRUSTED_PEERS={env.get('CI_POD_WEBHOOK_TRUSTED_PEERS')!r}, expected {trusted!r}",
    )
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    check(ports == {"https": 8443, "admin": 8080}, where, f"container ports {ports}")
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/livez")):
        get = c.get(probe, {}).get("httpGet", {})
        check(get.get("path") == path and get.get("port") == "admin", where, f"{probe} on admin {path}")
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
    check(
        not any("subPath" in m or "subPathExpr" in m for m in mounts.values()),
        where,
        "no subPath mounts: Secret and ConfigMap updates must reach the files",
    )
    volumes = {v["name"]: v for v in spec["volumes"]}
    tls = volumes.get(mounts.get("/etc/ci-pod-webhook/tls", {}).get("name"), {})
    pol = volumes.get(mounts.get("/etc/ci-pod-webhook/policy", {}).get("name"), {})
    check(
        tls.get("secret", {}).get("secretName") == "ci-pod-webhook-tls",
        where,
        "TLS Secret ci-pod-webhook-tls mounted at /etc/ci-pod-webhook/tls",
    )
    check(
        pol.get("configMap", {}).get("name") == "ci-pod-webhook-policy",
        where,
        "policy ConfigMap mounted at /etc/ci-pod-webhook/policy",
    )
    pre = c.get("lifecycle", {}).get("preStop", {})
    delay = pre.get("sleep", {}).get("seconds")
    if delay is None and pre.get("exec", {}).get("command", [None])[-2:-1] == ["sleep"]:
        delay = int(pre["exec"]["command"][-1])
    check(delay is not None and delay > 0, where, "preStop delay expected")
    if delay is not None:
        check(
            spec["terminationGracePeriodSeconds"] > delay + 5,
            where,
            "terminationGracePeriodSeconds must exceed preStop + drain",
        )
    cm = one(objs, "ConfigMap", "ci-pod-webhook-policy", where)
    if cm:
        check(
            cm["data"].get("policy.yaml") == POLICY_TEXT,
            where,
            "rendered policy ConfigMap differs from manifests/base/policy.yaml",
        )
    svc = one(objs, "Service", SERVICE, where)
    if svc:
        sp = {p["name"]: p for p in svc["spec"]["ports"]}
        check(
            sp.get("https", {}).get("port") == 443 and sp["https"].get("targetPort") == "https",
            where,
            "Service port https 443 -> https",
        )
        check(
            sp.get("metrics", {}).get("port") == 8080 and sp["metrics"].get("targetPort") == "admin",
            where,
            "Service port metrics 8080 -> admin",
        )
    pdb = one(objs, "PodDisruptionBudget", "ci-pod-webhook", where)
    if pdb:
        check(pdb["spec"].get("minAvailable") == 1, where, "PDB minAvailable 1")
    role = one(objs, "ClusterRole", "ci-pod-webhook", where)
    if role:
        check(
            role["rules"]
            == [
                {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]},
                {"apiGroups": ["node.k8s.io"], "resources": ["runtimeclasses"], "verbs": ["list", "watch"]},
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]},
            ],
            where,
            "ClusterRole grants namespaces get/list/watch, runtimeclasses list/watch, "
            "pods list/watch, nothing more",
        )


def check_audit(where, objs):
    role = one(objs, "ClusterRole", "ci-pod-webhook-audit", where)
    if role:
        check(
            role["rules"]
            == [
                {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list"]},
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
            ],
            where,
            "audit ClusterRole grants namespaces get/list, pods list and nothing more",
        )
    binding = one(objs, "ClusterRoleBinding", "ci-pod-webhook-audit", where)
    if binding:
        check(binding["roleRef"]["name"] == "ci-pod-webhook-audit", where, "audit binding role")


def check_tls_source(where, objs, name, mwc):
    bundle = mwc["webhooks"][0]["clientConfig"].get("caBundle") if mwc else None
    annotation = (mwc or {}).get("metadata", {}).get("annotations", {}).get("cert-manager.io/inject-ca-from")
    if "cert-manager" in name:
        check(annotation == f"{NAMESPACE}/ci-pod-webhook-serving", where, "inject-ca-from annotation")
        cert = one(objs, "Certificate", "ci-pod-webhook-serving", where)
        if cert:
            check(cert["spec"]["secretName"] == "ci-pod-webhook-tls", where, "serving secretName")
            check(cert["spec"].get("dnsNames") == SANS, where, f"serving dnsNames must be {SANS}")
            issuer = cert["spec"]["issuerRef"]["name"]
            ca_issuer = one(objs, "Issuer", issuer, where)
            if ca_issuer:
                ca_secret = ca_issuer["spec"].get("ca", {}).get("secretName")
                cas = [c for c in find(objs, "Certificate") if c["spec"]["secretName"] == ca_secret]
                check(
                    len(cas) == 1 and cas[0]["spec"].get("isCA") is True,
                    where,
                    "the serving certificate's Issuer is backed by a CA Certificate",
                )
    elif "self-managed" in name:
        check(bundle is not None, where, "caBundle must be set")
        secret = one(objs, "Secret", "ci-pod-webhook-tls", where)
        if secret:
            check(
                set(secret["data"]) == {"tls.crt", "tls.key", "ca.crt"},
                where,
                "Secret holds tls.crt, tls.key, ca.crt (and never ca.key)",
            )
            check(bundle == secret["data"].get("ca.crt"), where, "caBundle equals the Secret's ca.crt")
    else:
        check(bundle is None and annotation is None, where, "the base sets no caBundle")


def check_samples(where, programs, samples, entry, condition):
    """Evaluates one webhook entry's compiled matchConditions on each sample pod: the
    webhook must be called exactly when every condition is true, as the sample says."""
    for description, pod, expected in samples:
        activation = {"object": celpy.json_to_cel(pod)}
        results = {}
        for cname, program in programs:
            try:
                results[cname] = bool(program.evaluate(activation))
            except Exception as e:
                fail(where, f"{condition} {cname} fails to evaluate on {description}: {e}")
                results[cname] = None
        called = all(results.values())
        check(
            called == expected,
            where,
            f"{entry}{description}: webhook {'called' if called else 'skipped'} ({results}), "
            f"expected {'called' if expected else 'skipped'}",
        )


# Sample pods for the matchConditions: (description, pod, should the webhook be called)
SAMPLE_PODS = [
    (
        "runner 16.5 job pod",
        {
            "metadata": {
                "generateName": "runner-abc-project-1-concurrent-0-",
                "labels": {"pod": "runner-abc"},
            },
            "spec": {
                "initContainers": [{"name": "init-permissions"}],
                "containers": [{"name": "build"}, {"name": "helper"}, {"name": "svc-0"}],
            },
        },
        True,
    ),
    (
        "runner 17.9 job pod",
        {
            "metadata": {
                "name": "runner-x",
                "labels": {"manager.runner.gitlab.com/name": "k8srunner"},
                "annotations": {"project.runner.gitlab.com/id": "1"},
            },
            "spec": {"containers": [{"name": "build"}, {"name": "helper"}]},
        },
        True,
    ),
    (
        "labelled pod, other containers",
        {
            "metadata": {"name": "p", "labels": {"manager.runner.gitlab.com/name": "k8srunner"}},
            "spec": {"containers": [{"name": "app"}]},
        },
        True,
    ),
    (
        "pod without labels or annotations",
        {"metadata": {"name": "web"}, "spec": {"containers": [{"name": "nginx"}]}},
        False,
    ),
    (
        "build container alone",
        {"metadata": {"name": "b", "labels": {"app": "x"}}, "spec": {"containers": [{"name": "build"}]}},
        False,
    ),
    (
        "mirror pod shaped like a job",
        {
            "metadata": {"name": "m", "annotations": {"kubernetes.io/config.mirror": "abc"}},
            "spec": {"containers": [{"name": "build"}, {"name": "helper"}]},
        },
        False,
    ),
]


def check_match_conditions(where, mwc):
    conditions = mwc["webhooks"][0].get("matchConditions") if mwc else None
    if not conditions:
        return
    env = celpy.Environment()
    programs = []
    for c in conditions:
        try:
            programs.append((c["name"], env.program(env.compile(c["expression"]))))
        except Exception as e:
            fail(where, f"matchCondition {c['name']} does not compile: {e}")
            return
    check_samples(where, programs, SAMPLE_PODS, entry="", condition="matchCondition")
    # The job-pod condition must say what the policy's jobPods says.
    job = POLICY["jobPods"]
    text = " ".join(c["expression"] for c in conditions)
    for needle in [job["orLabel"], *job["containers"]]:
        check(f"'{needle}'" in text, where, f"matchConditions do not mention the policy's jobPods {needle!r}")


# Sample pods for the GPU workloads entry: (description, pod, should the webhook be called)
GPU_SAMPLE_PODS = [
    (
        "Deployment pod with a GPU limit",
        {
            "metadata": {"generateName": "trainer-7d9f-", "labels": {"app": "trainer"}},
            "spec": {"containers": [{"name": "cuda", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]},
        },
        True,
    ),
    (
        "GPU request only, second container",
        {
            "metadata": {"name": "p"},
            "spec": {
                "containers": [{"name": "a"}, {"name": "b", "resources": {"requests": {"nvidia.com/gpu": 2}}}]
            },
        },
        True,
    ),
    (
        "GPU in an init container",
        {
            "metadata": {"name": "p"},
            "spec": {
                "initContainers": [{"name": "warm", "resources": {"limits": {"nvidia.com/gpu": "1"}}}],
                "containers": [{"name": "app"}],
            },
        },
        True,
    ),
    (
        "no resources at all",
        {"metadata": {"name": "web"}, "spec": {"containers": [{"name": "nginx"}]}},
        False,
    ),
    (
        "CPU and memory only",
        {
            "metadata": {"name": "web"},
            "spec": {
                "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "1"}}}],
                "containers": [{"name": "nginx", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}],
            },
        },
        False,
    ),
    (
        "empty resources",
        {"metadata": {"name": "web"}, "spec": {"containers": [{"name": "nginx", "resources": {}}]}},
        False,
    ),
    (
        "MIG profile in a request",
        {
            "metadata": {"name": "p"},
            "spec": {
                "containers": [{"name": "a", "resources": {"requests": {"nvidia.com/mig-3g.40gb": "1"}}}]
            },
        },
        True,
    ),
    (
        "AMD GPU in an init container",
        {
            "metadata": {"name": "p"},
            "spec": {
                "initContainers": [{"name": "warm", "resources": {"limits": {"amd.com/gpu": "1"}}}],
                "containers": [{"name": "app"}],
            },
        },
        True,
    ),
    (
        "job-shaped GPU pod (build and helper)",
        {
            "metadata": {"name": "runner-abc-project-1-concurrent-0-x"},
            "spec": {
                "containers": [
                    {"name": "build", "resources": {"limits": {"nvidia.com/gpu": "1"}}},
                    {"name": "helper"},
                ]
            },
        },
        True,
    ),
    (
        "another accelerator, not a GPU",
        {
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "a", "resources": {"limits": {"habana.ai/gaudi": "1"}}}]},
        },
        False,
    ),
    (
        "mirror pod asking for a GPU",
        {
            "metadata": {"name": "m", "annotations": {"kubernetes.io/config.mirror": "abc"}},
            "spec": {"containers": [{"name": "cuda", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]},
        },
        False,
    ),
]


def check_gpu_match_conditions(where, mwc):
    hooks = mwc["webhooks"] if mwc else []
    conditions = hooks[1].get("matchConditions") if len(hooks) > 1 else None
    if not conditions:
        return
    env = celpy.Environment()
    try:
        programs = [(c["name"], env.program(env.compile(c["expression"]))) for c in conditions]
    except Exception as e:
        fail(where, f"a GPU workloads matchCondition does not compile: {e}")
        return
    check_samples(where, programs, GPU_SAMPLE_PODS, entry="GPU entry, ", condition="GPU matchCondition")
    # Every resource the policy's gpuWorkloads names (a name, or a prefix ending in *) must
    # reach the webhook: a pod asking only for it, in a limit or a request, is sent.
    g = POLICY.get("gpuWorkloads") or {}
    default = ["nvidia.com/gpu", "nvidia.com/mig-*"]
    resources = g.get("resources") or ([g["resource"]] if g.get("resource") else default)
    samples = []
    for resource in resources:
        name = resource[:-1] + "1g.5gb" if resource.endswith("*") else resource
        for section in ["limits", "requests"]:
            container = {"name": "a", "resources": {section: {name: "1"}}}
            pod = {"metadata": {"name": "p"}, "spec": {"containers": [container]}}
            samples.append((f"a pod asking for the policy's {resource} ({name} in {section})", pod, True))
    check_samples(where, programs, samples, entry="GPU entry, ", condition="GPU matchCondition")


def promql_metrics(where, expr):
    # Grafana's variables are not PromQL; give them typical values before parsing.
    expr = expr.replace("$__rate_interval", "5m").replace("$__range", "1h").replace("$__interval", "1m")
    try:
        ast = promql_parser.parse(expr)
    except ValueError as e:
        fail(where, f"PromQL does not parse: {e}: {expr}")
        return
    seen = []

    def visit(node, *_):
        if isinstance(node, promql_parser.VectorSelector):
            seen.append(node)
        return True

    promql_parser.walk(ast, visit)
    for sel in seen:
        check(sel.name in METRICS, where, f"unknown metric {sel.name!r} in: {expr}")
        for m in sel.matchers.matchers:
            if m.name == "name" and sel.name.startswith("apiserver_admission_webhook"):
                check(m.value == WEBHOOK, where, f"API server metric for another webhook: {m.value!r}")
            if m.name in LABEL_VALUES and str(m.op) == "MatchOp.Equal":
                check(m.value in LABEL_VALUES[m.name], where, f"{m.name}={m.value!r} is never emitted")
            if m.name in LABEL_VALUES and str(m.op) == "MatchOp.Re":
                values = set(m.value.split("|"))
                check(values <= LABEL_VALUES[m.name], where, f"{m.name}=~{m.value!r} is never emitted")


def check_monitoring(where, objs):
    rule = one(objs, "PrometheusRule", "ci-pod-webhook", where)
    if rule:
        alerts = [r for g in rule["spec"]["groups"] for r in g["rules"]]
        for r in alerts:
            rw = f"{where}: alert {r.get('alert')}"
            check(
                r.get("alert")
                and r.get("labels", {}).get("severity")
                and r.get("annotations", {}).get("summary"),
                rw,
                "alert, severity and summary",
            )
            promql_metrics(rw, r["expr"])
        used = " ".join(r["expr"] for r in alerts)
        for m in (
            "up",
            "apiserver_admission_webhook_fail_open_count",
            "ci_pod_webhook_job_pods",
            "apiserver_admission_webhook_rejection_count",
            "ci_pod_webhook_request_duration_seconds_bucket",
            "ci_pod_webhook_requests_total",
        ):
            check(re.search(rf"\b{m}\b", used), where, f"no alert uses {m}")
    sm = one(objs, "ServiceMonitor", "ci-pod-webhook", where)
    if sm:
        check(
            [e["port"] for e in sm["spec"]["endpoints"]] == ["metrics"],
            where,
            "ServiceMonitor scrapes the Service's metrics port",
        )
    cm = one(objs, "ConfigMap", "ci-pod-webhook-dashboard", where)
    if cm:
        check(
            cm["metadata"].get("labels", {}).get("grafana_dashboard") == "1",
            where,
            "dashboard ConfigMap carries grafana_dashboard=1",
        )
        (text,) = cm["data"].values()
        try:
            dash = json.loads(text)
        except ValueError as e:
            fail(where, f"dashboard JSON does not parse: {e}")
            return
        check(dash.get("uid") and dash.get("panels"), where, "dashboard uid and panels")
        exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
        check(len(exprs) >= 10, where, "dashboard queries")
        for e in exprs:
            promql_metrics(f"{where}: dashboard", e)
        joined = " ".join(exprs)
        for m in (
            "ci_pod_webhook_requests_total",
            "ci_pod_webhook_request_duration_seconds_bucket",
            "ci_pod_webhook_overrides_total",
            "ci_pod_webhook_policy_reloads_total",
            "ci_pod_webhook_certificate_reloads_total",
            "ci_pod_webhook_build_info",
            "ci_pod_webhook_job_pods",
        ):
            check(m in joined, where, f"dashboard never shows {m}")


NETPOL_PLACEHOLDER = "REPLACE-WITH-API-SERVER-SOURCE-CIDR"


def check_network_policy(where, objs, filled):
    """The webhook port admits only ipBlocks (the API server is not a pod), the admin port
    a namespace; the policy selects the webhook's pods and names their ports."""
    np = one(objs, "NetworkPolicy", "ci-pod-webhook", where)
    if not np:
        return
    check(np["metadata"].get("namespace") == NAMESPACE, where, f"NetworkPolicy in {NAMESPACE}")
    spec = np["spec"]
    check(
        spec.get("policyTypes") == ["Ingress"],
        where,
        "Ingress only: the webhook must keep reaching the API server",
    )
    d = one(objs, "Deployment", "ci-pod-webhook", where)
    if d:
        labels = d["spec"]["template"]["metadata"]["labels"]
        selector = spec["podSelector"].get("matchLabels", {})
        check(
            selector and all(labels.get(k) == v for k, v in selector.items()),
            where,
            f"podSelector {selector} selects the webhook pods {labels}",
        )
        (c,) = [c for c in d["spec"]["template"]["spec"]["containers"] if c["name"] == "webhook"]
        names = {p["name"] for p in c["ports"]}
        used = {p["port"] for r in spec["ingress"] for p in r.get("ports", [])}
        check(used == names, where, f"rules name the container ports {names}, got {used}")
    by_port = {}
    for rule in spec["ingress"]:
        check(rule.get("ports") and rule.get("from"), where, "every rule names its ports and sources")
        for p in rule.get("ports", []):
            by_port.setdefault(p["port"], []).append(rule)
    https = by_port.get("https", [])
    check(len(https) == 1, where, "one rule admits the webhook port")
    for rule in https:
        sources = rule["from"]
        check(
            all(set(s) == {"ipBlock"} for s in sources),
            where,
            "the shipped webhook rule admits ipBlocks only: the API server is not a pod, "
            "and a pod or namespace selector here would admit pods",
        )
        cidrs = [s["ipBlock"]["cidr"] for s in sources if "ipBlock" in s]
        if filled:
            for cidr in cidrs:
                try:
                    ipaddress.ip_network(cidr)
                    check(True, where, "")
                except ValueError:
                    fail(where, f"ipBlock {cidr!r} is not a CIDR")
        else:
            check(
                cidrs == [NETPOL_PLACEHOLDER],
                where,
                f"the shipped webhook rule carries the placeholder {NETPOL_PLACEHOLDER}, got {cidrs}",
            )
    admin = by_port.get("admin", [])
    check(
        len(admin) == 1 and all("namespaceSelector" in s for r in admin for s in r["from"]),
        where,
        "the admin port admits a namespace (Prometheus)",
    )


def check_node_docker(where, objs):
    ds = one(objs, "DaemonSet", "ci-dind", where)
    if not ds:
        return
    spec = ds["spec"]["template"]["spec"]
    docker = POLICY["docker"]
    socket = docker["socketPath"]
    socket_dir = socket.rsplit("/", 1)[0]
    (d,) = [c for c in spec["containers"] if c["name"] == "dockerd"]
    args = d.get("args", [])
    check(args[:1] == ["dockerd"], where, "args start with dockerd (no entrypoint default listeners)")
    check(f"--host=unix://{socket}" in args, where, f"dockerd listens on the policy's socket {socket}")
    check(not any("tcp://" in a for a in args), where, "no TCP listener")
    check(d.get("securityContext", {}).get("privileged") is True, where, "dockerd is privileged")
    check({"name": "DOCKER_TLS_CERTDIR", "value": ""} in d.get("env", []), where, "DOCKER_TLS_CERTDIR empty")
    check(d.get("readinessProbe"), where, "readiness probe")
    check("requests" in d.get("resources", {}), where, "resource requests")
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in d["volumeMounts"]}
    hp = volumes.get(mounts.get(socket_dir), {}).get("hostPath", {})
    check(
        hp == {"path": socket_dir, "type": "DirectoryOrCreate"},
        where,
        f"host directory {socket_dir} (DirectoryOrCreate) mounted at {socket_dir}",
    )
    data = volumes.get(mounts.get("/var/lib/ci-dind"), {}).get("hostPath", {})
    check(data.get("path") == "/var/lib/ci-dind", where, "data root on the node at /var/lib/ci-dind")
    check(
        spec.get("nodeSelector") == POLICY["ciNodes"]["nodeSelector"],
        where,
        "DaemonSet nodeSelector equals the policy's ciNodes.nodeSelector",
    )
    check(
        {"key": "nvidia.com/gpu", "operator": "Exists"} in spec.get("tolerations", []),
        where,
        "tolerates the GPU taint with operator Exists and no effect",
    )


def check_doctor(where, objs):
    check(
        [o["kind"] for o in objs] == ["ClusterRole"],
        where,
        "the doctor ships one ClusterRole and nothing else",
    )
    role = one(objs, "ClusterRole", "ci-pod-webhook-doctor", where)
    if not role:
        return
    for rule in role["rules"]:
        if rule["apiGroups"] == ["authorization.k8s.io"]:
            # A SubjectAccessReview asks the API server a question and stores nothing: the
            # doctor checks what the webhook's ServiceAccount may do (docs/doctor.md).
            check(
                rule["resources"] == ["subjectaccessreviews"] and rule["verbs"] == ["create"],
                where,
                f"only create on subjectaccessreviews in authorization.k8s.io, got {rule}",
            )
            continue
        check(set(rule["verbs"]) <= {"get", "list"}, where, f"read-only verbs, got {rule['verbs']}")
        check("*" not in rule["resources"] and "*" not in rule["apiGroups"], where, "no wildcards")
        if "secrets" in rule["resources"]:
            check(
                rule.get("resourceNames") == ["ci-pod-webhook-tls"],
                where,
                "secrets only by name: ci-pod-webhook-tls",
            )


def main(argv=None):
    """Runs every check on the plan's rendered targets; returns the exit status."""
    global POLICY, POLICY_TEXT, CRDS
    args = sys.argv[1:] if argv is None else argv
    plan_file, policy_file, counts_file = args[0], args[1], args[2]
    with open(policy_file) as f:
        POLICY_TEXT = f.read()
    POLICY = yaml.safe_load(POLICY_TEXT)
    CRDS = crd_models()

    total_objects = 0
    with open(plan_file) as f:
        plan = [line.rstrip("\n").split("\t") for line in f]
    for name, path, versions in plan:
        with open(path) as f:
            objs = [o for o in yaml.safe_load_all(f) if o]
        total_objects += len(objs)
        for obj in objs:
            validate_schema(name, obj, versions.split())
        kinds = {o["kind"] for o in objs}
        try:
            if "MutatingWebhookConfiguration" in kinds:
                mwc = check_webhook(name, objs)
                check_deployment(name, objs)
                check_tls_source(name, objs, name, mwc)
                if "+ components/match-conditions" in name:
                    check(
                        bool(mwc and mwc["webhooks"][0].get("matchConditions")),
                        name,
                        "matchConditions expected",
                    )
                check_match_conditions(name, mwc)
                check_gpu_match_conditions(name, mwc)
            if "PrometheusRule" in kinds or name.endswith("monitoring"):
                check_monitoring(name, objs)
            if "DaemonSet" in kinds:
                check_node_docker(name, objs)
            if "network-policy" in name:
                check("NetworkPolicy" in kinds, name, "NetworkPolicy expected")
                check_network_policy(name, objs, filled="filled in" in name)
            if name == "doctor":
                check_doctor(name, objs)
            if name == "audit":
                check_audit(name, objs)
        except (KeyError, ValueError, TypeError, IndexError) as e:
            # A manifest shaped unlike the checks expect (a missing field, two containers
            # where one was expected): report it like any other failure.
            fail(name, f"unexpected structure: {type(e).__name__}: {e}")
        schemas = versions.replace("latest", latest_version())
        print(f"==> checked {name}: {len(objs)} objects, schemas {schemas}", file=sys.stderr)

    for e in errors:
        print(f"FAIL {e}", file=sys.stderr)
    print(f"==> {total_objects} rendered objects checked", file=sys.stderr)
    with open(counts_file, "w") as f:
        f.write(f"{passed} {len(errors)}\n")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
