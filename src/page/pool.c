/* page/pool.c: physical VRAM kept for reuse. An evicted allocation's handle goes on a
 * list by its exact (padded) size, and the next fill of that size maps it again
 * instead of calling cuMemCreate: swapped blocks have the same sizes every step, so in
 * steady state block swapping creates and releases nothing. Pooled bytes count against
 * the budget and are the first given back: to make room, when the driver is short
 * (another process), to blockswapctl trim, at frees and at exit. Callers hold the page
 * lock. */
#define _GNU_SOURCE
#include "page/internal.h"

#include <stdlib.h>

#define PG bs_pg

bool pg_pool_take(struct managed *m)
{
    for (int i = PG.pool.n - 1; i >= 0; i--) {
        if (PG.pool.v[i].size != m->padded)
            continue;
        m->phys = PG.pool.v[i].handle;
        PG.pool.v[i] = PG.pool.v[--PG.pool.n];
        PG.pool.bytes -= m->padded;
        PG.pool.reused++;
        return true;
    }
    return false;
}

void pg_pool_give(struct managed *m)
{
    if (PG.pool.n == PG.pool.cap) {
        int ncap = PG.pool.cap ? PG.pool.cap * 2 : 64;
        struct pool_entry *v = realloc(PG.pool.v, (size_t)ncap * sizeof(*v));
        if (!v) { /* no room to remember it: the driver gets it back */
            bs_real.cuMemRelease(m->phys);
            PG.pool.released++;
            m->phys = 0;
            return;
        }
        PG.pool.v = v;
        PG.pool.cap = ncap;
    }
    PG.pool.v[PG.pool.n++] = (struct pool_entry){ .size = m->padded, .handle = m->phys };
    PG.pool.bytes += m->padded;
    m->phys = 0;
}

/* Oldest first: the newest handles are the likeliest to be taken again soon. */
uint64_t pg_pool_release(uint64_t want)
{
    uint64_t freed = 0;
    int i = 0;
    while (i < PG.pool.n && freed < want) {
        bs_real.cuMemRelease(PG.pool.v[i].handle);
        freed += PG.pool.v[i].size;
        PG.pool.released++;
        i++;
    }
    for (int j = i; j < PG.pool.n; j++)
        PG.pool.v[j - i] = PG.pool.v[j];
    PG.pool.n -= i;
    PG.pool.bytes -= freed;
    return freed;
}

CUresult pg_phys_create(struct managed *m)
{
    CUresult r = bs_real.cuMemCreate(&m->phys, m->padded, &PG.prop, 0);
    if (r == CUDA_ERROR_OUT_OF_MEMORY && pg_pool_release(UINT64_MAX))
        r = bs_real.cuMemCreate(&m->phys, m->padded, &PG.prop, 0);
    if (r == CUDA_SUCCESS)
        PG.pool.created++;
    return r;
}
