"""The Helm chart and the kustomize overlays: lint, render, validate offline, and hold the rules.

Core objects are validated strictly against the Kubernetes OpenAPI schemas shipped by
kubernetes-validate, at the chart's oldest supported version and the newest one known. KEDA's
ScaledObject is a CRD whose schema is not among them, so it is checked against the structural
schema below (the fields we use, their types, no unknown keys); KEDA's own admission webhook
validates trigger metadata at apply time.
"""

from __future__ import annotations

import base64
import importlib
import inspect
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from agentbus.contracts import CONSUMERS, SERVICES
from agentbus.contracts.permissions import all_users
from agentbus.runtime.settings import Settings

K8S = Path(__file__).resolve().parents[1] / "k8s"
CHART = K8S / "helm" / "agentbus"
KUSTOMIZE = K8S / "kustomize"
RELEASE = "agentbus"
KUBE_VERSIONS = ("1.25", "1.37")
KEDA_SCALED = {"orchestrator": ("RUNS", "orchestrator"), "ingest": ("INGEST", "ingest")}

Doc = dict[str, Any]
Render = list[Doc]

_STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
SCALED_OBJECT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
                "namespace": {"type": "string"},
                "labels": _STR_MAP,
                "annotations": _STR_MAP,
            },
            "additionalProperties": False,
        },
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "name": {"type": "string"},
                    },
                },
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "idleReplicaCount": {"type": "integer", "minimum": 0},
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "advanced": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "restoreToOriginalReplicaCount": {"type": "boolean"},
                        "horizontalPodAutoscalerConfig": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "name": {"type": "string"},
                                "behavior": {"type": "object"},
                            },
                        },
                    },
                },
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "additionalProperties": False,
                        "properties": {
                            "type": {"type": "string"},
                            "name": {"type": "string"},
                            "metadata": _STR_MAP,  # KEDA takes every metadata value as a string
                            "authenticationRef": {"type": "object"},
                        },
                    },
                },
            },
        },
    },
}


def run(*args: str) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{' '.join(args)}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def load(text: str) -> Render:
    return [doc for doc in yaml.safe_load_all(text) if doc]


@pytest.fixture(scope="module")
def helm_render(helm: str) -> Callable[..., Render]:
    def render(*values: str, sets: tuple[str, ...] = ()) -> Render:
        args = [helm, "template", RELEASE, str(CHART)]
        for name in values:
            args += ["-f", str(CHART / name)]
        for item in sets:
            args += ["--set", item]
        return load(run(*args))

    return render


@pytest.fixture(scope="module")
def renders(helm_render: Callable[..., Render], kubectl: str) -> dict[str, Render]:
    return {
        "helm-default": helm_render(),
        "helm-production": helm_render("values-production.yaml"),
        "kustomize-dev": load(run(kubectl, "kustomize", str(KUSTOMIZE / "overlays" / "dev"))),
        "kustomize-prod": load(run(kubectl, "kustomize", str(KUSTOMIZE / "overlays" / "prod"))),
    }


def of_kind(render: Render, kind: str) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in render if d["kind"] == kind}


def component(doc: Doc) -> str:
    return str(doc["metadata"]["labels"]["app.kubernetes.io/component"])


def container(deployment: Doc) -> Doc:
    [only] = deployment["spec"]["template"]["spec"]["containers"]
    return dict(only)


def env_of(deployment: Doc) -> dict[str, Doc]:
    return {e["name"]: e for e in container(deployment).get("env", [])}


@pytest.mark.parametrize("values", [(), ("values-production.yaml",)])
def test_helm_lint_is_clean(helm: str, values: tuple[str, ...]) -> None:
    args = [helm, "lint", "--strict", str(CHART)]
    for name in values:
        args += ["-f", str(CHART / name)]
    out = run(*args)
    assert "0 chart(s) failed" in out
    assert "[WARNING]" not in out and "[ERROR]" not in out


