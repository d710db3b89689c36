/* Unit: page/staging.c alone on the simulated driver (linked directly, no preload): a
 * range several times the ring lands exactly; no ring chunk is refilled before its
 * previous copy is waited for; a fill error stops the copy; a ring the system will not
 * pin becomes a smaller one, then a pageable bounce buffer, each said in one line. The
 * driver tables page/ would use are this program's, filled from the simulator. */
#define _GNU_SOURCE
#include "page/backing.h"
#include "cutest.h"

#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

struct bs_real_table bs_real;
struct bs_driver_table bs_drv;
struct bs_config bs_cfg;

#define MIB (1u << 20)
#define MAX_BUFS 64

/* Which ring chunks a queued copy still reads: a copy marks its source, the event
 * recorded after it takes the mark over, waiting for that event (or the context) clears
 * it. fill() must never be handed a marked chunk. */
static struct {
    const void *buf[MAX_BUFS];
    CUevent ev[MAX_BUFS]; /* NULL: the copy is queued, its event not yet recorded */
    bool busy[MAX_BUFS];
    int n;
    const void *last_src;
} track;

static int buf_index(const void *p)
{
    for (int i = 0; i < track.n; i++)
        if (track.buf[i] == p)
            return i;
    CHECK(track.n < MAX_BUFS);
    track.buf[track.n] = p;
    return track.n++;
}

static CUresult CUDAAPI copy_tracked(CUdeviceptr dst, const void *src, size_t n, CUstream s)
{
    int i = buf_index(src);
    track.busy[i] = true;
    track.ev[i] = NULL;
    track.last_src = src;
    return cuMemcpyHtoDAsync(dst, src, n, s);
}

static CUresult CUDAAPI record_tracked(CUevent ev, CUstream s)
{
    for (int i = 0; i < track.n; i++)
        if (track.ev[i] == ev)
            track.ev[i] = NULL; /* re-recorded: no longer marks that chunk's copy */
    if (track.last_src)
        track.ev[buf_index(track.last_src)] = ev;
    track.last_src = NULL;
    return cuEventRecord(ev, s);
}

static CUresult CUDAAPI sync_tracked(CUevent ev)
{
    for (int i = 0; i < track.n; i++)
        if (track.ev[i] == ev)
            track.busy[i] = false;
    return cuEventSynchronize(ev);
}

static CUresult CUDAAPI ctx_sync_tracked(void)
{
    memset(track.busy, 0, sizeof(track.busy));
    return cuCtxSynchronize();
}

static void tables(void)
{
    bs_drv.cuMemHostAlloc = cuMemHostAlloc;
    bs_drv.cuMemFreeHost = cuMemFreeHost;
    bs_drv.cuEventCreate = cuEventCreate;
    bs_drv.cuEventDestroy_v2 = cuEventDestroy;
    bs_drv.cuEventRecord = record_tracked;
    bs_drv.cuEventSynchronize = sync_tracked;
    bs_drv.cuCtxSynchronize = ctx_sync_tracked;
    bs_real.cuMemcpyHtoDAsync_v2 = copy_tracked;
}

static unsigned char pattern(uint64_t off)
{
    return (unsigned char)(off * 2654435761u >> 13);
}

struct source {
    const unsigned char *p;
    uint64_t fail_at; /* fill() fails for the piece holding this offset; UINT64_MAX: never */
    int calls;
    uint64_t next_off;
};

static int fill(void *ctx, uint64_t off, void *buf, size_t len)
{
    struct source *s = ctx;
    s->calls++;
    CHECK(off == s->next_off); /* pieces in order, none skipped */
    s->next_off = off + len;
    int i = buf_index(buf);
    if (track.busy[i]) {
        fprintf(stderr, "fill at %llu got a ring chunk whose copy was not waited for\n",
                (unsigned long long)off);
        exit(1);
    }
    if (s->fail_at >= off && s->fail_at < off + len)
        return -EIO;
    memcpy(buf, s->p + off, len);
    return 0;
}

static CUcontext setup(void)
{
    CUdevice dev;
    CUcontext ctx;
    CHECK_CU(cuInit(0));
    CHECK_CU(cuDeviceGet(&dev, 0));
    CHECK_CU(cuDevicePrimaryCtxRetain(&ctx, dev));
    CHECK_CU(cuCtxSetCurrent(ctx));
    return ctx;
}

#define UNTOUCHED 0xa5

/* Copies n bytes of the pattern (from offset 0) to a new allocation that holds
 * UNTOUCHED, and compares what landed: *good bytes from the start are the pattern,
 * from *untouched on the device still holds UNTOUCHED. Returns copy_in's result. */
