"""deploy/: the compose stack, nginx and Prometheus configuration agree with the image and the settings.
No Docker engine runs here, so the stack is checked as files: parsed, cross-checked, and `nginx -t`."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from search.settings import Settings
from service.shop_routes import router as shop_router

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


def dockerfile() -> dict[str, list[str]]:
    """The Dockerfile's instructions (continuation lines joined): name -> the argument of each."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, argument = line.strip().partition(" ")
            found.setdefault(name.upper(), []).append(argument.strip())
    return found


def image_env() -> dict[str, str]:
    pairs = [pair for argument in dockerfile().get("ENV", []) for pair in shlex.split(argument)]
    return dict(pair.split("=", 1) for pair in pairs)


def exposed_port() -> int:
    ports = dockerfile()["EXPOSE"]
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


def test_the_image_and_the_stack_agree_on_port_command_and_index(compose: dict[str, Any]) -> None:
    env = image_env()
    port = exposed_port()
    assert int(env["FASHION_PORT"]) == port and env["FASHION_HOST"] == "0.0.0.0"
    index_dir = env["FASHION_INDEX_DIR"]
    (entrypoint,) = dockerfile()["ENTRYPOINT"]
    assert 'fashion-search serve --index "$FASHION_INDEX_DIR"' in " ".join(json.loads(entrypoint))
    image_volumes = set(json.loads(dockerfile()["VOLUME"][0]))
    job = services(compose)["index"]
    built = re.search(r"fashion-search index build .*--out (\S+)", " ".join(job["entrypoint"]))
    assert built is not None and built.group(1) == index_dir  # the job publishes what the replicas serve
    for service in (job, *(services(compose)[name] for name in REPLICAS)):
        assert environment(service).get("FASHION_INDEX_DIR", index_dir) == index_dir
        mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in service["volumes"]}
        assert image_volumes <= mounts.keys()  # nothing the image keeps as a volume is left anonymous
        holder = max((m for m in mounts if index_dir.startswith(m.rstrip("/") + "/")), key=len)
        assert mounts[holder] == "index"  # the same named volume in the job and every replica


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
    stream = re.search(r"location\s+~\s+(\S+)\s*\{(.*?)\}", text, re.S)
    assert stream is not None
    stream_path = re.compile(stream.group(1))
    assert stream_path.match("/v1/sessions/3f2a9c/stream") and not stream_path.match("/v1/sessions/3f2a9c")
    routes = {getattr(route, "path", None) for route in shop_router.routes}
    assert "/v1/sessions/{session_id}/stream" in routes  # the service's route that location stands for
    assert re.search(r"proxy_buffering\s+off;", stream.group(2))
    read_timeout = re.search(r"proxy_read_timeout\s+(\d+)h;", stream.group(2))
    assert read_timeout is not None and int(read_timeout.group(1)) * 3600 > 10 * Settings().stream_ping_s
    assert "X-Forwarded-For $proxy_add_x_forwarded_for" in text


def test_nginx_limits_stay_clear_of_the_service_limits(compose: dict[str, Any]) -> None:
    """Bodies: nginx takes more than the largest body any route accepts, so the service answers its own 413
    (problem details). Idle upstream connections: nginx drops them before a replica closes them."""
    text = (DEPLOY / "nginx.conf").read_text(encoding="utf-8")
    limit = re.search(r"client_max_body_size\s+(\d+)m;", text)
    assert limit is not None
    defaults = Settings()
    bodies = ("max_upload_bytes", "max_json_body_bytes", "max_admin_body_bytes", "max_batch_body_bytes")
    assert int(limit.group(1)) * MiB > max(getattr(defaults, name) for name in bodies)
    idle = re.search(r"upstream\s+\w+\s*\{[^}]*keepalive_timeout\s+(\d+)s;", text)
    assert idle is not None
    for name in REPLICAS:
        env = environment(services(compose)[name])
        for setting in ("keep_alive_timeout_s", "header_timeout_s"):
            replica_s = float(env.get(f"FASHION_{setting.upper()}", getattr(defaults, setting)))
            assert int(idle.group(1)) < replica_s, setting


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