def test_values_schema_refuses_bad_values(helm: str) -> None:
    for bad in (
        "services.orchestrator.autoscaling.kind=cpu",
        "services.gateway.probes.readiness.path=/",
        "nats.auth.mode=token",
        "image.tag=latest",
    ):
        result = subprocess.run(
            [helm, "template", RELEASE, str(CHART), "--set", bad],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode != 0, bad


def test_renders_hold_every_expected_object(renders: dict[str, Render]) -> None:
    for name, render in renders.items():
        for kind in ("Deployment", "Service", "ServiceAccount", "PodDisruptionBudget"):
            found = {component(d) for d in render if d["kind"] == kind}
            assert found == set(SERVICES), (name, kind)
        assert set(of_kind(render, "ConfigMap")) == {"agentbus-config"}, name
        assert {component(d) for d in of_kind(render, "HorizontalPodAutoscaler").values()} == {
            "gateway"
        }, name
        assert {component(d) for d in of_kind(render, "ScaledObject").values()} == set(
            KEDA_SCALED
        ), name
        ingress = of_kind(render, "Ingress")
        assert bool(ingress) == name.endswith(("production", "prod")), name


def test_helm_and_kustomize_render_the_same_objects(renders: dict[str, Render]) -> None:
    for helm_name, kustomize_name in (
        ("helm-default", "kustomize-dev"),
        ("helm-production", "kustomize-prod"),
    ):
        helm, kust = renders[helm_name], renders[kustomize_name]
        assert sorted((d["kind"], d["metadata"]["name"]) for d in helm) == sorted(
            (d["kind"], d["metadata"]["name"]) for d in kust
        ), (helm_name, kustomize_name)
        h_cm, k_cm = of_kind(helm, "ConfigMap"), of_kind(kust, "ConfigMap")
        assert h_cm["agentbus-config"]["data"].keys() == k_cm["agentbus-config"]["data"].keys()
        prod = helm_name == "helm-production"
        for name, h_dep in of_kind(helm, "Deployment").items():
            k_dep = of_kind(kust, "Deployment")[name]
            h_c, k_c = container(h_dep), container(k_dep)
            for key in ("ports", "startupProbe", "livenessProbe", "readinessProbe"):
                assert h_c[key] == k_c[key], (name, key)
            assert h_c["securityContext"] == k_c["securityContext"], name
            assert h_c["volumeMounts"] == k_c["volumeMounts"], name
            assert h_c["image"] == k_c["image"], name
            assert sorted(env_of(h_dep).items()) == sorted(env_of(k_dep).items()), name
            h_pod, k_pod = h_dep["spec"]["template"]["spec"], k_dep["spec"]["template"]["spec"]
            for key in (
                "securityContext",
                "volumes",
                "serviceAccountName",
                "terminationGracePeriodSeconds",
            ):
                assert h_pod[key] == k_pod[key], (name, key)
            assert h_dep["spec"]["selector"] == k_dep["spec"]["selector"], name
            assert h_dep["spec"].get("replicas") == k_dep["spec"].get("replicas"), name
            if prod:
                assert h_c["resources"] == k_c["resources"], name
                assert h_pod.get("topologySpreadConstraints") == k_pod.get(
                    "topologySpreadConstraints"
                ), name
        for kind in ("ScaledObject", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Service"):
            for name, h_obj in of_kind(helm, kind).items():
                k_obj = of_kind(kust, kind)[name]
                if prod or kind in ("PodDisruptionBudget", "Service"):
                    assert h_obj["spec"] == k_obj["spec"], (kind, name)
        for name, h_ing in of_kind(helm, "Ingress").items():
            k_ing = of_kind(kust, "Ingress")[name]
            assert h_ing["spec"] == k_ing["spec"]
            assert h_ing["metadata"]["annotations"] == k_ing["metadata"]["annotations"]


def test_every_object_validates_against_the_kubernetes_schemas(
    renders: dict[str, Render], helm_render: Callable[..., Render]
) -> None:
    variants = {
        **renders,
        "helm-creds": helm_render(
            sets=("nats.auth.mode=creds", "nats.auth.existingSecret=agentbus-nats-creds")
        ),
        "helm-no-autoscaling": helm_render(
            sets=tuple(f"services.{s}.autoscaling.enabled=false" for s in SERVICES)
        ),
        "helm-ingress": helm_render(sets=("ingress.enabled=true",)),
    }
    checked = 0
    for name, render in variants.items():
        for doc in render:
            where = (name, doc["kind"], doc["metadata"]["name"])
            if doc["kind"] == "ScaledObject":
                jsonschema.validate(doc, SCALED_OBJECT_SCHEMA)
                continue
            for version in KUBE_VERSIONS:
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                except kubernetes_validate.ValidationError as exc:
                    path = ".".join(str(p) for p in exc.path)
                    pytest.fail(f"{where} against {version}: {path}: {exc.message}")
                checked += 1
    assert checked > 100


def test_the_validators_do_reject_bad_objects(renders: dict[str, Render]) -> None:
    deployment = of_kind(renders["helm-default"], "Deployment")["agentbus-gateway"]
    bad = yaml.safe_load(yaml.safe_dump(deployment))
    bad["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["pth"] = "/"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBE_VERSIONS[-1], strict=True)
    scaled = of_kind(renders["helm-default"], "ScaledObject")["agentbus-orchestrator"]
    bad_scaled = yaml.safe_load(yaml.safe_dump(scaled))
    bad_scaled["spec"]["triggers"][0]["metadata"]["lagThreshold"] = 10
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad_scaled, SCALED_OBJECT_SCHEMA)


def test_each_service_has_probes_resources_and_a_locked_down_pod(
    renders: dict[str, Render],
) -> None:
    for name, render in renders.items():
        for dep in of_kind(render, "Deployment").values():
            svc = component(dep)
            where = (name, svc)
            pod = dep["spec"]["template"]["spec"]
            c = container(dep)
            port_names = {p["name"] for p in c["ports"]}
            probes = {key: c[key]["httpGet"] for key in ("startupProbe", "livenessProbe")}
            probes["readinessProbe"] = c["readinessProbe"]["httpGet"]
            for probe in probes.values():
                assert probe["port"] in port_names, where
            assert probes["livenessProbe"]["path"] == "/healthz", where
            assert probes["startupProbe"]["path"] == "/healthz", where
            # The gateway's /readyz is platform-wide; its own readiness is /healthz.
            want = "/healthz" if svc == "gateway" else "/readyz"
            assert probes["readinessProbe"]["path"] == want, where
            assert {"cpu", "memory"} <= c["resources"]["requests"].keys(), where
            assert "memory" in c["resources"]["limits"], where
            psc = pod["securityContext"]
            assert psc["runAsNonRoot"] is True and psc["runAsUser"] != 0, where
            assert psc["seccompProfile"]["type"] == "RuntimeDefault", where
            csc = c["securityContext"]
            assert csc["readOnlyRootFilesystem"] is True, where
            assert csc["allowPrivilegeEscalation"] is False, where
            assert csc["capabilities"]["drop"] == ["ALL"], where
            mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
            volumes = {v["name"]: v for v in pod["volumes"]}
            for path in ("/tmp", "/var/lib/agentbus"):
                assert "emptyDir" in volumes[mounts[path]], where
            assert pod["automountServiceAccountToken"] is False, where
            assert pod["serviceAccountName"] == dep["metadata"]["name"], where
            env = env_of(dep)
            shutdown = float(env["AGENTBUS_SHUTDOWN_TIMEOUT_S"]["value"])
            assert pod["terminationGracePeriodSeconds"] > shutdown, where
            assert env["AGENTBUS_NATS_USER"]["value"] == svc, where
            secret = env["AGENTBUS_NATS_PASSWORD"]["valueFrom"]["secretKeyRef"]
            assert secret == {"name": "agentbus-nats", "key": f"{svc}-password"}, where
            tag = c["image"].rpartition(":")[2]
            assert tag and tag != "latest" and "/" not in tag, where
            assert c["image"].rpartition(":")[0].endswith(f"/{svc}"), where


def test_keda_triggers_name_durable_consumers_of_the_contracts(
    renders: dict[str, Render],
) -> None:
    durables = {(c.stream, c.durable): c for c in CONSUMERS}
    for name, render in renders.items():
        deployments = of_kind(render, "Deployment")
        hpa_targets = {
            h["spec"]["scaleTargetRef"]["name"]
            for h in of_kind(render, "HorizontalPodAutoscaler").values()
        }
        for scaled in of_kind(render, "ScaledObject").values():
            target = deployments[scaled["spec"]["scaleTargetRef"]["name"]]
            svc = component(target)
            [trigger] = scaled["spec"]["triggers"]
            assert trigger["type"] == "nats-jetstream"
            meta = trigger["metadata"]
            key = (meta["stream"], meta["consumer"])
            assert key in durables, f"{name}: {key} is not a durable consumer in libs/contracts"
            assert durables[key].service == svc, (name, key, svc)
            assert key == KEDA_SCALED[svc]
            assert int(meta["lagThreshold"]) > 0
            assert meta["natsServerMonitoringEndpoint"] and meta["account"]
            # KEDA owns the replica count: no replicas field, no second autoscaler.
            assert "replicas" not in target["spec"], (name, svc)
            assert target["metadata"]["name"] not in hpa_targets, (name, svc)
        for hpa in of_kind(render, "HorizontalPodAutoscaler").values():
            target = deployments[hpa["spec"]["scaleTargetRef"]["name"]]
            assert "replicas" not in target["spec"], name


def test_services_and_budgets_select_their_own_pods(renders: dict[str, Render]) -> None:
    for name, render in renders.items():
        deployments = {component(d): d for d in of_kind(render, "Deployment").values()}
        for kind in ("Service", "PodDisruptionBudget"):
            for obj in of_kind(render, kind).values():
                svc = component(obj)
                labels = deployments[svc]["spec"]["template"]["metadata"]["labels"]
                selector = obj["spec"]["selector"]
                selector = selector.get("matchLabels", selector)
                assert selector.items() <= labels.items(), (name, kind, svc)
                others = [d for s, d in deployments.items() if s != svc]
                for other in others:
                    other_labels = other["spec"]["template"]["metadata"]["labels"]
                    assert not selector.items() <= other_labels.items(), (name, kind, svc)
        for service in of_kind(render, "Service").values():
            target = service["spec"]["ports"][0]["targetPort"]
            c = container(deployments[component(service)])
            assert target in {p["name"] for p in c["ports"]}, (name, service["metadata"]["name"])


def test_ingress_keeps_server_sent_events_flowing(renders: dict[str, Render]) -> None:
    for name in ("helm-production", "kustomize-prod"):
        [ingress] = of_kind(renders[name], "Ingress").values()
        notes = ingress["metadata"]["annotations"]
        assert notes["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
        assert int(notes["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
        assert int(notes["nginx.ingress.kubernetes.io/proxy-send-timeout"]) >= 3600
        backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
        assert backend["name"] == "agentbus-gateway" and backend["port"] == {"name": "http"}


def test_nats_secret_covers_every_nats_user(renders: dict[str, Render]) -> None:
    users = {f"{u.user}-password" for u in all_users()}
    helm_secret = of_kind(renders["helm-default"], "Secret")["agentbus-nats"]
    assert set(helm_secret["data"]) == users
    dev_secret = of_kind(renders["kustomize-dev"], "Secret")["agentbus-nats"]
    assert set(dev_secret["data"]) == users
    for value in dev_secret["data"].values():  # obviously fake, never a real secret
        assert base64.b64decode(value).startswith(b"dev-only-")
    for name in ("helm-production", "kustomize-prod"):
        assert not of_kind(renders[name], "Secret"), f"{name} must not carry secrets"


def test_chart_keeps_generated_passwords_and_honours_given_ones(
    helm_render: Callable[..., Render],
) -> None:
    given = helm_render(sets=("nats.auth.passwords.gateway=from-values",))
    data = of_kind(given, "Secret")["agentbus-nats"]["data"]
    assert base64.b64decode(data["gateway-password"]) == b"from-values"
    generated = base64.b64decode(data["retrieval-password"]).decode()
    assert len(generated) == 32 and generated[0].isalpha() and generated.isalnum()


def _settings_env_names() -> set[str]:
    names: set[str] = set()
    for svc in SERVICES:
        module = importlib.import_module(f"agentbus.{svc}.settings")
        for obj in vars(module).values():
            if inspect.isclass(obj) and issubclass(obj, Settings):
                prefix = str(obj.model_config.get("env_prefix", ""))
                names |= {f"{prefix}{field}".upper() for field in obj.model_fields}
    return names


def test_every_agentbus_variable_is_a_real_setting(renders: dict[str, Render]) -> None:
    known = _settings_env_names()
    for name, render in renders.items():
        keys = set(of_kind(render, "ConfigMap")["agentbus-config"]["data"])
        for dep in of_kind(render, "Deployment").values():
            keys |= set(env_of(dep))
        unknown = {k for k in keys if k.startswith("AGENTBUS_")} - known
        assert not unknown, f"{name}: no setting reads {sorted(unknown)}"


def test_gateway_replicas_share_one_token_signing_key(
    renders: dict[str, Render], helm_render: Callable[..., Render]
) -> None:
    # Each replica generating its own key would reject tokens another replica issued.
    for name, render in renders.items():
        gateway = of_kind(render, "Deployment")["agentbus-gateway"]
        ref = env_of(gateway)["AGENTBUS_JWT_SECRET"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "agentbus-auth", "key": "jwt-secret"}, name
        for dep in of_kind(render, "Deployment").values():
            if component(dep) != "gateway":
                assert "AGENTBUS_JWT_SECRET" not in env_of(dep), name
    generated = of_kind(renders["helm-default"], "Secret")["agentbus-auth"]["data"]["jwt-secret"]
    assert len(base64.b64decode(generated)) == 48
    dev = of_kind(renders["kustomize-dev"], "Secret")["agentbus-auth"]["data"]["jwt-secret"]
    assert base64.b64decode(dev).startswith(b"dev-only-")
    given = helm_render(sets=("auth.existingSecret=mine", "auth.existingSecretKey=k"))
    assert "agentbus-auth" not in of_kind(given, "Secret")
    ref = env_of(of_kind(given, "Deployment")["agentbus-gateway"])["AGENTBUS_JWT_SECRET"]
    assert ref["valueFrom"]["secretKeyRef"] == {"name": "mine", "key": "k"}
