"""deploy/: the compose stack, nginx and Prometheus configuration agree with the image and the settings.
No Docker engine runs here, so the stack is checked as files: parsed, cross-checked, and `nginx -t`."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from search.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
REPLICAS = ("search-a", "search-b")
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def services(compose: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = compose["services"]
    return found


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(name): str(value) for name, value in env.items()}


def exposed_port() -> int:
    ports = re.findall(r"^EXPOSE\s+(\d+)", (ROOT / "Dockerfile").read_text(encoding="utf-8"), re.M)
    assert len(ports) == 1, ports
    return int(ports[0])


def setting_names(model: type[BaseModel], prefix: str = "FASHION_") -> set[str]:
    """Every FASHION_* variable Settings reads, nested models joined with "__"."""
    names = set()
    for field, info in model.model_fields.items():
        name = prefix + field.upper()
        names.add(name)
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            names |= setting_names(info.annotation, name + "__")
    return names


def test_the_stack_has_its_services(compose: dict[str, Any]) -> None:
    assert {"index", *REPLICAS, "redis", "lb", "prometheus", "milvus"} <= services(compose).keys()
    assert services(compose)["milvus"]["profiles"] == ["milvus"]  # optional
    assert "profiles" not in services(compose)["redis"]


def test_every_fashion_variable_is_a_setting(compose: dict[str, Any]) -> None:
    known = setting_names(Settings)
    assert "FASHION_EMBEDDER__MODEL_NAME" in known
    text = (DEPLOY / "compose.yaml").read_text(encoding="utf-8")
    used = set(re.findall(r"\bFASHION_[A-Z0-9_]+", text))
    for service in services(compose).values():
        used |= {name for name in environment(service) if name.startswith("FASHION_")}
    assert used and not used - known, f"not settings: {sorted(used - known)}"


def test_replica_environment_parses_as_settings(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in REPLICAS:
        env = environment(services(compose)[name])
        assert env["FASHION_REDIS_URL"] == "redis://redis:6379/0"
        assert env["FASHION_INDEX_DIR"] == "/data/index/current" and env["FASHION_LOG_FORMAT"] == "json"
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = Settings()  # as the container reads them
        assert settings.log_format == "json" and settings.trusted_proxies == ["172.28.0.10"]


def test_the_trusted_proxy_is_the_load_balancer(compose: dict[str, Any]) -> None:
    lb_address = services(compose)["lb"]["networks"]["default"]["ipv4_address"]
    subnet = compose["networks"]["default"]["ipam"]["config"][0]["subnet"]
    import ipaddress

    assert ipaddress.ip_address(lb_address) in ipaddress.ip_network(subnet)
    for name in REPLICAS:
        trusted = yaml.safe_load(environment(services(compose)[name])["FASHION_TRUSTED_PROXIES"])
        assert any(ipaddress.ip_address(lb_address) in ipaddress.ip_network(entry) for entry in trusted)


def test_replicas_build_the_image_and_wait_for_index_and_redis(compose: dict[str, Any]) -> None:
    port = exposed_port()
    for name in REPLICAS:
        replica = services(compose)[name]
        assert replica["build"] == {"context": "..", "dockerfile": "Dockerfile"}
        assert (DEPLOY / replica["build"]["context"] / replica["build"]["dockerfile"]).is_file()
        assert replica["depends_on"]["index"]["condition"] == "service_completed_successfully"
        assert replica["depends_on"]["redis"]["condition"] == "service_healthy"
        assert [int(p) for p in replica["expose"]] == [port]
        probe = " ".join(replica["healthcheck"]["test"])
        assert f"127.0.0.1:{port}/readyz" in probe
        mounts = {volume.split(":")[1] for volume in replica["volumes"]}
        assert {"/data/index", "/models"} <= mounts  # the Dockerfile's volumes
        assert "entrypoint" not in replica  # the image's `fashion-search serve`


def test_the_index_job_builds_the_demo_catalogue(compose: dict[str, Any]) -> None:
    job = services(compose)["index"]
    command = " ".join(job["entrypoint"])
    assert "scripts.demo_catalog" in command
    assert (
        "fashion-search index build --catalog /data/index/catalog/catalog.jsonl --out /data/index/current"
        in (command)
    )
    assert job["restart"] == "no"


def test_redis_persists_and_reports_health(compose: dict[str, Any]) -> None:
    redis = services(compose)["redis"]
    assert redis["image"] == "redis:7" and "--appendonly" in redis["command"]
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert any(volume.endswith(":/data") for volume in redis["volumes"])
    named = set(compose["volumes"])
    for service in services(compose).values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source.startswith("./") or source in named, volume
            if source.startswith("./"):
                assert (DEPLOY / source).is_file(), volume


def test_nginx_config_balances_both_replicas_and_streams_sessions() -> None:
    text = (DEPLOY / "nginx.conf").read_text(encoding="utf-8")
    upstream = re.search(r"upstream\s+\w+\s*\{(.*?)\}", text, re.S)
    assert upstream is not None
    servers = re.findall(r"^\s*server\s+([\w.-]+):(\d+)", upstream.group(1), re.M)
    assert sorted(servers) == [(name, str(exposed_port())) for name in REPLICAS]
    assert not re.search(r"\b(ip_hash|hash|sticky)\b", upstream.group(1))  # round robin
    sessions = re.search(r"location\s+/v1/sessions/\s*\{(.*?)\}", text, re.S)
    assert sessions is not None
    assert re.search(r"proxy_buffering\s+off;", sessions.group(1))
    assert re.search(r"proxy_read_timeout\s+1h;", sessions.group(1))
    assert "X-Forwarded-For $proxy_add_x_forwarded_for" in text
    limit = re.search(r"client_max_body_size\s+(\d+)m;", text)
    assert limit is not None
    defaults = Settings()
    assert int(limit.group(1)) * MiB >= defaults.max_upload_bytes + defaults.max_batch_body_bytes


def test_nginx_accepts_the_config(tmp_path: Path) -> None:
    nginx = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)
    if nginx is None:
        pytest.skip("nginx is not installed: `nginx -t` on deploy/nginx.conf not run")
    text = (DEPLOY / "nginx.conf").read_text(encoding="utf-8")
    for name in REPLICAS:
        text = text.replace(f"{name}:", "127.0.0.1:")  # compose's names do not resolve here
    text = re.sub(r"^pid .*;$", f"pid {tmp_path}/nginx.pid;", text, flags=re.M)
    text = re.sub(r"^error_log .*;$", f"error_log {tmp_path}/error.log warn;", text, flags=re.M)
    text = re.sub(r"access_log [^;]*;", f"access_log {tmp_path}/access.log;", text)
    text = text.replace("include /etc/nginx/mime.types;", "types { text/html html; }")
    temp = "\n".join(
        f"    {kind}_temp_path {tmp_path}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    text = text.replace("http {\n", f"http {{\n{temp}\n", 1)
    (tmp_path / "nginx.conf").write_text(text, encoding="utf-8")
    result = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_prometheus_scrapes_both_replicas() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text(encoding="utf-8"))
    targets = [
        target
        for job in config["scrape_configs"]
        if job.get("metrics_path", "/metrics") == "/metrics"
        for static in job["static_configs"]
        for target in static["targets"]
    ]
    assert sorted(targets) == [f"{name}:{exposed_port()}" for name in REPLICAS]
