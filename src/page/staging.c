/* page/staging.c: the bounded pinned staging ring (BLOCKSWAP_STAGING_SIZE) through which
 * bytes that are not in pinned memory (a file range, pageable memory) are copied to the
 * device. Owns the ring, its events and its counters under its own lock; never calls
 * page/. */
#define _GNU_SOURCE
#include "page/backing.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* 8 MiB pieces: one costs the copy engine 150-350 us at 25-55 GB/s, against a few us of
 * driver overhead per copy and per pread, so both stay under 2%; and the first copy
 * starts after one 8 MiB read, not after the whole weight's. A 128M ring has 16 of them
 * in flight, enough to keep reading while the copy engine drains the rest. */
#define STAGING_CHUNK (8u << 20)
#define STAGING_MIN (2u << 20)
#define STAGING_MAX_CHUNKS 512 /* BLOCKSWAP_STAGING_SIZE's 4G at 8 MiB */

/* What a ring chunk's previous copy left to wait for. */
enum chunk_state {
    CHUNK_IDLE,    /* nothing queued from it */
    CHUNK_EVENT,   /* its copy is before its event */
    CHUNK_UNKNOWN, /* the event could not be recorded: wait for the whole context */
};

static struct {
    pthread_mutex_t lock;
    bool tried; /* the ring was allocated, or the attempt failed and was logged */
    char *buf;
    bool pinned;        /* a ring from cuMemHostAlloc; else one pageable bounce buffer */
    size_t chunk;
    int nchunks, next;
    CUevent ev[STAGING_MAX_CHUNKS];
    unsigned char state[STAGING_MAX_CHUNKS];
    uint64_t copies, bytes, fill_ns, wait_ns;
    uint64_t max_pinned; /* what the ring may pin (bs_staging_limit) */
} ST = { .lock = PTHREAD_MUTEX_INITIALIZER, .max_pinned = UINT64_MAX };

