/* page/admin.c: what the public API (api.c) and blockswapctl (control/) ask of page/:
 * pin, tag, residency queries, statistics, what cuMemGetInfo reports, evict-all and
 * trim, and the reset after fork. Takes the page lock. */
#define _GNU_SOURCE
#include "page/backing.h"
#include "page/internal.h"
#include "blockswap.h"
#include "trace/trace.h"

#include <string.h>

#define PG bs_pg

/* Keeps the managed allocation containing addr resident (pin) or lets it go again.
 * For memory that kernels reach only through pointers stored in device memory,
 * which no interposer can see. */
int bs_page_pin(uint64_t addr, bool pin)
{
    uint64_t base;
    if (!bs_alloc_map_lookup(addr, &base))
        return -ENOENT;
    pthread_mutex_lock(&PG.lock);
    struct managed *m = pg_find(base);
    int err = m ? 0 : -ENOENT;
    if (m)
        pg_wait_idle(m);
    if (m && pin && m->state != RES_DEVICE) {
        CUresult r = pg_make_resident(m, &m, 1, false);
        if (r == CUDA_SUCCESS)
            pg_fill_wait(m);
        if (r != CUDA_SUCCESS)
            err = r == CUDA_ERROR_OUT_OF_MEMORY ? -ENOMEM : -EIO;
    }
    if (m && !err) {
        m->pinned = pin;
        /* It may be written through pointers blockswap cannot see. */
        if (pin)
            m->dirty = true, m->host_valid = false;
    }
    pthread_mutex_unlock(&PG.lock);
    return err;
}

int bs_page_tag(uint64_t addr, int block)
{
    uint64_t base;
    if (!bs_alloc_map_lookup(addr, &base))
        return -ENOENT;
    pthread_mutex_lock(&PG.lock);
    struct managed *m = pg_find(base);
    if (m)
        bs_sched_tag(m, block);
    pthread_mutex_unlock(&PG.lock);
    return m ? 0 : -ENOENT;
}

int bs_page_is_resident(uint64_t addr)
{
    uint64_t base;
    if (!bs_alloc_map_lookup(addr, &base))
        return -ENOENT;
    pthread_mutex_lock(&PG.lock);
    struct managed *m = pg_find(base);
    int res = m ? m->state == RES_DEVICE : -ENOENT;
    pthread_mutex_unlock(&PG.lock);
    return res;
}

void bs_page_stats(struct blockswap_stats *st)
{
    pthread_mutex_lock(&PG.lock);
    st->managed_allocations = PG.managed_count;
    st->managed_bytes = PG.managed_bytes;
    st->resident_bytes = PG.resident_bytes;
    st->unmanaged_bytes = PG.unmanaged_bytes;
    st->host_backing_bytes = PG.host_bytes;
    st->vram_limit = PG.ready ? PG.vram_limit : 0;
    st->peak_vram_bytes = PG.peak_used;
    st->peak_host_backing_bytes = PG.peak_host;
    st->host_pinned_bytes = PG.pinned_bytes;
    st->peak_host_pinned_bytes = PG.peak_pinned;
    st->vram_pooled_bytes = PG.pool.bytes;
    st->phys_created = PG.pool.created;
    st->phys_reused = PG.pool.reused;
    st->phys_released = PG.pool.released;
    struct bs_filemap_stats fs;
    struct bs_staging_stats ss;
    bs_filemap_stats(&fs);
    bs_staging_stats(&ss);
    st->host_file_backed_bytes = fs.bytes_referenced;
    st->files_held = fs.files;
    st->file_read_bytes = fs.bytes_read;
    st->file_read_errors = fs.read_errors;
    st->host_staging_bytes = ss.ring_bytes;
    struct bs_trace_totals t;
    bs_trace_totals(&t);
    st->steps_traced = t.steps;
    st->transfer_in_ns = t.in_ns;
    st->transfer_out_ns = t.out_ns;
    st->compute_ns = t.compute_ns;
    st->stall_ns = t.stall_ns;
    bs_sched_stats(st);
    pthread_mutex_unlock(&PG.lock);
}

