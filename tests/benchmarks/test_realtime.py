"""benchmarks/realtime.py and benchmarks/peer_server.py: the pure parts (configurations, statistics, run
order, the catalogue feed), the peer app on generated images, and a smoke run on the real data (marked
`data`, skipped without it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.peer_server import read_catalogue
from benchmarks.quality_data import Product
from benchmarks.realtime import (
    Sample,
    compare,
    is_whole_frame,
    latency_summary,
    missing_data,
    paired_ratio,
    parse_configs,
    parse_env,
    parse_peer_threads,
    peer_name,
    ratio,
    same_model_notes,
    schedule,
    summarise_system,
    write_catalogue,
)
from tests.helpers import REPO_ROOT, garment_image


def test_parse_env_splits_only_where_the_next_setting_begins() -> None:
    assert parse_env("") == {}
    assert parse_env("FASHION_A=1, FASHION_B__C=x/y.safetensors") == {
        "FASHION_A": "1",
        "FASHION_B__C": "x/y.safetensors",
    }
    assert parse_env('FASHION_CORS_ORIGINS=["a","b"],FASHION_X=') == {
        "FASHION_CORS_ORIGINS": '["a","b"]',
        "FASHION_X": "",
    }
    for bad in ("FASHION_A", "1A=2", "=3"):
        with pytest.raises(ValueError, match="not KEY=VALUE"):
            parse_env(bad)


def test_parse_configs_marks_a_missing_weights_file_as_skipped(tmp_path: Path) -> None:
    weights = tmp_path / "present.safetensors"
    weights.write_bytes(b"x")
    configs = parse_configs(
        f"v1=; v3=FASHION_EMBEDDER__PRETRAINED={tmp_path}/absent.safetensors;"
        f"mine=FASHION_EMBEDDER__PRETRAINED={weights},FASHION_DETECTOR_THREADS=2;"
        "clip=FASHION_EMBEDDER__KIND=open_clip,FASHION_EMBEDDER__PRETRAINED=laion2b_s34b_b79k"
    )
    assert [c.label for c in configs] == ["v1", "v3", "mine", "clip"]
    assert configs[0].env == {} and configs[0].skipped is None
    assert configs[1].skipped is not None and "absent.safetensors" in configs[1].skipped
    assert configs[2].skipped is None and configs[2].env["FASHION_DETECTOR_THREADS"] == "2"
    assert configs[3].skipped is None  # a tag, not a file: left to the service
    for bad in ("", "v1=;v1=", "peer=", "a b=", "=FASHION_A=1"):
        with pytest.raises(ValueError):
            parse_configs(bad)


def test_parse_peer_threads() -> None:
    assert parse_peer_threads("default,1, 2") == [None, 1, 2]
    assert [peer_name(t) for t in (None, 1)] == ["peer", "peer-1t"]
    for bad in ("", "0", "two", "1,1"):
        with pytest.raises(ValueError):
            parse_peer_threads(bad)


def test_latency_summary_and_ratios() -> None:
    summary = latency_summary([float(v) for v in range(1, 102)])  # 1 .. 101
    assert summary == {"p50": 51.0, "p95": 96.0, "mean": 51.0, "min": 1.0, "max": 101.0, "n": 101}
    assert latency_summary([7.0])["p95"] == 7.0
    assert latency_summary([]) == {"n": 0}
    assert latency_summary([10.0, 20.0])["p50"] == 15.0  # linear interpolation
    assert ratio(50.0, 200.0) == 0.25
    assert ratio(50.0, 0.0) is None and ratio(None, 1.0) is None
    ours = {1: [10.0, 12.0], 2: [30.0], 3: [5.0]}
    peer = {1: [40.0, 48.0], 2: [60.0]}  # photo 3 has no peer answer: not paired
    assert paired_ratio(ours, peer) == pytest.approx((0.25 + 0.5) / 2)


def test_schedule_rotates_the_systems_and_sends_every_photo_to_each_once_per_pass() -> None:
    steps = schedule(5, ["v1", "v3", "peer"], block=2, repeats=2)
    assert [(r, b, s, list(i)) for r, b, s, i in steps[:6]] == [
        (0, 0, "v1", [0, 1]), (0, 0, "v3", [0, 1]), (0, 0, "peer", [0, 1]),
        (0, 1, "v3", [2, 3]), (0, 1, "peer", [2, 3]), (0, 1, "v1", [2, 3]),
    ]  # fmt: skip
    assert [s for _, b, s, _ in steps if b == 2] == ["peer", "v1", "v3"]
    assert len(steps) == 2 * 3 * 3  # 2 passes x 3 blocks x 3 systems
    for system in ("v1", "v3", "peer"):
        for repeat in (0, 1):
            sent = [i for r, _, s, indices in steps if s == system and r == repeat for i in indices]
            assert sent == [0, 1, 2, 3, 4]
    leaders = [steps[n][2] for n in range(0, len(steps), 3)]  # first system of each block
    assert sorted(leaders) == ["peer", "peer", "v1", "v1", "v3", "v3"]  # each leads as often


def _sample(photo: int, block: int, wall: float, total: float, garments: int | None = None) -> Sample:
    timings = {"decode": 1.0, "detect": total - 10, "embed": 9.0, "total": total}
    return Sample(photo, 0, block, 200, wall, timings, garments, None if garments is None else garments == 1)


def test_compare_and_summarise_a_run() -> None:
    ours = [_sample(1, 0, 100.0, 90.0, 4), _sample(2, 0, 120.0, 110.0, 1), _sample(3, 1, 140.0, 130.0, 5)]
    ours.append(Sample(4, 0, 1, 503, 5.0))  # an error: counted, not timed
    peer = [_sample(1, 0, 300.0, 295.0), _sample(2, 0, 240.0, 235.0), _sample(3, 1, 280.0, 275.0)]
    result = compare(ours, peer)
    assert result["p50_ratio"] == round(120 / 280, 3)
    assert result["meets_target"] is True
    assert result["paired_per_photo_median_ratio"] == 0.5  # 100/300, 120/240, 140/280
    assert result["per_block_ratio"] == {"min": 0.407, "median": 0.4535, "max": 0.5}
    assert compare(ours, [_sample(1, 0, 150.0, 140.0)])["meets_target"] is False
    summary = summarise_system(ours, "ours")
    assert summary["answers"] == {"200": 3, "503": 1}
    assert summary["latency_ms"]["n"] == 3 and summary["latency_ms"]["p50"] == 120.0
    assert summary["server_stage_median_ms"]["detect"] == 100.0
    assert summary["server_stage_share_of_total"]["detect"] == pytest.approx(100 / 110, abs=1e-3)
    assert summary["http_overhead_median_ms"] == 10.0
    assert summary["garments_per_photo"] == {"median": 4, "mean": 3.33, "min": 1, "max": 5,
                                             "histogram": {"1": 1, "4": 1, "5": 1},
                                             "whole_frame_fraction": 0.333}  # fmt: skip
    assert "garments_per_photo" not in summarise_system(peer, "peer")


def test_configurations_serving_the_same_model_are_noted() -> None:
    def report(label: str, status: str, model: str = "") -> dict:
        return {"label": label, "status": status, "index": {"model_name": model}}

    reports = [report("v1", "measured", "fashion-net:v3"), report("v3", "measured", "fashion-net:v3"),
               report("v2", "skipped"), report("clip", "measured", "open_clip:x")]  # fmt: skip
    assert same_model_notes(reports) == ["v1, v3 all serve fashion-net:v3"]
    assert same_model_notes(reports[2:]) == []


def test_whole_frame_answer() -> None:
    def body(*boxes: list[float]) -> dict:
        return {"garments": [{"box": box} for box in boxes], "image_size": [550, 830]}

    assert is_whole_frame(body([0, 0, 550, 830]))
    assert not is_whole_frame(body([0, 0, 550, 830], [10, 10, 40, 40]))  # two garments
    assert not is_whole_frame(body([12, 40, 300, 500]))  # one parser garment
    assert not is_whole_frame(body())


def test_catalogue_feed_is_what_both_systems_read(tmp_path: Path) -> None:
    paths = []
    for n in range(3):
        paths.append(tmp_path / "images" / f"{n}.jpg")
        paths[-1].parent.mkdir(exist_ok=True)
        garment_image(n).save(paths[-1])
    products = [
        Product(f"fpi-{n}", "fpi", path, f"Shirt {n}", "top", "Shirts", {"colour": "red", "category": "top"})
        for n, path in enumerate(paths)
    ]
    feed = write_catalogue(products, tmp_path / "feed" / "catalogue.jsonl")
    rows = [json.loads(line) for line in feed.read_text().splitlines()]
    assert rows[0] == {"id": "fpi-0", "image": str(paths[0].resolve()), "title": "Shirt 0", "category": "top",
                       "attributes": {"colour": "red"}}  # fmt: skip
    assert read_catalogue(feed) == [(f"fpi-{n}", path.resolve()) for n, path in enumerate(paths)]


def test_missing_data_is_a_clear_error(tmp_path: Path) -> None:
    assert missing_data(tmp_path)[0] == tmp_path / "fpi-train" / "styles.csv"
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.realtime", "--data", str(tmp_path), "--out", str(tmp_path / "o")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode != 0
    assert "realtime: data not found" in run.stderr and "styles.csv" in run.stderr and "--data" in run.stderr


@pytest.mark.slow
def test_peer_app_finds_an_indexed_image_first_and_refuses_a_non_image(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from benchmarks.peer_server import PeerOptions, create_peer_app

    feed = tmp_path / "feed.jsonl"
    lines = []
    for n in range(4):
        garment_image(n, size=96).save(tmp_path / f"{n}.png")
        lines.append(json.dumps({"id": f"item-{n}", "image": f"{n}.png", "title": "t", "category": "top"}))
    feed.write_text("\n".join(lines) + "\n")
    with TestClient(create_peer_app(PeerOptions(feed, threads=1, cache=tmp_path / "cache"))) as client:
        info = client.get("/info").json()
        assert (info["items"], info["dimension"], info["torch_threads"]) == (4, 512, 1)
        with (tmp_path / "2.png").open("rb") as handle:
            body = client.post(
                "/v1/search", files={"image": ("2.png", handle, "image/png")}, data={"top_k": "3"}
            )
        assert body.status_code == 200
        answer = body.json()
        assert answer["ids"][0] == "item-2" and len(answer["ids"]) == 3
        assert answer["scores"][0] == pytest.approx(1.0, abs=1e-3)
        assert set(answer["timings_ms"]) == {"decode", "embed", "search", "total"}
        refused = client.post("/v1/search", files={"image": ("x.jpg", b"not an image", "image/jpeg")})
        assert refused.status_code == 422
    assert len(list((tmp_path / "cache").glob("peer-vectors-*.npy"))) == 1


@pytest.mark.data
@pytest.mark.slow
def test_smoke_run_on_the_real_data(tmp_path: Path, real_data: Path) -> None:
    out = tmp_path / "realtime.json"
    absent = tmp_path / "absent.safetensors"
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.realtime", "--data", str(real_data), "--limit", "3",
         "--catalogue-limit", "8", "--repeats", "1", "--peer-threads", "default", "--configs",
         f"defaults=;gone=FASHION_EMBEDDER__PRETRAINED={absent}", "--out", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["quick"] is True
    assert (report["data"]["photos"], report["data"]["catalogue_items"]) == (3, 8)
    for name in ("defaults", "peer"):
        assert report["systems"][name]["answers"] == {"200": 3}
        assert report["systems"][name]["latency_ms"]["n"] == 3
    garments = report["systems"]["defaults"]["garments_per_photo"]
    assert garments["min"] >= 1 and 0 <= garments["whole_frame_fraction"] <= 1
    assert {"detect", "embed", "total"} <= set(report["systems"]["defaults"]["server_stage_median_ms"])
    assert report["headline"]["ours_p50_over_peer_p50"]["defaults"] > 0
    assert report["peers"][0]["torch_threads_source"] == "PyTorch default"
    gone = next(c for c in report["configs"] if c["label"] == "gone")
    assert gone["status"] == "skipped" and "absent.safetensors" in gone["reason"]
    assert set(report["load_average_1_5_15m"]) == {"start", "before_measurement", "after_measurement"}
    markdown = out.with_suffix(".md").read_text()
    assert markdown.startswith("# Real-time speed on real street photos") and "skipped" in markdown