static CUresult copy_and_check(size_t n, uint64_t fail_at, int *fill_err, size_t *good,
                               size_t *untouched)
{
    unsigned char *src = malloc(n), *back = malloc(n);
    CHECK(src && back);
    for (size_t i = 0; i < n; i++)
        src[i] = pattern(i);
    CUdeviceptr d;
    CUstream s;
    CHECK_CU(cuMemAlloc(&d, n));
    CHECK_CU(cuMemsetD8(d, UNTOUCHED, n));
    CHECK_CU(cuCtxSynchronize());
    CHECK_CU(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
    struct source ctx = { .p = src, .fail_at = fail_at };
    CUresult r = bs_staging_copy_in(d, n, s, fill, &ctx, fill_err);
    CHECK_CU(cuStreamSynchronize(s));
    CHECK_CU(cuMemcpyDtoH(back, d, n));
    size_t same = 0;
    while (same < n && back[same] == src[same])
        same++;
    *good = same;
    size_t u = n;
    while (u > 0 && back[u - 1] == UNTOUCHED)
        u--;
    if (untouched)
        *untouched = u;
    if (fail_at != UINT64_MAX)
        CHECK(ctx.next_off > fail_at && ctx.next_off <= fail_at + 8 * MIB); /* stopped there */
    CHECK_CU(cuStreamDestroy(s));
    CHECK_CU(cuMemFree(d));
    free(src);
    free(back);
    return r;
}

/* A 4M ring is two 2 MiB chunks; 13 MiB and a bit is seven pieces, the last short. */
static void range_larger_than_the_ring_lands_exactly(void)
{
    bs_cfg.staging_size = 4 * MIB;
    int err = 1;
    size_t n = 13 * MIB + 123, good;
    CHECK(copy_and_check(n, UINT64_MAX, &err, &good, NULL) == CUDA_SUCCESS);
    CHECK(err == 0);
    CHECK_EQ_U64(good, n);
    struct bs_staging_stats st;
    bs_staging_stats(&st);
    CHECK_EQ_U64(st.ring_bytes, 4 * MIB);
    CHECK_EQ_U64(st.chunk_bytes, 2 * MIB);
    CHECK_EQ_U64(st.copies, 7);
    CHECK_EQ_U64(st.bytes, n);
    CHECK_EQ_U64(track.n, 2); /* the two chunks, reused */
    /* The default ring: 8 MiB chunks. */
    bs_staging_exit();
    bs_staging_reset_after_fork();
    bs_cfg.staging_size = 128 * MIB;
    CHECK(copy_and_check(20 * MIB, UINT64_MAX, &err, &good, NULL) == CUDA_SUCCESS);
    CHECK_EQ_U64(good, 20 * MIB);
    bs_staging_stats(&st);
    CHECK_EQ_U64(st.ring_bytes, 128 * MIB);
    CHECK_EQ_U64(st.chunk_bytes, 8 * MIB);
    CHECK_EQ_U64(st.copies, 3);
    bs_staging_exit();
    bs_staging_reset_after_fork();
}

/* Failing in the fourth piece: the three before it landed, nothing after was filled. */
static void fill_error_stops_the_copy(void)
{
    bs_cfg.staging_size = 4 * MIB;
    int err = 0;
    size_t good;
    size_t untouched;
    CUresult r = copy_and_check(13 * MIB, 6 * MIB + 5, &err, &good, &untouched);
    CHECK(r == CUDA_ERROR_UNKNOWN);
    CHECK(err == -EIO);
    CHECK(good >= 6 * MIB && untouched <= 6 * MIB);
    /* The ring works on after it. */
    CHECK(copy_and_check(5 * MIB, UINT64_MAX, &err, &good, NULL) == CUDA_SUCCESS && err == 0);
    CHECK_EQ_U64(good, 5 * MIB);
    bs_staging_exit();
    bs_staging_reset_after_fork();
}

/* In a child with CUDASIM_FAIL: the copy still lands exactly; stderr holds one line
 * naming BLOCKSWAP_STAGING_SIZE; the ring is the size given. */
static void pinning_refused(const char *fail, uint64_t want, uint64_t ring)
{
    int pfd[2];
    CHECK(pipe(pfd) == 0);
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        dup2(pfd[1], 2);
        close(pfd[0]);
        close(pfd[1]);
        setenv("CUDASIM_FAIL", fail, 1);
        setup();
        bs_cfg.staging_size = want;
        int err;
        size_t good;
        CHECK(copy_and_check(11 * MIB + 1, UINT64_MAX, &err, &good, NULL) == CUDA_SUCCESS);
        CHECK_EQ_U64(good, 11 * MIB + 1);
        struct bs_staging_stats st;
        bs_staging_stats(&st);
        CHECK_EQ_U64(st.ring_bytes, ring);
        bs_staging_exit();
        _exit(0);
    }
    close(pfd[1]);
    char out[8192];
    size_t len = 0;
    ssize_t r;
    while ((r = read(pfd[0], out + len, sizeof(out) - 1 - len)) > 0)
        len += (size_t)r;
    out[len] = '\0';
    close(pfd[0]);
    int status, lines = 0;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status));
    for (char *l = out; (l = strstr(l, "blockswap: ")) != NULL; l++)
        lines++;
    if (WEXITSTATUS(status) != 0 || lines != 1 || !strstr(out, "BLOCKSWAP_STAGING_SIZE")) {
        fprintf(stderr, "CUDASIM_FAIL=%s: child exit %d, %d blockswap lines:\n%s", fail,
                WEXITSTATUS(status), lines, out);
        exit(1);
    }
}

int main(void)
{
    tables();
    /* Before this process touches the driver: the children start it afresh. */
    pinning_refused("cuMemHostAlloc:1", 16 * MIB, 8 * MIB);
    pinning_refused("cuMemHostAlloc:1+", 16 * MIB, 0);
    setup();
    range_larger_than_the_ring_lands_exactly();
    fill_error_stops_the_copy();
    return 0;
}
