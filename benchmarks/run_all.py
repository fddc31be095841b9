"""Run the performance suite and write one JSON report and a short markdown summary.

    python -m benchmarks.run_all [--quick] [--data ../shared/data] [--out-dir benchmarks/results]

Runs, one after the other (each in its own process, so none inherits another's threads):
  pipeline_steps     each optimisation step's effect on one search, in-process, per stage
  http_concurrency   end to end over HTTP against a real server at concurrency 1/2/4/8: ours (ONNX
                     Runtime), ours on PyTorch, and the naive whole-image pipeline, with stage medians
  build_throughput   `fashion-search index build` on a generated 2,000-image catalogue, per runtime
  index_scale        vector search latency and recall vs exact at 10k and 100k vectors, per index type
  outfit_quality     ours vs naive on the held-out CCP photos (skipped, with the reason, without data)
  quality            search quality on held-out real data (fpi, clothing, CCP) through the CLI code path,
                     against the whole-frame and colour-histogram baselines (skipped without data)
  profile_quality    style profiles for simulated shoppers on the real validation catalogue: nDCG@10 of
                     what fits them with no profile, the quiz, clicks, both (skipped without data)
Each writes its own JSON under --out-dir; then `report.json` gathers the headline figures, the budget
lines (met or not) and the machine, and `report.md` says the same in a table. `--quick` shrinks every
run (for checking the suite itself; its figures are not the published ones).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.machine import machine_info

REPO = Path(__file__).resolve().parents[1]
BUDGET = {"p50_c1_ms": 150, "p95_c1_ms": 250, "throughput_c2_over_c1": 1.6, "build_items_per_s": 100}


def commands(args: argparse.Namespace, out: Path) -> dict[str, list[str] | None]:
    quick = args.quick
    scale = ["--queries", "100"] if quick else []
    data_ready = (args.data / "ccp" / "labels.json").is_file()
    quality_ready = data_ready and (args.data / "fpi-train" / "styles.csv").is_file()
    return {
        "pipeline_steps": ["--rounds", "1", "--passes", "1", "--scenes", "4", "--items", "100"]
        if quick
        else [],
        "http_concurrency": ["--requests", "5", "--items", "100", "--scenes", "4"] if quick else [],
        "build_throughput": ["--items", "200", "--passes", "1"] if quick else [],
        # IVF-PQ needs ~39 training vectors per list: at 10k the size rule picks Flat anyway.
        "index_scale_10k": ["--count", "10000", "--types", "Flat;HNSW32,Flat", *scale],
        "index_scale_100k": ["--count", "20000" if quick else "100000", *scale],
        "outfit_quality": (["--data", str(args.data)] + (["--limit", "10"] if quick else []))
        if data_ready
        else None,
        "quality": (["--data", str(args.data)] + (["--limit", "20"] if quick else []))
        if quality_ready
        else None,
        "profile_quality": (["--data", str(args.data)] + (["--shoppers", "20"] if quick else []))
        if quality_ready
        else None,
    }


def run(name: str, extra: list[str], out: Path) -> dict[str, Any]:
    module = "index_scale" if name.startswith("index_scale") else name
    target = out / f"{name}.json"
    started = time.perf_counter()
    print(f"[run_all] {name} ...", flush=True)
    done = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", *extra, "--out", str(target)], cwd=REPO, check=False
    )
    seconds = round(time.perf_counter() - started, 1)
    if done.returncode != 0:
        return {"status": "failed", "exit_code": done.returncode, "seconds": seconds}
    return {"status": "ok", "seconds": seconds, "result": json.loads(target.read_text(encoding="utf-8"))}


def headline(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The figures the budget and the issue ask for, pulled out of each benchmark's JSON."""
    found: dict[str, Any] = {}
    http = runs.get("http_concurrency", {}).get("result")
    if http:
        for pipeline in http["results"]:
            c1 = pipeline["levels"][0]
            found[pipeline["pipeline"]] = {
                "p50_c1_ms": c1["latency_ms"]["p50"],
                "p95_c1_ms": c1["latency_ms"]["p95"],
                "throughput_per_s": {
                    str(lv["concurrency"]): lv["throughput_per_s"] for lv in pipeline["levels"]
                },
                "server_stage_median_ms_c1": c1["server_stage_median_ms"],
            }
        found["ratios"] = http["ratios"]
    steps = runs.get("pipeline_steps", {}).get("result")
    if steps:
        found["steps_total_ms"] = {s["step"]: s["wall_median_ms"]["total"] for s in steps["steps"]}
        found["steps_cpu_ms"] = {s["step"]: s["cpu_median_ms"] for s in steps["steps"]}
    build = runs.get("build_throughput", {}).get("result")
    if build:
        found["build_items_per_s"] = {rt: r["items_per_s_median"] for rt, r in build["results"].items()}
    for name in ("index_scale_10k", "index_scale_100k"):
        scale = runs.get(name, {}).get("result")
        if scale:
            found[name] = {
                r["factory"]: {
                    "p50_ms": r["single_query_latency"]["p50_ms"],
                    "recall_at_10": r["recall_at_10"],
                }
                for r in scale["results"]
            }
    quality = runs.get("outfit_quality", {}).get("result")
    if quality:
        metrics = quality["metrics"]
        found["outfit_quality"] = {
            side: {k: metrics[side][k]["mean"] for k in ("coverage_at_10", "precision_at_10")}
            for side in ("ours", "naive")
        }
    real = runs.get("quality", {}).get("result")
    if real:
        found["quality"] = {}
        for name, pipeline in real["pipelines"].items():
            products = pipeline["product_to_product"]
            fpi = products.get("fpi", {})
            found["quality"][name] = {
                "p10_same_type": products["all"]["p10_same_type"],
                "p10_same_type_and_colour": fpi.get("p10_same_type_and_colour"),
                "exactly_one_garment": products["all"]["exactly_one_garment"],
                "colour_top1": fpi.get("colour_top1"),
                "street_to_shop_p10_macro": pipeline["street_to_shop"]["p10_macro"],
                "detection_recall_macro": pipeline["detection"]["recall_macro"],
            }
    profiles = runs.get("profile_quality", {}).get("result")
    if profiles and profiles.get("at_default"):
        default = profiles["at_default"]
        found["profile_quality"] = {
            "profile_max_boost": profiles["default_boost"],
            "ndcg_at_10": {c: v["ndcg_at_10"] for c, v in default["conditions"].items()},
            "ndcg_gain_quiz_clicks": default["ndcg_gain"]["quiz_clicks"],
            "category_p10_cost": default["category_p10_cost"]["quiz_clicks"],
        }
    return found


