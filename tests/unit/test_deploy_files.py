"""The deployment files agree with the server they deploy: every settings file they hold is
valid, the ports the probes and HEALTHCHECK use are the ones configured, and the image's build
is given what the install needs. (The files' hardening is checked by tools/scan.sh.)"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import yaml

from domicile.config import load_settings, split_host_port

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def manifests() -> list[dict]:
    return [doc for path in sorted((DEPLOY / "k8s").glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text())]


def configmap_settings(tmp_path: Path):
    (configmap,) = [m for m in manifests() if m.get("kind") == "ConfigMap"]
    path = tmp_path / "domicile.yaml"
    path.write_text(configmap["data"]["domicile.yaml"])
    return load_settings(path)


@pytest.mark.parametrize("name", ["container.yaml", "domicile.yaml"])
def test_settings_files_are_valid(name):
    settings = load_settings(DEPLOY / name)
    assert settings.health_listen and settings.log_format == "json"


@pytest.mark.parametrize("name", ["domicile.yaml", "k8s"])
def test_production_settings_need_a_second_pair_of_hands_for_policy_changes(name, tmp_path):
    settings = load_settings(DEPLOY / name) if name != "k8s" else configmap_settings(tmp_path)
    assert settings.policy_changes_need_approval and not settings.dev


def test_the_kubernetes_probes_use_the_configured_health_port(tmp_path):
    settings = configmap_settings(tmp_path)
    health_port = split_host_port(settings.health_listen)[1]
    (statefulset,) = [m for m in manifests() if m["kind"] == "StatefulSet"]
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["grpc"]["port"] == health_port, probe
    assert container["livenessProbe"]["grpc"]["service"] == "liveness"
    assert "service" not in container["readinessProbe"]["grpc"]  # the server as a whole
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["grpc"] == split_host_port(settings.listen)[1]
    assert ports["https"] == split_host_port(settings.http_listen)[1]
    assert ports["metrics"] == split_host_port(settings.ops_listen)[1]
    mounted = {m["mountPath"] for m in container["volumeMounts"]}
    for path in (
        settings.tls.cert_file,
        settings.tls.key_file,
        settings.auth.jwks_file,
        settings.neo4j.password_file,
        settings.audit.checkpoint_key_file,
    ):
        assert any(str(path).startswith(mount + "/") for mount in mounted), path


def test_the_image_healthcheck_asks_the_configured_health_port():
    settings = load_settings(DEPLOY / "container.yaml")
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f'"127.0.0.1:{split_host_port(settings.health_listen)[1]}"' in dockerfile
    assert "USER 10001:10001" in dockerfile


def test_the_image_build_copies_every_package_and_what_the_engine_is_built_from():
    """No container runtime here: at least the build stage must be given every source the
    install needs (each package directory, the engine's crates and the .proto files they are
    generated from), past .dockerignore too."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = set(project["tool"]["setuptools"]["package-dir"].values())
    needed |= {"pyproject.toml", "setup.py", "Cargo.toml", "Cargo.lock", "protos"}
    needed |= set(tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["members"])
    copied = copied_sources(stages()["build"])
    assert needed <= copied, needed - copied
    assert needed <= let_in(), needed - let_in()


def test_the_image_builds_the_console_from_its_lockfile_into_the_package():
    """The console's single-page app is not committed: the image must build it (from the
    lockfile, with its sources past .dockerignore) and put it where vite writes it and the
    package data takes it from, before the install."""
    console = stages()["console"]
    assert "RUN npm ci " in console and "RUN npm run build" in console
    assert {"console-web/package.json", "console-web/package-lock.json", "console-web"} <= copied_sources(console)
    assert "console-web" in let_in()
    assert 'outDir: "../domicile/console/static"' in (ROOT / "console-web" / "vite.config.ts").read_text()
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert {"static/*", "static/assets/*"} <= set(package_data["domicile.console"])
    build = stages()["build"].splitlines()
    from_console = "COPY --from=console /src/domicile/console/static/ domicile/console/static/"
    assert from_console in build
    install = next(i for i, line in enumerate(build) if "pip install" in line)
    assert build.index(from_console) < install
    assert build.index("COPY domicile/ domicile/") < build.index(from_console)  # not overwritten


def stages() -> dict[str, str]:
    """The Dockerfile's named stages' text, by name (`FROM image AS name`)."""
    named = {}
    for stage in (ROOT / "Dockerfile").read_text().split("\nFROM ")[1:]:
        words = stage.splitlines()[0].split()
        if len(words) == 3 and words[1] == "AS":
            named[words[2]] = stage
    return named


def copied_sources(stage: str) -> set[str]:
    """The build-context paths a stage's COPY lines copy (not those from other stages)."""
    return {
        source.rstrip("/")
        for line in stage.splitlines()
        if line.startswith("COPY ") and "--from" not in line
        for source in line.split()[1:-1]
    }


def let_in() -> set[str]:
    """The paths .dockerignore lets into the build context."""
    return {line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines() if line.startswith("!")}
