"""From raw timings to figures: each target's ratio, whether it is met, and for a miss why and what would close it."""

from __future__ import annotations

from bench.bulk import MAX_PAGE_SIZE, WIDE_PAGE_CONCURRENCY, Previews, Sweep
from bench.harness import LISTING_TOKEN_LIMIT, TOKEN_LIMIT, Figure, Scale, Sizes, median
from purgewarden.config import Settings

LISTINGS = ("katapult_list_trash_objects", "vault_list_objects", "cocoon_list_recycle_bin")
CONDITION_NAMES = {"loopback": "loopback", "network": "+{ms} ms per request"}


def condition_name(condition: str, scale: Scale) -> str:
    return CONDITION_NAMES[condition].format(ms=round(scale.latency * 1000))


def delete_figures(sweep: Sweep, default: int, scale: Scale) -> list[Figure]:
    """P2's two targets in one condition, on the deleting itself (the destructive call vs the delete phase)."""
    n = sweep.n
    where = condition_name(sweep.condition, scale)
    tool = sweep.tool[default]
    tool_rate = tool.delete_rate(n)
    hand_rates = {c: arm.delete_rate(n) for c, arm in sweep.hand.items()}
    best_c = max(hand_rates, key=lambda c: hand_rates[c])
    best, serial = hand_rates[best_c], hand_rates[1]
    recheck = median(tool.resolve)
    call = median(tool.delete)
    batches = -(-n // MAX_PAGE_SIZE)
    detail = (
        f"`vault_delete_objects` at the default concurrency {default}: {n:,} objects in {call:.2f} s = "
        f"{tool_rate:,.0f} objects/s (the whole destructive call; its re-check of this every-active selection is "
        f"one count call, the plan's ids being held by the server; the preview before it, {batches} cursor pages, "
        f"took ≈ {recheck:.2f} s: see the end-to-end row); hand-written delete phase (ids already known): best "
        f"{best:,.0f} objects/s at concurrency {best_c}, one batch at a time {serial:,.0f} objects/s"
    )
    versus_best = Figure(
        "P2",
        f"Bulk delete {n:,} Vault objects vs best hand-written httpx2 client ({where})",
        "≥ 0.9×",
        tool_rate / best,
        "×",
        tool_rate / best >= 0.9,
        detail,
    )
    versus_serial = Figure(
        "P2",
        f"Bulk delete {n:,} Vault objects vs one max-size batch at a time ({where})",
        "≥ 10×",
        tool_rate / serial,
        "×",
        tool_rate / serial >= 10,
        "the same runs as the row above",
    )
    if not versus_best.met:
        versus_best.miss = (
            f"The destructive call runs {default} batches in flight (the default) against the best client's "
            f"{best_c}, and adds fixed costs the hand-written client does not have (the MCP round trip, redeeming "
            "the token, a count before and after, progress after every batch). To close it: raise "
            "PURGEWARDEN_VAULT_DELETE_CONCURRENCY where the Vault's own limits allow (a 429 is re-sent safely: "
            "it guarantees nothing was deleted)."
        )
    if not versus_serial.met:
        ceiling = best / serial
        versus_serial.miss = (
            f"No client reaches 10× here: the best hand-written client itself reaches {ceiling:.2f}× of one "
            "batch at a time. "
            + (
                f"On loopback a serial batch round trip is ≈ {1000 * MAX_PAGE_SIZE / serial:.0f} ms of pure CPU "
                "(JSON both ways, the emulator's all-or-nothing check, in one Python process), and 2 cores are "
                "shared by emulator, server and client, so concurrency can only overlap their CPU, not hide waiting. "
                if sweep.condition == "loopback"
                else f"With {where}, a batch is still ≈ {1000 * MAX_PAGE_SIZE / hand_rates[1]:.0f} ms serially, "
                "much of it the emulator's CPU, which concurrency cannot overlap on 2 cores. "
            )
            + f"(Its best was {best_c} batches in flight.) 10× needs batches that are ≥ 90% waiting (network "
            "and the Vault's own database) with ≥ 10 of them in flight — vault_delete_concurrency ≥ 10 "
            "against a Vault whose 429s allow it."
        )
    return [versus_best, versus_serial]


def end_to_end_figure(sweep: Sweep, default: int, scale: Scale) -> Figure:
    """Preview + delete against a hand-written client that lists then deletes (informational)."""
    n = sweep.n
    tool = sweep.tool[default].total_rate(n)
    hand_rates = {c: arm.total_rate(n) for c, arm in sweep.hand.items()}
    best_c = max(hand_rates, key=lambda c: hand_rates[c])
    return Figure(
        "P2",
        f"End to end: preview + delete vs hand-written list + delete ({condition_name(sweep.condition, scale)})",
        "— (information)",
        tool / hand_rates[best_c],
        "×",
        None,
        f"tools {tool:,.0f} objects/s (preview {median(sweep.tool[default].resolve):.2f} s + delete "
        f"{median(sweep.tool[default].delete):.2f} s); hand-written best {hand_rates[best_c]:,.0f} objects/s "
        f"at concurrency {best_c} (list {median(sweep.hand[best_c].resolve):.2f} s + delete "
        f"{median(sweep.hand[best_c].delete):.2f} s)",
    )


def preview_figures(previews: Previews, sweep: Sweep, default: int, scale: Scale) -> list[Figure]:
    where = condition_name(previews.condition, scale)
    tool, hand = median(previews.katapult_tool), median(previews.katapult_hand)
    wide = median(previews.katapult_tool_wide)
    default_pages = int(Settings.model_fields["katapult_page_concurrency"].default)
    pages = -(-scale.katapult_trash // 200)
    under_limit = min(previews.katapult_remaining) > 0
    speedup = hand / tool
    katapult = Figure(
        "P3",
        f"Preview {scale.katapult_trash:,} Katapult trash objects vs walking {pages} pages one by one ({where})",
        "≥ 3×, no 429",
        speedup,
        "×",
        speedup >= 3 and under_limit,
        f"`katapult_preview_purge_all_trash_objects` {tool:.2f} s ({default_pages} pages in flight; "
        f"{wide:.2f} s with {WIDE_PAGE_CONCURRENCY}); sequential httpx2 walk {hand:.2f} s; "
        f"rate-limit budget left after both previews and the walk: {min(previews.katapult_remaining)} of "
        f"{previews.katapult_permitted}/min ({'never exceeded' if under_limit else 'EXCEEDED'})",
    )
    if not katapult.met:
        per_page = 1000 * hand / pages
        closes = hand / wide >= 3
        wider_helps = tool / wide >= 1.15
        per_object = (
            "What is left is the tool's own per-object work, mostly pydantic validation of every page "
            "(profile below; parsing pages straight from the response bytes with pydantic's JSON parser would "
            "trim it). With a round trip to hide, the same preview meets the target (the +25 ms row). "
        )
        katapult.miss = (
            f"A page costs ≈ {per_page:.0f} ms in the sequential walk"
            + (
                ", nearly all of it CPU (the emulator rendering 200 objects, the client parsing them) with no "
                f"network to wait on. With 2 cores shared by emulator, server and client, {default_pages} pages "
                "in flight only overlap the server's parsing with the emulator's rendering, and the tool adds "
                f"its own work per object ({tool - hand:+.2f} s against the walk here). "
                if previews.condition == "loopback"
                else ", of which the round trip overlaps but the emulator's and the tool's CPU do not, on 2 "
                "shared cores. "
            )
            + f"With {WIDE_PAGE_CONCURRENCY} pages in flight (PURGEWARDEN_KATAPULT_PAGE_CONCURRENCY="
            f"{WIDE_PAGE_CONCURRENCY}) the same preview measured {hand / wide:.2f}× ({wide:.2f} s)"
            + (
                f", which meets the target: raising the default (purgewarden/config.py, now "
                f"{default_pages}) to {WIDE_PAGE_CONCURRENCY} closes it where pages are mostly round trip. "
                if closes
                else (
                    ": more pages in flight help, so a higher default closes part of it; "
                    if wider_helps
                    else ": no better, so what is left is CPU, not waiting. "
                )
                + per_object
            )
            + f"The client already paces itself near the 1,000/min budget ({pages} pages are "
            f"{pages / 10:.0f}% of a minute's)."
        )
    cocoon_tool, cocoon_hand = median(previews.cocoon_tool), median(previews.cocoon_hand)
    cocoon = Figure(
        "P3",
        f"Preview {scale.cocoon_items:,} Cocoon recycle-bin items ({where})",
        "timed",
        cocoon_tool,
        "s",
        None,
        f"`cocoon_preview_empty_recycle_bin` {cocoon_tool:.2f} s; the one request it needs "
        f"(`limit=0`), hand-written: {cocoon_hand:.2f} s ({cocoon_tool / cocoon_hand:.2f}×)",
    )
    vault_tool, vault_hand = median(sweep.tool[default].resolve), median(sweep.hand[1].resolve)
    vault = Figure(
        "P3",
        f"Preview {sweep.n:,} Vault ids ({condition_name(sweep.condition, scale)})",
        "timed",
        vault_tool,
        "s",
        None,
        f"`vault_preview_delete_objects` {vault_tool:.2f} s; the same {-(-sweep.n // MAX_PAGE_SIZE)} cursor "
        f"pages, hand-written: {vault_hand:.2f} s ({vault_tool / vault_hand:.2f}×; cursor pages cannot be "
        "fetched at once)",
    )
    return [katapult, cocoon, vault]


def memory_figure(sweeps: list[Sweep], default: int) -> Figure:
    peaks = {(s.condition, c): mb for s in sweeps for c, mb in s.peak_rss.items()}
    worst = max(peaks, key=lambda key: peaks[key])
    at_default = max(mb for (condition, c), mb in peaks.items() if c == default)
    figure = Figure(
        "P5",
        f"Peak RSS of the server process through P2 ({sweeps[0].n:,} objects, VmHWM)",
        "≤ 150 MB",
        peaks[worst],
        "MB",
        peaks[worst] <= 150,
        f"largest {peaks[worst]:.0f} MB (concurrency {worst[1]}, {worst[0]}); {at_default:.0f} MB at the "
        f"default concurrency {default}; one server per concurrency level, each through every repetition",
    )
    if not figure.met:
        figure.miss = (
            "The server holds every resolved id (twice: preview and re-check) and per-batch JSON; "
            "streaming the ids batch by batch would bound it."
        )
    return figure


def size_figures(sizes: Sizes) -> list[Figure]:
    largest_tool = max(sizes.largest, key=lambda t: max(sizes.largest[t][:2]))
    text, structured, dataset = sizes.largest[largest_tool]
    biggest = max(text, structured)
    overall = Figure(
        "P5",
        "Largest tool result, any tool, any dataset (tokens ≈ characters / 4)",
        f"≤ {TOKEN_LIMIT:,} tokens",
        biggest,
        "tokens",
        biggest <= TOKEN_LIMIT,
        f"`{largest_tool}` on {dataset}: text {text:,}, structured {structured:,} tokens",
    )
    listed = {t: sizes.largest[t] for t in LISTINGS if t in sizes.largest}
    if len(listed) != len(LISTINGS):
        raise AssertionError(f"P5: default listings not measured: {set(LISTINGS) - set(listed)}")
    worst = max(listed, key=lambda t: max(listed[t][:2]))
    worst_tokens = max(listed[worst][:2])
    listings = Figure(
        "P5",
        "Default listings on the big datasets (first page, default page size)",
        f"< {LISTING_TOKEN_LIMIT:,} tokens",
        worst_tokens,
        "tokens",
        worst_tokens < LISTING_TOKEN_LIMIT,
        "; ".join(f"`{t}` {max(v[:2]):,} on {v[2]}" for t, v in listed.items()),
    )
    if not listings.met:
        listings.miss = (
            f"`{worst}` returns {worst_tokens:,} tokens by default. A smaller default page (or, for the Vault, "
            "fewer default properties) would bring it under the limit."
        )
    return [overall, listings]