void bs_staging_limit(uint64_t bytes)
{
    pthread_mutex_lock(&ST.lock);
    ST.max_pinned = bytes;
    pthread_mutex_unlock(&ST.lock);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Chunks of 8 MiB, or half the ring when it is smaller, so that one chunk is filled
 * while the other is copied. */
static size_t chunk_of(size_t ring)
{
    return ring >= 2 * (size_t)STAGING_CHUNK ? STAGING_CHUNK : ring / 2;
}

/* Takes the ring at the first copy: BLOCKSWAP_STAGING_SIZE, halved while the system
 * refuses to pin it, down to 2 MiB; failing that, one pageable chunk with every copy
 * waited for. Lock held. */
static void ring_alloc(void)
{
    char a[BS_SIZE_STR_LEN], b[BS_SIZE_STR_LEN], c[BS_SIZE_STR_LEN];
    uint64_t want = bs_cfg.staging_size ? bs_cfg.staging_size : 128u << 20;
    size_t size = (size_t)bs_round_up(want, 2 * 4096);
    void *p = NULL;
    ST.tried = true;
    /* Within what BLOCKSWAP_PINNED_LIMIT leaves it (half at most), or nothing pinned
     * at all once the system refused to pin host backing. */
    bool capped = size > ST.max_pinned;
    if (capped)
        size = (size_t)(ST.max_pinned / (2 * 4096) * (2 * 4096));
    if (capped && size >= STAGING_MIN) {
        bs_log(BS_LOG_INFO, "staging ring: %s, not BLOCKSWAP_STAGING_SIZE=%s: at most half "
               "of BLOCKSWAP_PINNED_LIMIT", bs_size_str(size, a, sizeof(a)),
               bs_size_str(want, b, sizeof(b)));
        want = size;
    }
    for (; size >= STAGING_MIN; size = bs_round_up(size / 2, 2 * 4096))
        if (bs_drv.cuMemHostAlloc(&p, size, 0) == CUDA_SUCCESS)
            break;
    if (size >= STAGING_MIN) {
        ST.buf = p;
        ST.pinned = true;
        ST.chunk = chunk_of(size);
        ST.nchunks = (int)(size / ST.chunk);
        if (ST.nchunks > STAGING_MAX_CHUNKS)
            ST.nchunks = STAGING_MAX_CHUNKS;
        if (size < want)
            bs_log(BS_LOG_WARN, "the staging ring is %s, not BLOCKSWAP_STAGING_SIZE=%s: the "
                   "system would not pin more; copies from files are slower. Lower "
                   "BLOCKSWAP_STAGING_SIZE (or BLOCKSWAP_PINNED_LIMIT) to leave pinned memory",
                   bs_size_str(size, a, sizeof(a)), bs_size_str(want, b, sizeof(b)));
    } else {
        ST.chunk = chunk_of(want);
        if (!(ST.buf = malloc(ST.chunk))) {
            bs_log(BS_LOG_ERROR, "cannot allocate even %s for staging (BLOCKSWAP_STAGING_SIZE=%s): "
                   "host memory is exhausted; copies from files fail",
                   bs_size_str(ST.chunk, a, sizeof(a)), bs_size_str(want, b, sizeof(b)));
            return;
        }
        ST.nchunks = 1;
        if (capped)
            bs_log(BS_LOG_INFO, "no staging ring: nothing may be pinned for it (BLOCKSWAP_PINNED_LIMIT "
                   "or a refusal to pin above); copies from files and pageable backing go "
                   "through one pageable %s buffer, one at a time", bs_size_str(ST.chunk, c, sizeof(c)));
        else
            bs_log(BS_LOG_WARN, "cannot pin even %s for the staging ring (BLOCKSWAP_STAGING_SIZE=%s): "
               "copies from files go through one pageable %s buffer, one at a time, much more "
               "slowly; free host memory or lower BLOCKSWAP_PINNED_LIMIT",
               bs_size_str(STAGING_MIN, a, sizeof(a)), bs_size_str(want, b, sizeof(b)),
               bs_size_str(ST.chunk, c, sizeof(c)));
    }
    /* A chunk without its event is waited for through the whole context instead. */
    for (int i = 0; i < ST.nchunks; i++)
        if (bs_drv.cuEventCreate(&ST.ev[i], CU_EVENT_DISABLE_TIMING) != CUDA_SUCCESS)
            ST.ev[i] = NULL;
}

/* Blocks until the copy last queued from chunk i no longer reads it. Lock held. */
static CUresult chunk_wait(int i)
{
    if (ST.state[i] == CHUNK_IDLE)
        return CUDA_SUCCESS;
    uint64_t t0 = now_ns();
    CUresult r = CUDA_ERROR_UNKNOWN;
    if (ST.state[i] == CHUNK_EVENT)
        r = bs_drv.cuEventSynchronize(ST.ev[i]);
    if (r != CUDA_SUCCESS)
        r = bs_drv.cuCtxSynchronize();
    ST.wait_ns += now_ns() - t0;
    if (r == CUDA_SUCCESS)
        ST.state[i] = CHUNK_IDLE;
    return r;
}

/* pre: the context the copies are for is current on this thread (events and pinned
 * memory belong to it). */
CUresult bs_staging_copy_in(uint64_t dst_va, size_t n, CUstream s, bs_staging_fill_fn fill,
                            void *ctx, int *fill_err)
{
    CUresult r = CUDA_SUCCESS;
    *fill_err = 0;
    pthread_mutex_lock(&ST.lock);
    if (!ST.tried)
        ring_alloc();
    if (!ST.buf) {
        r = CUDA_ERROR_OUT_OF_MEMORY;
        goto out;
    }
    for (size_t off = 0; off < n;) {
        size_t len = n - off < ST.chunk ? n - off : ST.chunk;
        int i = ST.next;
        char *buf = ST.buf + (size_t)i * ST.chunk;
        ST.next = (i + 1) % ST.nchunks;
        if ((r = chunk_wait(i)) != CUDA_SUCCESS)
            break;
        uint64_t t0 = now_ns();
        int err = fill(ctx, off, buf, len);
        ST.fill_ns += now_ns() - t0;
        if (err) {
            *fill_err = err < 0 ? err : -EIO;
            r = CUDA_ERROR_UNKNOWN;
            break;
        }
        if ((r = bs_real.cuMemcpyHtoDAsync_v2(dst_va + off, buf, len, s)) != CUDA_SUCCESS)
            break;
        ST.state[i] = ST.ev[i] && bs_drv.cuEventRecord(ST.ev[i], s) == CUDA_SUCCESS
                          ? CHUNK_EVENT : CHUNK_UNKNOWN;
        /* The bounce buffer is reused by the very next piece: wait for it now. */
        if (!ST.pinned && (r = chunk_wait(i)) != CUDA_SUCCESS)
            break;
        ST.copies++;
        ST.bytes += len;
        off += len;
    }
out:
    pthread_mutex_unlock(&ST.lock);
    return r;
}

void bs_staging_stats(struct bs_staging_stats *st)
{
    pthread_mutex_lock(&ST.lock);
    st->ring_bytes = ST.pinned ? (uint64_t)ST.chunk * (uint64_t)ST.nchunks : 0;
    st->chunk_bytes = ST.chunk;
    st->copies = ST.copies;
    st->bytes = ST.bytes;
    st->fill_ns = ST.fill_ns;
    st->wait_ns = ST.wait_ns;
    pthread_mutex_unlock(&ST.lock);
}

void bs_staging_exit(void)
{
    pthread_mutex_lock(&ST.lock);
    for (int i = 0; i < ST.nchunks; i++) {
        chunk_wait(i);
        /* One the driver will not destroy (the application released the context
         * first) stays named here rather than lost. */
        if (ST.ev[i] && bs_drv.cuEventDestroy_v2(ST.ev[i]) == CUDA_SUCCESS)
            ST.ev[i] = NULL;
        ST.state[i] = CHUNK_IDLE;
    }
    if (ST.pinned)
        bs_drv.cuMemFreeHost(ST.buf);
    else
        free(ST.buf);
    ST.buf = NULL;
    ST.pinned = false;
    ST.nchunks = ST.next = 0;
    ST.chunk = 0;
    /* Stays tried: a copy after exit (an atexit handler of the application's) gets
     * CUDA_ERROR_OUT_OF_MEMORY rather than a new ring nobody frees. */
    pthread_mutex_unlock(&ST.lock);
}

/* The parent's pinned ring stays mapped in the child, which cannot free it through a
 * driver that is not its own; it is left there. */
void bs_staging_reset_after_fork(void)
{
    pthread_mutex_init(&ST.lock, NULL);
    ST.tried = false;
    ST.buf = NULL;
    ST.pinned = false;
    ST.nchunks = ST.next = 0;
    ST.chunk = 0;
    memset(ST.ev, 0, sizeof(ST.ev));
    memset(ST.state, 0, sizeof(ST.state));
    ST.copies = ST.bytes = ST.fill_ns = ST.wait_ns = 0;
}
