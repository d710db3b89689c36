/* track/stats.c: process-wide counters for blockswap_get_stats and the summary.
 * Sharded by thread so that concurrent launches do not fight over one line. */
#include "bs.h"

#include <string.h>

#define SHARDS 16

/* Counters first, then one call counter per hook. */
struct shard {
    int64_t v[BS_STAT_COUNT + BS_HOOK_COUNT];
} __attribute__((aligned(64)));

static struct shard shards[SHARDS];
static BS_TLS int my_shard = -1;
static unsigned next_shard;

void bs_stat_add(enum bs_stat s, int64_t v)
{
    int i = my_shard;
    if (BS_UNLIKELY(i < 0))
        i = my_shard = (int)(__atomic_fetch_add(&next_shard, 1, __ATOMIC_RELAXED) % SHARDS);
    __atomic_fetch_add(&shards[i].v[s], v, __ATOMIC_RELAXED);
}

int64_t bs_stat_get(enum bs_stat s)
{
    int64_t sum = 0;
    for (int i = 0; i < SHARDS; i++)
        sum += __atomic_load_n(&shards[i].v[s], __ATOMIC_RELAXED);
    return sum;
}

void bs_stats_reset(void)
{
    memset(shards, 0, sizeof(shards));
}

void bs_count_call(enum bs_hook_id id)
{
    bs_stat_add((enum bs_stat)(BS_STAT_COUNT + id), 1);
}

uint64_t bs_hook_calls_total(enum bs_hook_id id)
{
    return (uint64_t)bs_stat_get((enum bs_stat)(BS_STAT_COUNT + id));
}

/* Lines at exit (info level): what the shim saw and moved, so a user can tell it
 * was there and what it cost. */
void bs_stats_log_summary(void)
{
    uint64_t count, bytes, peak;
    bs_alloc_map_stats(&count, &bytes, &peak);
    bs_log(BS_LOG_INFO, "exit: %lld allocations tracked (peak %.1f MiB, %llu still live), "
           "%lld kernel launches (%lld unscanned), %lld pointer references, %lld graph launches",
           (long long)bs_stat_get(BS_STAT_ALLOCS), peak / 1048576.0,
           (unsigned long long)count, (long long)bs_stat_get(BS_STAT_LAUNCHES),
           (long long)bs_stat_get(BS_STAT_LAUNCHES_UNSCANNED),
           (long long)bs_stat_get(BS_STAT_LAUNCH_REFS),
           (long long)bs_stat_get(BS_STAT_GRAPH_LAUNCHES));
    if (bs_stat_get(BS_STAT_PAGE_INS) || bs_stat_get(BS_STAT_HOST_WRITES))
        bs_log(BS_LOG_INFO, "exit: %lld page-ins (%.1f MiB to the GPU), %lld evictions "
               "(%.1f MiB written back, %.1f MiB unchanged and not), %lld host-backing "
               "writes, %lld refusals for lack of VRAM",
               (long long)bs_stat_get(BS_STAT_PAGE_INS),
               bs_stat_get(BS_STAT_PAGE_IN_BYTES) / 1048576.0,
               (long long)bs_stat_get(BS_STAT_EVICTIONS),
               bs_stat_get(BS_STAT_WRITEBACK_BYTES) / 1048576.0,
               bs_stat_get(BS_STAT_WRITEBACK_SKIPPED_BYTES) / 1048576.0,
               (long long)bs_stat_get(BS_STAT_HOST_WRITES),
               (long long)bs_stat_get(BS_STAT_OOM_REFUSALS));
}
