/* api.c: the public blockswap_* functions of include/blockswap.h: views of track/'s,
 * interpose/'s and page/'s state, and the requests (pin, tag) page/ carries out; safe to
 * call from any thread at any time. */
#include "bs.h"
#include "blockswap.h"

#define BS_API BS_EXPORT

BS_API const char *blockswap_version(void)
{
    return BS_VERSION;
}

BS_API int blockswap_enabled(void)
{
    return bs_active();
}

BS_API int blockswap_find_allocation(uint64_t addr, struct blockswap_alloc_info *out)
{
    struct bs_alloc_rec rec;
    if (!out)
        return -EINVAL;
    if (bs_alloc_map_find(addr, &rec) < 0)
        return -ENOENT;
    out->base = rec.base;
    out->size = rec.size;
    out->api = rec.api;
    out->stream = rec.stream;
    return 0;
}

BS_API int blockswap_get_stats(struct blockswap_stats *out)
{
    if (!out)
        return -EINVAL;
    bs_alloc_map_stats(&out->live_allocations, &out->live_bytes, &out->peak_bytes);
    out->vmm_mapped_bytes = (uint64_t)bs_stat_get(BS_STAT_VMM_MAPPED);
    out->allocs = (uint64_t)bs_stat_get(BS_STAT_ALLOCS);
    out->frees = (uint64_t)bs_stat_get(BS_STAT_FREES);
    out->launches = (uint64_t)bs_stat_get(BS_STAT_LAUNCHES);
    out->launches_unscanned = (uint64_t)bs_stat_get(BS_STAT_LAUNCHES_UNSCANNED);
    out->launch_refs = (uint64_t)bs_stat_get(BS_STAT_LAUNCH_REFS);
    out->graph_launches = (uint64_t)bs_stat_get(BS_STAT_GRAPH_LAUNCHES);
    out->tensor_maps = (uint64_t)bs_stat_get(BS_STAT_TENSOR_MAPS);
    out->page_ins = (uint64_t)bs_stat_get(BS_STAT_PAGE_INS);
    out->page_in_bytes = (uint64_t)bs_stat_get(BS_STAT_PAGE_IN_BYTES);
    out->evictions = (uint64_t)bs_stat_get(BS_STAT_EVICTIONS);
    out->writeback_bytes = (uint64_t)bs_stat_get(BS_STAT_WRITEBACK_BYTES);
    out->writeback_skipped_bytes = (uint64_t)bs_stat_get(BS_STAT_WRITEBACK_SKIPPED_BYTES);
    out->oom_refusals = (uint64_t)bs_stat_get(BS_STAT_OOM_REFUSALS);
    out->load_direct_bytes = (uint64_t)bs_stat_get(BS_STAT_LOAD_DIRECT_BYTES);
    bs_page_stats(out);
    return 0;
}

BS_API int64_t blockswap_hook_calls(const char *name)
{
    int id = bs_hook_find(name);
    return id < 0 ? -1 : (int64_t)bs_hook_calls_total((enum bs_hook_id)id);
}

BS_API int blockswap_last_launch(uint64_t *bases, int max)
{
    if (max < 0 || (max > 0 && !bases))
        return -EINVAL;
    return bs_launch_last(bases, max);
}

BS_API int blockswap_is_resident(uint64_t addr)
{
    return bs_page_is_resident(addr);
}

BS_API int blockswap_pin(uint64_t addr, int pin)
{
    return bs_page_pin(addr, pin != 0);
}

BS_API int blockswap_tag_block(uint64_t addr, int block)
{
    return bs_page_tag(addr, block);
}

BS_API int blockswap_log_summary(void)
{
    if (bs_active())
        bs_summary_log();
    return 0;
}
