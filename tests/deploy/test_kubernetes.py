"""deploy/kubernetes/: every manifest is valid for current Kubernetes versions (kubernetes-validate,
strict: unknown fields refused), kustomize builds the set, the ConfigMap's config passes
`fastgate -t`, and the manifests agree with each other and with that config (ports, probes, the
drain fitting in the grace period, selectors, the admin port kept in the cluster).
"""

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from fastgate.config.json_schema import config_schema
from fastgate.config.units import parse_duration
from tests.support.gateway import run_cli

KUBERNETES = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
VERSIONS = ("1.35.0", "1.37.0")
"""The oldest and the newest Kubernetes versions kubernetes-validate ships that are still maintained."""
MANIFESTS = sorted(p for p in KUBERNETES.rglob("*.yaml") if p.name != "kustomization.yaml")


def _documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _resources() -> dict[tuple[str, str], dict]:
    """(kind, name) -> the manifest, for those kustomization.yaml applies."""
    listed = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())["resources"]
    return {(doc["kind"], doc["metadata"]["name"]): doc for name in listed for doc in _documents(KUBERNETES / name)}


def _gate_conf() -> str:
    return _resources()[("ConfigMap", "fastgate-config")]["data"]["gate.conf"]


def _port(address: str) -> int:
    return int(address.rpartition(":")[2])


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: str(p.relative_to(KUBERNETES)))
def test_manifest_is_valid(manifest, version):
    for document in _documents(manifest):
        kubernetes_validate.validate(document, version, strict=True)


def test_kustomization_applies_every_manifest_of_its_directory():
    listed = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in MANIFESTS if p.parent == KUBERNETES)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="needs kubectl (kustomize built in)")
def test_kustomize_builds_valid_resources_in_one_namespace():
    done = subprocess.run(["kubectl", "kustomize", str(KUBERNETES)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    built = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    assert len(built) == sum(len(_documents(KUBERNETES / n)) for n in
                             yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())["resources"])
    for document in built:
        kubernetes_validate.validate(document, VERSIONS[-1], strict=True)
        if document["kind"] != "Namespace":
            assert document["metadata"]["namespace"] == "fastgate"
        assert document["metadata"]["labels"]["app.kubernetes.io/part-of"] == "fastgate"


def test_the_configmaps_config_passes_fastgate_t(tmp_path):
    config = tmp_path / "gate.conf"
    config.write_text(_gate_conf())
    done = run_cli("-t", "-c", str(config))
    assert done.returncode == 0, done.stderr
    assert "test is successful" in done.stdout
    assert list(jsonschema.Draft7Validator(config_schema()).iter_errors(tomllib.loads(_gate_conf()))) == []


def test_the_deployment_fits_the_config():
    resources = _resources()
    config = tomllib.loads(_gate_conf())
    pod = resources[("Deployment", "fastgate")]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == _port(config["listeners"][0]["address"])
    assert ports["admin"] == _port(config["admin"]["address"])
    assert not config["admin"]["address"].startswith("127."), "probes and Prometheus come from outside the pod"
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}

    # the config comes from the ConfigMap, mounted where the container's -c looks
    config_path = Path(container["args"][container["args"].index("-c") + 1])
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    config_volume = next(name for name, path in mounts.items() if Path(path) == config_path.parent)
    assert volumes[config_volume]["configMap"]["name"] == "fastgate-config"
    # the root filesystem is read-only: the pid file is on a writable mount
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    pid_dir = Path(config["server"]["pid_file"]).parent
    assert "emptyDir" in volumes[next(n for n, p in mounts.items() if Path(p) == pid_dir)]

    # preStop: wait, ask the master for a graceful stop (QUIT) with the same config, wait for its exit;
    # all of it within the grace period
    command = " ".join(container["lifecycle"]["preStop"]["exec"]["command"])
    assert f"fastgate -s quit -c {config_path}" in command
    delay_s = float(next(e["value"] for e in container["env"] if e["name"] == "PRESTOP_DELAY_S"))
    assert re.search(r'sleep "\$PRESTOP_DELAY_S"', command)
    assert pod["terminationGracePeriodSeconds"] > delay_s + parse_duration(config["server"]["drain_timeout"])
    workers = config["server"]["workers"]
    assert workers == int(container["resources"]["limits"]["cpu"]), "one worker per CPU of the limit"


def test_selectors_ports_and_the_admin_port_kept_in_the_cluster():
    resources = _resources()
    deployment = resources[("Deployment", "fastgate")]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    container_ports = {p["name"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]}
    for name in ("fastgate", "fastgate-admin"):
        service = resources[("Service", name)]["spec"]
        assert service["selector"].items() <= labels.items()
        assert {p["targetPort"] for p in service["ports"]} <= container_ports
    assert resources[("Service", "fastgate")]["spec"]["ports"][0]["targetPort"] == "http"
    assert resources[("PodDisruptionBudget", "fastgate")]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    hpa = resources[("HorizontalPodAutoscaler", "fastgate")]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "fastgate"}
    assert hpa["minReplicas"] >= 2 and hpa["metrics"][0]["resource"]["name"] == "cpu"

    policy = resources[("NetworkPolicy", "fastgate")]["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    rules = {port["port"]: rule for rule in policy["ingress"] for port in rule["ports"]}
    assert "from" not in rules["http"], "clients come from anywhere"
    assert rules["admin"]["from"] == [{"namespaceSelector": {}}], "the admin port only from pods of the cluster"

    redis = resources[("StatefulSet", "fastgate-redis")]
    redis_service = resources[("Service", "fastgate-redis")]
    assert tomllib.loads(_gate_conf())["ratelimit"]["redis"]["url"] == "redis://fastgate-redis:6379/0"
    assert redis_service["spec"]["ports"][0]["port"] == 6379
    assert redis["spec"]["serviceName"] == "fastgate-redis"
    redis_policy = resources[("NetworkPolicy", "fastgate-redis")]["spec"]
    assert redis_policy["ingress"][0]["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "fastgate"}}}]