/* pre: free_b and total hold the driver's figures. */
void bs_page_meminfo(size_t *free_b, size_t *total)
{
    pthread_mutex_lock(&PG.lock);
    if (bs_cfg.meminfo == BS_MEMINFO_REAL) {
        /* The driver's figures, but what the pool holds is free to the application. */
        *free_b += PG.pool.bytes;
        pthread_mutex_unlock(&PG.lock);
        return;
    }
    if (pg_setup_locked() == CUDA_SUCCESS) {
        /* Pooled VRAM is free to the application: the first thing given back. */
        uint64_t used = PG.resident_bytes + PG.unmanaged_bytes;
        uint64_t vram_free = PG.vram_limit > used ? PG.vram_limit - used : 0;
        if (bs_cfg.meminfo == BS_MEMINFO_LIMIT) {
            *free_b = vram_free;
            *total = PG.vram_limit;
        } else {
            /* Resident memory without host backing yet will need it on eviction. */
            uint64_t host_used = PG.host_bytes;
            for (int i = 0; i < PG.nresident; i++)
                if (!PG.resident[i]->host && !pg_fb_backed(PG.resident[i]))
                    host_used += PG.resident[i]->padded;
            uint64_t host_free = PG.host_limit > host_used ? PG.host_limit - host_used : 0;
            *free_b = vram_free + host_free;
            *total = PG.vram_limit + PG.host_limit;
        }
    }
    pthread_mutex_unlock(&PG.lock);
}

/* In a forked child: threads do not survive fork, and the parent's streams and
 * events are not the child's (pg_setup_locked makes its own). */
void bs_page_reset(void)
{
    pthread_mutex_init(&PG.lock, NULL);
    pthread_cond_init(&PG.idle_cv, NULL);
    pthread_cond_init(&PG.pager.cv, NULL);
    PG.nbusy = PG.pager_waiting = 0;
    PG.pager.started = PG.pager.pending = PG.pager.round = PG.pager.stopping = false;
    PG.ready = false;
    PG.h2d = PG.d2h = PG.fps = NULL;
    memset(PG.scratch, 0, sizeof(PG.scratch));
    memset(PG.table, 0, sizeof(PG.table));
    memset(&PG.pool, 0, sizeof(PG.pool)); /* the parent's handles */
    PG.nresident = PG.nslots = 0;
    PG.resident_bytes = PG.unmanaged_bytes = PG.host_bytes = PG.managed_bytes = 0;
    PG.managed_count = 0;
    PG.resident_unloaded = PG.other_peak = PG.peak_used = PG.peak_host = 0;
    PG.pinned_bytes = PG.peak_pinned = 0;
    bs_sched_reset();
    bs_fp_reset();
    bs_trace_reset();
    bs_filemap_reset_after_fork();
    bs_staging_reset_after_fork();
}

/* ---- blockswapctl (control/control.c) ---- */

/* The control thread has no context of its own: it works in the application's. Waits
 * until the pager holds nothing and has no window change queued, so what follows is
 * not undone by work the pager had already been given. */
static bool ctl_enter_locked(void)
{
    if (!PG.ready)
        return false;
    bs_drv.cuCtxSetCurrent(PG.ctx);
    while (PG.nbusy || PG.pager.round || (PG.pager.pending && !PG.pager.stopping))
        pthread_cond_wait(&PG.idle_cv, &PG.lock);
    return true;
}

/* Every resident managed allocation goes to the host after the work that used it,
 * through the ordinary eviction (only what changed is copied back), and its VRAM back to
 * the driver; pinned ones stay. */
int bs_page_ctl_evict(struct bs_ctl_evict *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&PG.lock);
    if (!ctl_enter_locked())
        goto out;
    for (int i = 0; i < PG.nresident;) {
        struct managed *m = PG.resident[i];
        uint64_t b = m->padded;
        if (m->pinned) {
            out->pinned++, out->pinned_bytes += b, i++;
            continue;
        }
        CUresult r = pg_evict(m);
        if (r != CUDA_SUCCESS) {
            char a[BS_SIZE_STR_LEN];
            bs_log_limited(3, BS_LOG_ERROR, "blockswapctl evict: an allocation of %s stays "
                           "resident: eviction failed (%s)", bs_size_str(b, a, sizeof(a)),
                           pg_err(r));
            out->failed++, out->failed_bytes += b, i++;
            continue;
        }
        out->evicted++, out->evicted_bytes += b; /* resident[i] is now another one */
    }
    /* What was evicted is for the driver to give to others, not for the pool. */
    pg_pool_release(UINT64_MAX);
out:
    pthread_mutex_unlock(&PG.lock);
    return 0;
}

