"""BENCHMARKS.md and the P2 plot: the machine, the method, each figure against its target, and the misses."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.bulk import SERIAL_PAGE_CONCURRENCY, VAULT_CAPACITY, Sweep
from bench.findings import condition_name
from bench.harness import ROOT, Figure, Scale, Sizes, median
from bench.profile import Profile
from bench.store import REWRITES


@dataclass
class Run:
    scale: Scale
    figures: list[Figure]
    sweeps: list[Sweep]
    sizes: Sizes
    default_concurrency: int
    profiles: list[Profile]
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    seconds: float


def _command(*args: str) -> str:
    try:
        return subprocess.run(args, capture_output=True, text=True, cwd=ROOT, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine() -> list[tuple[str, str]]:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if "model name" in line), "?"
    )
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    total_kb = next((int(line.split()[1]) for line in meminfo.splitlines() if line.startswith("MemTotal")), 0)
    commit = _command("git", "rev-parse", "--short", "HEAD")
    dirty = _command("git", "status", "--porcelain")
    return [
        ("CPUs (`nproc`)", str(len(os.sched_getaffinity(0)))),
        ("CPU", model),
        ("Memory", f"{total_kb / 1024 / 1024:.1f} GiB"),
        ("OS", f"{platform.system()} {platform.release()}"),
        ("Python", platform.python_version()),
        ("uv", _command("uv", "--version")),
        ("mcp / httpx2", f"{importlib.metadata.version('mcp')} / {importlib.metadata.version('httpx2')}"),
        ("Commit", commit + (" (with uncommitted changes)" if dirty not in ("", "unknown") else "")),
        ("Date", datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")),
    ]


def plot(sweeps: list[Sweep], scale: Scale, path: Path) -> bool:
    """P2 throughput against concurrency, one panel per condition: the hand-written client at each fixed
    level, the tool at default settings as a line; False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, axes = plt.subplots(1, len(sweeps), figsize=(5.2 * len(sweeps), 4.2), squeeze=False)
    for axis, sweep in zip(axes[0], sweeps, strict=True):
        levels = sorted(sweep.hand)
        axis.plot(
            levels,
            [sweep.hand[c].delete_rate(sweep.n) for c in levels],
            "s--",
            label="hand-written httpx2, fixed (delete phase)",
        )
        axis.axhline(
            sweep.tool.delete_rate(sweep.n), color="C0", label="vault_delete_objects, default (whole call)"
        )
        axis.axhline(sweep.tool.total_rate(sweep.n), color="C2", linestyle=":", label="preview + delete")
        axis.set_xscale("log", base=2)
        axis.set_xticks(levels, [str(c) for c in levels])
        axis.set_ylim(bottom=0)
        axis.set_xlabel("bulk-delete batches in flight (hand-written client)")
        axis.set_ylabel("objects deleted per second")
        axis.set_title(f"{sweep.n:,} Vault objects, {condition_name(sweep.condition, scale)}", fontsize=10)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def plot_adaptive(sweeps: list[Sweep], scale: Scale, path: Path) -> bool:
    """The server's in-flight limit and its throughput over each run of one server, per condition."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, axes = plt.subplots(2, len(sweeps), figsize=(5.2 * len(sweeps), 6), squeeze=False, sharex="col")
    for column, sweep in enumerate(sweeps):
        limit_axis, rate_axis = axes[0][column], axes[1][column]
        for number, timeline in enumerate(sweep.timelines, start=1):
            if not timeline.points:
                continue
            times = [t for t, _, _ in timeline.points]
            limit_axis.step(
                times, [limit for _, _, limit in timeline.points], where="post", label=f"run {number}"
            )
            rate_axis.plot(*throughput(timeline.points), label=f"run {number}")
        best = max(arm.delete_rate(sweep.n) for arm in sweep.hand.values())
        rate_axis.axhline(best, color="grey", linestyle="--", label="best fixed hand-written")
        limit_axis.set_title(f"{condition_name(sweep.condition, scale)}", fontsize=10)
        limit_axis.set_ylabel("batches in flight (limit)")
        limit_axis.set_ylim(bottom=0)
        limit_axis.grid(alpha=0.3)
        limit_axis.legend(fontsize=7)
        rate_axis.set_ylabel("objects deleted per second")
        rate_axis.set_xlabel("seconds into vault_delete_objects")
        rate_axis.set_ylim(bottom=0)
        rate_axis.grid(alpha=0.3)
        rate_axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def throughput(
    points: list[tuple[float, int, int]], shortest: float = 0.05
) -> tuple[list[float], list[float]]:
    """Objects per second between progress reports (at most one each 0.1 s), at each report; a report
    less than `shortest` after the last (the final one always goes) is joined with it."""
    times, rates = [], []
    start, done_before = points[0][0], points[0][1]
    for end, done, _ in points[1:]:
        if end - start >= shortest:
            times.append(end)
            rates.append((done - done_before) / (end - start))
            start, done_before = end, done
    return times, rates


def _summary(run: Run) -> str:
    targeted = [f for f in run.figures if f.met is not None]
    missed = [f for f in targeted if not f.met]
    keys = ", ".join(dict.fromkeys(f.key for f in missed))
    return f"**{len(targeted) - len(missed)} of {len(targeted)} targets met**" + (
        f"; not met: {keys} (measured figure, reason and what would close each: see *Targets not met*)."
        if missed
        else "."
    )


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(run: Run, plot_path: Path | None, adaptive_path: Path | None, report_path: Path) -> str:
    scale = run.scale
    lines = [
        "# Benchmarks",
        "",
        "Measured by `bench/` (issue 5's targets, and issue 2's emulator throughput). Reproduce with "
        "`uv run --group bench python -m bench` (about 10 minutes; the `bench` group only adds matplotlib "
        "for the plot); `uv run python -m bench --smoke` is the short version CI runs, which checks that "
        "every figure is produced and sane, not that targets are met.",
        "",
        _summary(run),
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *(f"| {name} | {_cell(value)} |" for name, value in machine()),
        f"| Load average (1 min) | {run.load_before[0]:.2f} before, {run.load_after[0]:.2f} after |",
        f"| Suite wall time | {run.seconds / 60:.1f} min{' (smoke)' if scale.smoke else ''} |",
        "",
        "The machine is shared (other work ran beside the suite), so every figure is a ratio against a "
        "baseline measured in the same run, with the two arms interleaved, and the median of several "
        "repetitions.",
        "",
        "## Method",
        "",
        "- **Processes.** The three emulators (`purgewarden.sandbox`) run in a child process of their own "
        "(`bench/emulators.py`), the MCP server in another (`python -m purgewarden serve`, spawned by the "
        "MCP SDK's client), and baselines and clients in the suite's process, so no figure shares a GIL "
        "with the emulators. All traffic is on loopback.",
        "- **Conditions for the big operations.** *loopback*: the sandbox as it is, no network between "
        f"the processes. *+{round(scale.latency * 1000)} ms per request*: the sandbox's fault "
        "injection delays every request to the emulator, the round trip (and the service's own time) a real "
        "deployment always has and concurrency exists to hide. Loopback has nothing to hide, and on 2 "
        "cores the emulator, the server and the client compete for the same CPUs. *capacity-limited Vault* "
        f"(P2 only): the Vault emulator's capacity model as a database with {VAULT_CAPACITY['workers']} "
        f"workers, a 1,000-id bulk delete holding one for {VAULT_CAPACITY['request_seconds']:g} s + "
        f"{VAULT_CAPACITY['item_seconds']:g} s per id, {VAULT_CAPACITY['queue_limit']} requests allowed to wait "
        "for a worker and 429 with Retry-After beyond: more in flight than it serves only lengthens its queue.",
        f"- **P1** `vault_count_objects` (one authenticated GET) over stdio vs a bare `MCPServer` "
        f"(`bench/bare_server.py`, one empty tool) over stdio plus the same GET made directly with httpx2; "
        f"all three open at once and called in rotating order, {scale.calls} calls each per run, ratio of "
        f"the per-call medians, median over {scale.reps} runs.",
        f"- **P2** a fresh set of {scale.vault_objects:,} objects per repetition. The tools: "
        "`vault_preview_delete_objects` then `vault_delete_objects` with its token (selection: every "
        "active object of the collection), on one server per condition at default settings: it finds how "
        f"many batches to keep in flight (at most {run.default_concurrency}) and keeps what it learned for its "
        "next run, so its first repetition starts cold at 4; its last round of batches is shared out, one "
        "share per place in flight. The hand-written client (httpx2, "
        "`bench/bulk.py`): cursor-list the ids, then delete them in max-size (1,000) all-or-nothing batches, "
        "N in flight, checking each answer and sending a 429 again after its Retry-After, at every fixed N "
        f"({', '.join(map(str, scale.concurrency_levels))}; against the capacity-limited Vault "
        f"{', '.join(map(str, scale.capacity_levels))}). The figure compares the *deleting*: the whole "
        "destructive call (which re-checks the selection first) against the hand-written delete phase at its "
        "best N; end to end is shown too. Per repetition the tool runs, then every level of the hand-written "
        f"client in a rotating order; {scale.reps} repetitions, medians. Against the capacity-limited Vault, "
        "its counters give the 429s and each delete's time in the database (waiting + served) per run.",
        f"- **P3** `katapult_preview_purge_all_trash_objects` over {scale.katapult_trash:,} trash objects vs "
        "an httpx2 walk of the pages (200 per page) one after another; a fresh rate-limit window per "
        "repetition (1,000 requests/min, the documented default) and `X-Ratelimit-Remaining` read after the "
        f"repetition's two previews (default settings, and {SERIAL_PAGE_CONCURRENCY} page at a time on a second server) "
        f"and walk. Cocoon's preview ({scale.cocoon_items:,} items) and Vault's ({scale.vault_objects:,} ids, "
        "from P2) are timed against the requests they need.",
        "- **P4** spawn → initialize → `tools/list` with the SDK's stdio client, purgewarden vs the bare "
        f"server, {scale.cold_starts} alternating pairs after one warm-up each, median of the pair ratios.",
        "- **P5** VmHWM (peak RSS) of each P2 server process (one per condition) read from `/proc` before it exits; every tool "
        "result of the suite measured as characters / 4, text and structured content apart, the larger "
        "counted; the default listings called on the big datasets.",
        f"- **P6** {scale.simultaneous_calls} MCP sessions over Streamable HTTP to one "
        "`purgewarden serve --transport streamable-http`, each calling a read tool (Vault count, Cocoon bin "
        f"page, Katapult organizations in turn) at the same instant; {scale.reps} rounds.",
        "- **S, confirm path per store** (`bench/store.py`) two purgewarden servers over stdio, one on the "
        "default SQLite store (a state directory of its own) and one on Redis (`PURGEWARDEN_STORE_URL`, a real "
        "`redis-server` started on loopback for these figures; marked *not measured* when it is not installed), "
        "P1's bare server and an httpx2 client, all open at once and called in rotating order, "
        f"{scale.calls} rounds per run, {scale.reps} runs: per store `vault_preview_delete_objects` then "
        "`vault_delete_objects` with its token on `ids=[one id]`; the bare server's empty tool (the MCP round "
        "trip); and the two API requests the confirmed call makes (the re-check's lookup of the id, the "
        "one-object bulk DELETE) made directly. The confirm path's cost is the confirmed call's median minus "
        "the medians of the empty tool and the two direct requests; the store calls it makes are also made "
        "alone, in-process, on a fresh store of each kind, to say how much of it is the store.",
        "- **S, journal on P2** P2 at default settings on the SQLite server above (and, alternating with "
        f"it, on the Redis one); after each of {scale.reps} runs on the SQLite server, the run's record and "
        "journal are read back from its store (`purgewarden.db` in its state directory: `recent_runs`, "
        f"`get_run`) and written again, {REWRITES} times per store (the median kept), into a fresh SQLite "
        "file and a fresh Redis database as the run wrote them: the record, `started`, the batches' entries "
        f"taken in order by {run.default_concurrency} writers (the run's ceiling on batches in flight), `finished`, the record "
        "saved. That time as a share of the run's delete (the whole destructive call), median of the runs: "
        "an upper bound on the journal's cost, since the server writes while other batches are in flight.",
        f"- **Emulators** `bench/loadgen.py` (raw asyncio, 8 keep-alive connections, {scale.rps_seconds:g} s) "
        "against each emulator from the suite's process; the Katapult rate limit is lifted for this figure.",
        "",
        "## Figures against targets",
        "",
        "| # | Figure | Target | Measured | Met |",
        "|---|---|---|---|---|",
    ]
    for figure in run.figures:
        met = "—" if figure.met is None else ("yes" if figure.met else "**no**")
        lines.append(f"| {figure.key} | {_cell(figure.name)} | {figure.target} | {figure.shown()} | {met} |")
    lines += ["", "### Details", ""]
    lines += [f"- **{f.key}** {f.name}: {f.detail}." for f in run.figures]
    misses = [f for f in run.figures if f.met is False]
    lines += ["", "## Targets not met", ""]
    if not misses:
        lines.append("None.")
    for figure in misses:
        lines += [
            f"### {figure.key}: {figure.name}",
            "",
            f"Measured {figure.shown()} (target {figure.target}).",
            "",
        ]
        lines += [figure.miss or "No explanation recorded.", ""]
    lines += ["## P2: throughput against concurrency", ""]
    if plot_path is not None:
        lines += [
            f"![P2 throughput against concurrency]({os.path.relpath(plot_path, report_path.parent)})",
            "",
        ]
    lines += [
        "| condition | hand-written, N in flight | delete objects/s | 429s | batch p50 / p99 in the database |",
        "|---|---|---|---|---|",
    ]
    for sweep in run.sweeps:
        where = condition_name(sweep.condition, scale)
        arms = [("`vault_delete_objects`, default", sweep.tool)]
        arms += [(str(c), arm) for c, arm in sorted(sweep.hand.items())]
        for name, arm in arms:
            rejected = sum(view.rejected for view in arm.database) if arm.database else None
            latency = (
                f"{1000 * median([v.p50 for v in arm.database]):.0f} / "
                f"{1000 * median([v.p99 for v in arm.database]):.0f} ms"
                if arm.database
                else "—"
            )
            lines.append(
                f"| {where} | {name} | {arm.delete_rate(sweep.n):,.0f} | "
                f"{'—' if rejected is None else rejected} | {latency} |"
            )
    lines += ["", *_adaptive(run, adaptive_path, report_path), *_profiles(run), "## Result sizes (P5)", ""]
    lines += ["| tool | largest text | largest structured | on |", "|---|---|---|---|"]
    for tool, (text, structured, dataset) in sorted(run.sizes.largest.items()):
        lines.append(f"| `{tool}` | {text:,} | {structured:,} | {dataset} |")
    return "\n".join(lines) + "\n"


def _adaptive(run: Run, plot_path: Path | None, report_path: Path) -> list[str]:
    """How the server found its limit in each condition: the plot, and the limits each run ended at."""
    lines = [
        "## P2: the in-flight limit the server found",
        "",
        "No setting says how many batches to keep in flight: `PURGEWARDEN_VAULT_DELETE_CONCURRENCY` "
        f"(default {run.default_concurrency}) is only the upper bound. The server starts at 4 and climbs by "
        "up to half a round while each step buys at least a fifth of its share in throughput (requests in "
        "flight / mean latency, measured on the first requests sent at the limit, every one of them), slowing "
        "as steps buy less. A step that makes requests wait for a worker (the quickest still served at once, "
        "others a whole service time later) must buy half its share: against a database whose workers are "
        "full, more in flight only lengthens its queue, so the limit goes back to the knee and probes past "
        "it only rarely; where every request is slower (a round trip overlapped, a busy CPU) throughput keeps "
        "rising with the limit, and so does the limit. A 429, 503 or timeout halves it "
        "(`purgewarden/clients/limits.py`). The limit persists with the server, so run 1 starts cold and "
        "runs 2 and 3 start where the last left off. Throughput is the objects settled between progress "
        "reports (one each 0.1 s at most): against the capacity-limited Vault the batches of a run at the "
        "knee finish in waves, all the workers' at once every half second or so, so it swings from one "
        "report to the next.",
        "",
    ]
    if plot_path is not None:
        lines += [
            f"![The in-flight limit and throughput over time]({os.path.relpath(plot_path, report_path.parent)})",
            "",
        ]
    for sweep in run.sweeps:
        ends = [
            f"{t.points[-1][2]} (highest {max(p[2] for p in t.points)})" for t in sweep.timelines if t.points
        ]
        lines.append(
            f"- {condition_name(sweep.condition, run.scale)}: the limit at the end of runs 1–{len(ends)}: "
            + ", ".join(ends)
            + "."
        )
    return [*lines, ""]


def _profiles(run: Run) -> list[str]:
    lines = [
        "## Profiles",
        "",
        "Where the server's own time goes in the two big operations: each tool called in-process (server and "
        "in-memory MCP client in the suite's process, emulators in theirs) under cProfile, top functions by "
        "own time (`bench/profile.py`). Profiling inflates Python-heavy code.",
        "",
    ]
    for profile in run.profiles:
        lines += [f"### `{profile.tool}` on {profile.dataset}", "", "```", profile.table, "```", ""]
    return lines


def write(run: Run, report_path: Path, plot_path: Path, adaptive_path: Path) -> list[Path]:
    drawn = plot(run.sweeps, run.scale, plot_path)
    adapted = plot_adaptive(run.sweeps, run.scale, adaptive_path)
    report_path.write_text(
        markdown(run, plot_path if drawn else None, adaptive_path if adapted else None, report_path)
    )
    return [path for path, made in ((plot_path, drawn), (adaptive_path, adapted)) if made]
