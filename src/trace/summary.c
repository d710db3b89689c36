/* trace/summary.c: the few lines, at exit and on blockswap_log_summary(), that say what
 * blockswap did: blocks, memory peaks, bytes moved each way, stall and overlap when
 * traced, and at most one hint when a setting is clearly wrong. Reads; changes nothing. */
#include "bs.h"
#include "blockswap.h"

#include <stdio.h>

/* A stall above this share of compute time means transfers are not hidden. */
#define STALL_HINT_SHARE 0.05

static void hint(const struct blockswap_stats *st)
{
    char a[32], b[32], c[32];
    if (st->oom_refusals) {
        bs_log(BS_LOG_WARN, "hint: %llu allocations were refused for lack of VRAM: raise "
               "BLOCKSWAP_VRAM_LIMIT if the GPU has room, or swap more blocks "
               "(BLOCKSWAP_BLOCKS_TO_SWAP)", (unsigned long long)st->oom_refusals);
        return;
    }
    if (!st->blocks_swapped)
        return;
    if (st->steps_traced && st->stall_ns > STALL_HINT_SHARE * (double)st->compute_ns) {
        bs_log(BS_LOG_WARN, "hint: transfers are not hidden: compute waited %.1f ms per "
               "step for weights (%.0f%% of compute); lower BLOCKSWAP_BLOCKS_TO_SWAP if VRAM "
               "allows (each block kept resident needs %s), or raise BLOCKSWAP_PREFETCH (blocks "
               "copied ahead, now %llu)", st->stall_ns / 1e6 / (double)st->steps_traced,
               100.0 * (double)st->stall_ns / (double)(st->compute_ns ? st->compute_ns : 1),
               bs_size_str(st->block_bytes, a, sizeof(a)), (unsigned long long)bs_page_prefetch());
        return;
    }
    /* More than one block's worth of the limit never used: fewer swapped blocks fit. */
    if (st->block_bytes && st->vram_limit > st->peak_vram_bytes &&
        st->vram_limit - st->peak_vram_bytes >= st->block_bytes + st->block_bytes / 2) {
        uint64_t spare = (st->vram_limit - st->peak_vram_bytes) / st->block_bytes - 1;
        if (spare < 1)
            spare = 1;
        if (spare > st->blocks_swapped)
            spare = st->blocks_swapped;
        bs_log(BS_LOG_INFO, "hint: %s of the %s VRAM limit was never used; "
               "BLOCKSWAP_BLOCKS_TO_SWAP=%llu would keep %llu more block%s resident and move "
               "less (each needs %s)", bs_size_str(st->vram_limit - st->peak_vram_bytes, a, sizeof(a)),
               bs_size_str(st->vram_limit, b, sizeof(b)),
               (unsigned long long)(st->blocks_swapped - spare), (unsigned long long)spare,
               spare > 1 ? "s" : "", bs_size_str(st->block_bytes, c, sizeof(c)));
    }
}

void bs_summary_log(void)
{
    struct blockswap_stats st;
    char a[32], b[32], c[32], d[32], e[32], f[32], g[32];
    bs_stats_log_summary();
    if (blockswap_get_stats(&st) < 0 || !st.vram_limit)
        return;
    if (st.blocks)
        bs_log(BS_LOG_INFO, "summary: %llu blocks of %s found, %llu swapped (%s)",
               (unsigned long long)st.blocks, bs_size_str(st.block_bytes, a, sizeof(a)),
               (unsigned long long)st.blocks_swapped,
               bs_cfg.placement == BS_PLACEMENT_LAST ? "the last ones" : "spread evenly");
    else
        bs_log(BS_LOG_INFO, "summary: no block structure found: managed memory was paged "
               "on demand");
    bs_log(BS_LOG_INFO, "summary: peak VRAM %s of the %s limit, peak host backing %s (%s of it "
           "pinned at most); moved "
           "%s to the GPU and %s back, %s unchanged and not copied back",
           bs_size_str(st.peak_vram_bytes, a, sizeof(a)), bs_size_str(st.vram_limit, b, sizeof(b)),
           bs_size_str(st.peak_host_backing_bytes, c, sizeof(c)),
           bs_size_str(st.peak_host_pinned_bytes, g, sizeof(g)),
           bs_size_str(st.page_in_bytes, d, sizeof(d)),
           bs_size_str(st.writeback_bytes, e, sizeof(e)),
           bs_size_str(st.writeback_skipped_bytes, f, sizeof(f)));
    if (st.load_direct_bytes || st.host_file_backed_bytes || st.host_staging_bytes)
        bs_log(BS_LOG_INFO, "summary: host memory by kind: %s pinned and %s pageable backing "
               "now, %s backed by %llu file%s instead (%s read back, %llu failed reads), "
               "staging ring %s pinned; %s loaded straight to VRAM",
               bs_size_str(st.host_pinned_bytes, a, sizeof(a)),
               bs_size_str(st.host_backing_bytes - st.host_pinned_bytes, b, sizeof(b)),
               bs_size_str(st.host_file_backed_bytes, c, sizeof(c)),
               (unsigned long long)st.files_held, st.files_held == 1 ? "" : "s",
               bs_size_str(st.file_read_bytes, d, sizeof(d)),
               (unsigned long long)st.file_read_errors,
               bs_size_str(st.host_staging_bytes, e, sizeof(e)),
               bs_size_str(st.load_direct_bytes, f, sizeof(f)));
    if (st.phys_created || st.phys_reused)
        bs_log(BS_LOG_INFO, "summary: physical VRAM: %llu handles created, %llu reused from "
               "the pool, %llu released; %s pooled now", (unsigned long long)st.phys_created,
               (unsigned long long)st.phys_reused, (unsigned long long)st.phys_released,
               bs_size_str(st.vram_pooled_bytes, a, sizeof(a)));
    if (st.steps_traced) {
        double in = st.transfer_in_ns / 1e6, comp = st.compute_ns / 1e6, stall = st.stall_ns / 1e6;
        double hidden = in > 0 ? 100.0 * (1.0 - (stall < in ? stall : in) / in) : 100.0;
        bs_log(BS_LOG_INFO, "summary: %llu traced steps, per step: transfers in %.1f ms, "
               "compute %.1f ms, stalled %.1f ms; %.1f%% of transfer time hidden behind compute",
               (unsigned long long)st.steps_traced, in / st.steps_traced,
               comp / st.steps_traced, stall / st.steps_traced, hidden);
    } else if (st.blocks_swapped) {
        bs_log(BS_LOG_INFO, "summary: stall and overlap were not measured; set "
               "BLOCKSWAP_TRACE=FILE to measure them on the GPU clock");
    }
    hint(&st);
}