/* Pooled VRAM goes back to the driver. Host backing is released where nothing needs it: stale copies (the device copy
 * changed), allocations never written, and resident memory that stays resident. A
 * resident allocation whose host copy was valid then counts as changed, so its next
 * eviction copies it back (once: from then on elision works again). Swapped blocks
 * keep theirs: they are evicted every step. */
int bs_page_ctl_trim(struct bs_ctl_trim *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&PG.lock);
    if (!ctl_enter_locked())
        goto out;
    out->vram_returned_bytes = pg_pool_release(UINT64_MAX);
    for (unsigned h = 0; h < BS_ARRAY_SIZE(PG.table); h++) {
        for (struct managed *m = PG.table[h]; m; m = m->hash_next) {
            if (!m->host || m->busy || m->state == RES_HOST)
                continue;
            if (m->state == RES_DEVICE && bs_sched_ctl_host_needed(m)) {
                out->kept++, out->kept_bytes += m->padded;
                continue;
            }
            /* A page-in copy still reading the host backing. */
            if (m->ready_pending) {
                if (bs_drv.cuEventQuery(m->ready) != CUDA_SUCCESS)
                    continue;
                m->ready_pending = false;
            }
            pg_host_free(m);
            out->freed++, out->freed_bytes += m->padded;
            if (m->state == RES_DEVICE && m->host_valid)
                m->dirty = true;
            m->host_valid = false;
            /* The fingerprint would say "unchanged" and skip the copy that is now due. */
            m->fp_in = false;
        }
    }
out:
    pthread_mutex_unlock(&PG.lock);
    return 0;
}

/* schedule/'s settings and view are read and written under the page lock. */
int bs_page_ctl_set_blocks_to_swap(uint64_t k, int stack)
{
    pthread_mutex_lock(&PG.lock);
    int r = bs_sched_ctl_set_k(k, stack);
    pthread_mutex_unlock(&PG.lock);
    return r;
}

int bs_page_ctl_set_prefetch(uint64_t prefetch)
{
    pthread_mutex_lock(&PG.lock);
    int r = bs_sched_ctl_set_prefetch(prefetch);
    pthread_mutex_unlock(&PG.lock);
    return r;
}

uint64_t bs_page_prefetch(void)
{
    pthread_mutex_lock(&PG.lock);
    uint64_t p = bs_sched_prefetch();
    pthread_mutex_unlock(&PG.lock);
    return p;
}

/* A new VRAM limit, at once: schedule/ hears of it (k and the window are chosen again
 * at the next step), and a lower one makes room now, through the ordinary eviction,
 * protected blocks last, so the next launch does not pay for it. What cannot be
 * evicted (pinned memory, unmanaged memory) must fit the new limit. */
int bs_page_ctl_set_vram_limit(uint64_t limit, struct bs_ctl_limit *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&PG.lock);
    int ret = 0;
    if (!ctl_enter_locked()) {
        ret = -EAGAIN;
        goto out;
    }
    out->old_limit = PG.vram_limit;
    uint64_t pinned = 0;
    for (int i = 0; i < PG.nresident; i++)
        if (PG.resident[i]->pinned)
            pinned += PG.resident[i]->padded;
    out->pinned_bytes = pinned;
    out->unmanaged_bytes = PG.unmanaged_bytes;
    if (limit < pinned + PG.unmanaged_bytes) {
        ret = -ERANGE;
        goto out;
    }
    PG.vram_limit = limit;
    bs_sched_budget(PG.vram_limit, PG.other_peak);
    out->next_step = bs_sched_ctl_budget_changed();
    uint64_t resident = PG.resident_bytes, pooled = PG.pool.bytes;
    int nresident = PG.nresident;
    CUresult r = pg_make_room(0, NULL, 0, "blockswapctl set vram-limit");
    out->evicted = (uint64_t)(nresident - PG.nresident);
    out->evicted_bytes = resident - PG.resident_bytes;
    out->pool_released_bytes = pooled - PG.pool.bytes;
    out->used_bytes = PG.resident_bytes + PG.unmanaged_bytes + PG.pool.bytes;
    if (r != CUDA_SUCCESS)
        ret = -EIO; /* logged by pg_make_room or the eviction */
out:
    pthread_mutex_unlock(&PG.lock);
    return ret;
}

size_t bs_page_ctl_blocks_json(char *buf, size_t cap)
{
    pthread_mutex_lock(&PG.lock);
    size_t n = bs_sched_ctl_json(buf, cap);
    pthread_mutex_unlock(&PG.lock);
    return n;
}
