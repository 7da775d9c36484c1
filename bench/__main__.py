"""`python -m bench`: run the suite and write BENCHMARKS.md; `--smoke` for the short run CI makes.

The smoke run uses small datasets and one repetition, writes its report to a temporary directory
(unless told otherwise) and fails only when the suite breaks — an error, a tool failure, a figure that
is not a sane number — never on a timing ratio, which on a shared 2-core machine is noise at that size.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import anyio

from bench import bulk, calls, findings, profile, report, store
from bench.emulators import Emulators
from bench.harness import ROOT, Figure, Scale, Sizes, default_delete_concurrency, server_environment, workdir


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def announce(figures: list[Figure]) -> None:
    for figure in figures:
        figure.check()
        met = "" if figure.met is None else (" (met)" if figure.met else " (NOT met)")
        log(f"  {figure.key} {figure.name}: {figure.shown()}{met}")


def run_suite(scale: Scale) -> report.Run:
    started = time.monotonic()
    load_before = os.getloadavg()
    default = default_delete_concurrency()
    if scale.concurrency_levels[0] != 1:
        raise ValueError("the concurrency levels must start at 1 (one batch at a time is a baseline)")
    sizes = Sizes()
    figures: list[Figure] = []
    sweeps: list[bulk.Sweep] = []
    with workdir() as tmp, Emulators() as emulators:
        environment = server_environment(emulators.environment, tmp)
        log("emulator throughput")
        measured = calls.emulator_throughput(emulators, scale)
        announce(measured)
        figures += measured
        log("P1 call overhead")
        measured = [anyio.run(calls.call_overhead, environment, scale, sizes)]
        announce(measured)
        figures += measured
        log("P4 cold start")
        measured = [anyio.run(calls.cold_start, environment, scale)]
        announce(measured)
        figures += measured
        log("P6 simultaneous calls")
        emulators.reset("katapult")
        measured = [anyio.run(calls.simultaneous_calls, environment, scale, sizes)]
        announce(measured)
        figures += measured
        preview_runs = {}
        for condition in bulk.CONDITIONS:
            if condition in bulk.PREVIEW_CONDITIONS:
                log(f"P3 previews ({condition})")
                preview_runs[condition] = anyio.run(
                    bulk.previews, emulators, environment, scale, sizes, condition
                )
            levels = scale.capacity_levels if condition == "capacity" else scale.concurrency_levels
            log(f"P2 bulk delete ({condition}), hand-written at {levels}")
            sweep = anyio.run(bulk.bulk_delete, emulators, environment, scale, sizes, condition)
            sweeps.append(sweep)
            measured = [
                *findings.delete_figures(sweep, default, scale),
                findings.end_to_end_figure(sweep, default, scale),
            ]
            if condition in preview_runs:
                measured += findings.preview_figures(preview_runs[condition], sweep, default, scale)
            announce(measured)
            figures += measured
        log("profiles")
        profiles = anyio.run(profile.profiles, emulators, environment, scale, tmp)
        measured = anyio.run(store.store_figures, emulators, environment, scale, sizes, tmp, log)
        announce(measured)
        figures += measured
    measured = [findings.memory_figure(sweeps, default), *findings.size_figures(sizes)]
    announce(measured)
    figures += measured
    order = ["E", "P1", "P2", "P3", "P4", "P5", "P6", "S"]
    figures.sort(key=lambda f: order.index(f.key))
    return report.Run(
        scale=scale,
        figures=figures,
        sweeps=sweeps,
        sizes=sizes,
        default_concurrency=default,
        profiles=profiles,
        load_before=load_before,
        load_after=os.getloadavg(),
        seconds=time.monotonic() - started,
    )


def run_store_figures(scale: Scale) -> list[Figure]:
    """`--only store`: the store figures alone, with their details (no report is written)."""
    with workdir() as tmp, Emulators() as emulators:
        environment = server_environment(emulators.environment, tmp)
        measured = anyio.run(store.store_figures, emulators, environment, scale, Sizes(), tmp, log)
    announce(measured)
    return measured


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="small, quick run that checks the suite works")
    parser.add_argument(
        "--output",
        type=Path,
        help="where to write the report (default: BENCHMARKS.md in the repository; a temporary "
        "directory with --smoke)",
    )
    parser.add_argument(
        "--only",
        choices=["store"],
        help="measure only these figures and print them (no report is written)",
    )
    args = parser.parse_args()
    scale = Scale.smoke_test() if args.smoke else Scale.full()
    if args.only == "store":
        load_before = os.getloadavg()
        started = time.monotonic()
        for figure in run_store_figures(scale):
            print(f"- **{figure.key}** {figure.name}: {figure.shown()}. {figure.detail}.")
            if figure.miss:
                print(f"  Not met: {figure.miss}")
        print(
            f"load average (1 min) {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after; "
            f"{time.monotonic() - started:.0f} s"
        )
        return 0
    with tempfile.TemporaryDirectory(prefix="purgewarden-bench-report-") as scratch:
        output: Path = args.output or (Path(scratch) if args.smoke else ROOT) / "BENCHMARKS.md"
        run = run_suite(scale)
        in_repository = output.resolve() == ROOT / "BENCHMARKS.md"
        plots = ROOT / "bench" if in_repository else output.parent
        drawn = report.write(run, output, plots / "p2-concurrency.png", plots / "p2-adaptive.png")
        log(
            f"wrote {output}"
            + (
                f" and {', '.join(map(str, drawn))}"
                if drawn
                else " (no plots: matplotlib is in the bench group)"
            )
        )
        if args.smoke:
            print(output.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