def budget_lines(found: dict[str, Any]) -> list[dict[str, Any]]:
    ours = found.get("garment-parser", {})
    ratio = found.get("ratios", {}).get("throughput_c2_over_c1")
    builds = found.get("build_items_per_s", {})
    lines = [
        ("p50 end to end at concurrency 1 (ms)", ours.get("p50_c1_ms"), "<=", BUDGET["p50_c1_ms"]),
        ("p95 end to end at concurrency 1 (ms)", ours.get("p95_c1_ms"), "<=", BUDGET["p95_c1_ms"]),
        ("throughput at concurrency 2 over 1", ratio, ">=", BUDGET["throughput_c2_over_c1"]),
        ("index build (images/s, default runtime)", builds.get("onnx"), ">=", BUDGET["build_items_per_s"]),
    ]
    result = []
    for label, value, op, goal in lines:
        met = None if value is None else (value <= goal if op == "<=" else value >= goal)
        result.append({"line": label, "value": value, "goal": f"{op} {goal}", "met": met})
    return result


def markdown(report: dict[str, Any]) -> str:
    machine = report["machine"]
    rows = [
        "# Performance report",
        "",
        f"{report['finished_at']} on {machine['cpu']} ({machine['cores']} cores, load average "
        f"{machine['load_average_1m']} at the end)."
        + (" QUICK RUN: not the published figures." if report["quick"] else ""),
        "",
        "| budget line | measured | goal | met |",
        "|---|---|---|---|",
    ]
    for line in report["budget"]:
        met = {True: "yes", False: "no", None: "not measured"}[line["met"]]
        rows.append(f"| {line['line']} | {line['value']} | {line['goal']} | {met} |")
    found = report["headline"]
    rows += ["", "Headline figures:", ""]
    for key, value in found.items():
        rows.append(f"- **{key}**: `{json.dumps(value)}`")
    rows += ["", "Runs:", ""]
    for name, run_ in report["runs"].items():
        rows.append(f"- {name}: {run_['status']}" + (f" in {run_['seconds']} s" if "seconds" in run_ else ""))
    return "\n".join(rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small runs, to check the suite itself")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out-dir", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--only", default="", help="comma-separated benchmark names (default: all)")
    args = parser.parse_args()
    out = args.out_dir.resolve()
    out.mkdir(parents=True, exist_ok=True)
    runs: dict[str, dict[str, Any]] = {}
    for name, extra in commands(args, out).items():
        if args.only and name not in args.only.split(","):
            continue
        if extra is None:
            runs[name] = {"status": "skipped", "reason": f"no CCP (or fpi-train) data under {args.data}"}
            continue
        runs[name] = run(name, extra, out)
    found = headline(runs)
    report = {
        "benchmark": "run_all",
        "finished_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "quick": args.quick,
        "machine": machine_info(),
        "budget": budget_lines(found),
        "headline": found,
        "runs": {name: {k: v for k, v in r.items() if k != "result"} for name, r in runs.items()},
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out / "report.md").write_text(markdown(report), encoding="utf-8")
    print(markdown(report), flush=True)
    if any(r["status"] == "failed" for r in runs.values()):
        raise SystemExit("some benchmarks failed (see above)")


if __name__ == "__main__":
    main()
