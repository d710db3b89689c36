/* paging: a random but race-free program, driven by a seed, gives the same output
 * with and without blockswap under any VRAM limit that fits its largest kernel.
 *
 * Operations, chosen at random: allocations of random sizes, half of them >= 2 MiB
 * (managed) and half small (cuMemAlloc, cuMemAllocAsync, cuMemAllocPitch,
 * cuMemAllocFromPoolAsync on a created pool), each written completely right after;
 * frees (cuMemFree, cuMemFreeAsync); host-to-device and device-to-host copies of
 * random ranges (synchronous pageable, asynchronous pinned); memsets (D8, D32,
 * synchronous and asynchronous); device-to-device copies; 2-D memsets and copies
 * (cuMemsetD2D32Async, cuMemcpy2D, cuMemcpy2DAsync) of random pitched regions; kernels (fill, axpy, gemv
 * in three argument forms, tanh, checksum) on interior ranges, launched through
 * cuLaunchKernel, cuLaunchKernelEx or cuLaunchCooperativeKernel; synchronisations.
 * They run on the default stream and three non-blocking streams (built with
 * CUDA_API_PER_THREAD_DEFAULT_STREAM, every call is its _ptsz/_ptds variant and the
 * default stream is the per-thread one). Every buffer keeps
 * an event recorded after its last access; an operation on another stream first
 * waits on it (cuMemFree waits on it from the host), so each buffer's accesses are
 * totally ordered and the simulator sees no race.
 *
 * Printed: the hash of every device-to-host copy, every checksum kernel's result, and
 * at the end each live buffer's checksum, computed on the device and (checked equal)
 * on the host.
 *
 * usage: random SEED [OPS] */
#include "paging.h"

#define MAX_BUFS 14
#define NSTREAMS 4 /* 0 = legacy */
#define NSLOTS 6
#define SLOT_BYTES (4 * MiB)
#define MANAGED_MAX (4 * MiB)
#define SMALL_MAX (512 * 1024)
#define UNMANAGED_BUDGET (3 * MiB)
#define SUM_SLOTS 4096

struct buf {
    CUdeviceptr p;
    size_t size;
    int live;
    CUevent ev;
    int ev_stream; /* stream of the last access, -1 when none */
};

struct slot {
    void *h;
    CUevent ev;
    int pending;     /* a device-to-host copy whose hash is not printed yet */
    size_t len;
    long op;
};

static struct pg_kernels K;
static struct pg_rng R;
static CUstream S[NSTREAMS];
static struct buf B[MAX_BUFS];
static struct slot SL[NSLOTS];
static struct buf sums;
static int nsum;
static CUmemoryPool pool;
static unsigned char *pageable;
static long op;

/* ---- ordering --------------------------------------------------------------- */

static void order(struct buf *b, int si)
{
    if (b->ev_stream >= 0 && b->ev_stream != si)
        CHECK_CU(cuStreamWaitEvent(S[si], b->ev, 0));
}

static void touched(struct buf *b, int si)
{
    CHECK_CU(cuEventRecord(b->ev, S[si]));
    b->ev_stream = si;
}

static void host_wait(struct buf *b)
{
    if (b->ev_stream >= 0)
        CHECK_CU(cuEventSynchronize(b->ev));
}

/* ---- helpers ---------------------------------------------------------------- */

static int pick_live(int except1, int except2)
{
    int c[MAX_BUFS], n = 0;
    for (int i = 0; i < MAX_BUFS; i++)
        if (B[i].live && i != except1 && i != except2)
            c[n++] = i;
    return n ? c[pg_range(&R, 0, (uint64_t)n - 1)] : -1;
}

static int nlive(void)
{
    int n = 0;
    for (int i = 0; i < MAX_BUFS; i++)
        n += B[i].live;
    return n;
}

static size_t unmanaged_live(void)
{
    size_t n = 0;
    for (int i = 0; i < MAX_BUFS; i++)
        if (B[i].live && B[i].size < 2 * MiB)
            n += B[i].size;
    return n;
}

/* A random 4-aligned range [*off, *off + *len) inside b, at most max bytes. */
static void range_in(const struct buf *b, size_t max, size_t *off, size_t *len)
{
    size_t words = b->size / 4;
    size_t o = pg_range(&R, 0, words - 1);
    size_t l = pg_range(&R, 1, words - o);
    if (l * 4 > max)
        l = max / 4;
    if (pg_range(&R, 0, 3) == 0) { /* often the whole buffer */
        o = 0;
        l = words * 4 > max ? max / 4 : words;
    }
    *off = o * 4;
    *len = l * 4;
}

static void gen_bytes(void *dst, size_t n)
{
    /* floats in [-2, 2) mostly, with a few raw patterns */
    if (pg_range(&R, 0, 7) == 0) {
        uint64_t v = pg_next(&R);
        unsigned char *d = dst;
        for (size_t i = 0; i < n; i++)
            d[i] = (unsigned char)(v >> (8 * (i % 8)));
    } else {
        pg_fill_floats(dst, n / 4, pg_next(&R), 2.0f);
    }
}

static void flush_slot(struct slot *s)
{
    CHECK_CU(cuEventSynchronize(s->ev));
    if (s->pending) {
        printf("op %ld d2h async %zu bytes fnv 0x%016llx\n", s->op, s->len,
               (unsigned long long)pg_fnv(s->h, s->len));
        s->pending = 0;
    }
}

static struct slot *take_slot(void)
{
    struct slot *s = &SL[pg_range(&R, 0, NSLOTS - 1)];
    flush_slot(s);
    return s;
}

/* ---- operations ------------------------------------------------------------- */

static void write_range(struct buf *b, size_t off, size_t len)
{
    int how = (int)pg_range(&R, 0, 4);
    int si = (int)pg_range(&R, 0, NSTREAMS - 1);
    if (how == 0) { /* synchronous H2D from pageable */
        gen_bytes(pageable, len);
        order(b, 0);
        if (pg_range(&R, 0, 1))
            CHECK_CU(cuMemcpyHtoD(b->p + off, pageable, len));
        else
            CHECK_CU(cuMemcpy(b->p + off, (CUdeviceptr)pageable, len));
        touched(b, 0);
    } else if (how == 1) { /* asynchronous H2D from pinned */
        struct slot *s = take_slot();
        gen_bytes(s->h, len);
        order(b, si);
        CHECK_CU(cuMemcpyHtoDAsync(b->p + off, s->h, len, S[si]));
        CHECK_CU(cuEventRecord(s->ev, S[si]));
        touched(b, si);
    } else if (how == 2) { /* D32 memset, async */
        order(b, si);
        CHECK_CU(cuMemsetD32Async(b->p + off, (uint32_t)pg_next(&R), len / 4, S[si]));
        touched(b, si);
    } else if (how == 3) { /* D8 memset, "synchronous" (legacy stream) */
        order(b, 0);
        CHECK_CU(cuMemsetD8(b->p + off, (unsigned char)pg_next(&R), len));
        touched(b, 0);
    } else { /* fill kernel */
        order(b, si);
        uint32_t v = 0x3f000000u | (uint32_t)(pg_next(&R) & 0xffffff);
        CHECK_CU(pg_fill(&K, S[si], b->p + off, v, len / 4));
        touched(b, si);
    }
}

static void op_alloc(void)
{
    int i = 0;
    while (B[i].live)
        i++;
    struct buf *b = &B[i];
    int managed = pg_range(&R, 0, 1) || unmanaged_live() > UNMANAGED_BUDGET - SMALL_MAX;
    size_t size = managed ? (size_t)pg_range(&R, 2 * MiB / 256, MANAGED_MAX / 256) * 256
                          : (size_t)pg_range(&R, 1, SMALL_MAX / 256) * 256;
    int api = (int)pg_range(&R, 0, 3);
    int si = (int)pg_range(&R, 0, NSTREAMS - 1);
    b->ev_stream = -1;
    CHECK_CU(cuEventCreate(&b->ev, CU_EVENT_DISABLE_TIMING));
    if (api == 0) {
        CHECK_CU(cuMemAlloc(&b->p, size));
    } else if (api == 1) {
        CHECK_CU(cuMemAllocAsync(&b->p, size, S[si]));
        touched(b, si);
    } else if (api == 2) {
        /* width divides 2 MiB, so a managed size stays within [2 MiB, MANAGED_MAX] */
        size_t pitch, width = (size_t)512 << pg_range(&R, 0, 3), height = size / width ? size / width : 1;
        CHECK_CU(cuMemAllocPitch(&b->p, &pitch, width, height, 4));
        size = pitch * height;
    } else {
        CHECK_CU(cuMemAllocFromPoolAsync(&b->p, size, pool, S[si]));
        touched(b, si);
    }
    b->size = size;
    b->live = 1;
    printf("op %ld alloc #%d %zu bytes api %d\n", op, i, size, api);
    write_range(b, 0, size); /* never read what was not written */
}

static void op_free(int i)
{
    struct buf *b = &B[i];
    if (pg_range(&R, 0, 1)) {
        host_wait(b);
        CHECK_CU(cuMemFree(b->p));
    } else {
        int si = (int)pg_range(&R, 0, NSTREAMS - 1);
        order(b, si);
        CHECK_CU(cuMemFreeAsync(b->p, S[si]));
    }
    CHECK_CU(cuEventDestroy(b->ev));
    b->live = 0;
    printf("op %ld free #%d\n", op, i);
}

static void op_h2d(void)
{
    struct buf *b = &B[pick_live(-1, -1)];
    size_t off, len;
    range_in(b, SLOT_BYTES, &off, &len);
    write_range(b, off, len);
}

static void op_d2h(void)
{
    int i = pick_live(-1, -1);
    struct buf *b = &B[i];
    size_t off, len;
    range_in(b, SLOT_BYTES, &off, &len);
    if (pg_range(&R, 0, 1)) {
        order(b, 0);
        CHECK_CU(cuMemcpyDtoH(pageable, b->p + off, len));
        touched(b, 0);
        printf("op %ld d2h #%d +%zu %zu bytes fnv 0x%016llx\n", op, i, off, len,
               (unsigned long long)pg_fnv(pageable, len));
    } else {
        int si = (int)pg_range(&R, 0, NSTREAMS - 1);
        struct slot *s = take_slot();
        order(b, si);
        CHECK_CU(cuMemcpyDtoHAsync(s->h, b->p + off, len, S[si]));
        CHECK_CU(cuEventRecord(s->ev, S[si]));
        touched(b, si);
        s->pending = 1;
        s->len = len;
        s->op = op;
    }
}

static void op_d2d(void)
{
    int i = pick_live(-1, -1), j = pick_live(i, -1);
    if (j < 0)
        return;
    struct buf *d = &B[i], *s = &B[j];
    size_t off, len, soff, slen;
    range_in(d, SIZE_MAX, &off, &len);
    range_in(s, len, &soff, &slen);
    int si = (int)pg_range(&R, 0, NSTREAMS - 1);
    int sync = pg_range(&R, 0, 2) == 0;
    if (sync)
        si = 0;
    order(d, si);
    order(s, si);
    if (sync)
        CHECK_CU(cuMemcpyDtoD(d->p + off, s->p + soff, slen));
    else if (pg_range(&R, 0, 1))
        CHECK_CU(cuMemcpyDtoDAsync(d->p + off, s->p + soff, slen, S[si]));
    else
        CHECK_CU(cuMemcpyAsync(d->p + off, s->p + soff, slen, S[si]));
    touched(d, si);
    touched(s, si);
}

/* A random 2-D region inside b: *off, row width w bytes, pitch, h rows. */
static void region_in(const struct buf *b, size_t *off, size_t *w, size_t *pitch, size_t *h)
{
    *w = 4 * pg_range(&R, 1, 1024);
    if (*w > b->size)
        *w = b->size / 4 * 4;
    *pitch = *w + 4 * pg_range(&R, 0, 256);
    *off = 4 * pg_range(&R, 0, (b->size - *w) / 4);
    size_t maxh = (b->size - *off - *w) / *pitch + 1;
    if (maxh > SLOT_BYTES / *w)
        maxh = SLOT_BYTES / *w;
    if (maxh > 1024)
        maxh = 1024;
    *h = pg_range(&R, 1, maxh);
}

/* 2-D memsets and copies (host-to-device, device-to-host, device-to-device). */
static void op_2d(void)
{
    int i = pick_live(-1, -1);
    struct buf *b = &B[i];
    size_t off, w, pitch, h;
    region_in(b, &off, &w, &pitch, &h);
    int kind = (int)pg_range(&R, 0, 3);
    int si = (int)pg_range(&R, 0, NSTREAMS - 1);
    CUDA_MEMCPY2D c;
    memset(&c, 0, sizeof(c));
    c.WidthInBytes = w;
    c.Height = h;
    if (kind == 0) {
        order(b, si);
        CHECK_CU(cuMemsetD2D32Async(b->p + off, pitch, (uint32_t)pg_next(&R), w / 4, h, S[si]));
        touched(b, si);
        return;
    }
    if (kind == 1) { /* host (pinned, packed rows) to device, async */
        struct slot *sl = take_slot();
        gen_bytes(sl->h, w * h);
        c.srcMemoryType = CU_MEMORYTYPE_HOST;
        c.srcHost = sl->h;
        c.srcPitch = w;
        c.dstMemoryType = CU_MEMORYTYPE_DEVICE;
        c.dstDevice = b->p + off;
        c.dstPitch = pitch;
        order(b, si);
        CHECK_CU(cuMemcpy2DAsync(&c, S[si]));
        CHECK_CU(cuEventRecord(sl->ev, S[si]));
        touched(b, si);
        return;
    }
    if (kind == 2) { /* device to host (pageable), synchronous */
        c.srcMemoryType = CU_MEMORYTYPE_DEVICE;
        c.srcDevice = b->p + off;
        c.srcPitch = pitch;
        c.dstMemoryType = CU_MEMORYTYPE_HOST;
        c.dstHost = pageable;
        c.dstPitch = w;
        order(b, 0);
        CHECK_CU(cuMemcpy2D(&c));
        touched(b, 0);
        printf("op %ld d2h 2d #%d +%zu %zux%zu pitch %zu fnv 0x%016llx\n", op, i, off, w, h, pitch,
               (unsigned long long)pg_fnv(pageable, w * h));
        return;
    }
    /* device to device: the same shape inside another buffer, when it fits */
    int j = pick_live(i, -1);
    if (j < 0)
        return;
    struct buf *d = &B[j];
    size_t doff, dw, dpitch, dh;
    region_in(d, &doff, &dw, &dpitch, &dh);
    if (dw < w || dh < h)
        return;
    c.srcMemoryType = CU_MEMORYTYPE_DEVICE;
    c.srcDevice = b->p + off;
    c.srcPitch = pitch;
    c.dstMemoryType = CU_MEMORYTYPE_DEVICE;
    c.dstDevice = d->p + doff;
    c.dstPitch = dpitch;
    order(b, si);
    order(d, si);
    CHECK_CU(cuMemcpy2DAsync(&c, S[si]));
    touched(b, si);
    touched(d, si);
}

static void op_kernel(void)
{
    int kind = (int)pg_range(&R, 0, 4);
    int si = (int)pg_range(&R, 0, NSTREAMS - 1);
    pg_flavor = (int)pg_range(&R, 0, 2);
    int i = pick_live(-1, -1);
    struct buf *a = &B[i];
    size_t off, len;
    if (kind == 0) { /* fill, through the write path */
        range_in(a, SIZE_MAX, &off, &len);
        order(a, si);
        CHECK_CU(pg_fill(&K, S[si], a->p + off, (uint32_t)pg_next(&R), len / 4));
        touched(a, si);
    } else if (kind == 1) { /* axpy y(a) += alpha x(b) */
        int j = pick_live(i, -1);
        if (j < 0)
            return;
        struct buf *x = &B[j];
        size_t xoff, xlen;
        range_in(a, SIZE_MAX, &off, &len);
        range_in(x, len, &xoff, &xlen);
        static const float alphas[] = { 0.5f, -0.25f, 1.0f, 0.125f };
        order(a, si);
        order(x, si);
        CHECK_CU(pg_axpy(&K, S[si], a->p + off, x->p + xoff, alphas[pg_range(&R, 0, 3)], xlen / 4));
        touched(a, si);
        touched(x, si);
    } else if (kind == 2) { /* gemv y(a) = W(w) x(x) */
        int j = pick_live(i, -1), l = pick_live(i, j);
        if (j < 0 || l < 0)
            return;
        struct buf *w = &B[j], *x = &B[l];
        size_t maxc = x->size / 4 < 1024 ? x->size / 4 : 1024;
        uint32_t cols = (uint32_t)pg_range(&R, 1, maxc);
        size_t maxr = a->size / 4;
        if (maxr > w->size / 4 / cols)
            maxr = w->size / 4 / cols;
        if (maxr > 262144 / cols)
            maxr = 262144 / cols;
        if (maxr < 1)
            return;
        uint32_t rows = (uint32_t)pg_range(&R, 1, maxr);
        size_t yoff = 4 * pg_range(&R, 0, a->size / 4 - rows);
        size_t woff = 4 * pg_range(&R, 0, w->size / 4 - (size_t)rows * cols);
        size_t xoff = 4 * pg_range(&R, 0, x->size / 4 - cols);
        order(a, si);
        order(w, si);
        order(x, si);
        CHECK_CU(pg_gemv(&K, S[si], (enum pg_form)pg_range(&R, 0, 2), a->p + yoff, w->p + woff, x->p + xoff,
                         rows, cols));
        touched(a, si);
        touched(w, si);
        touched(x, si);
    } else if (kind == 3) {
        range_in(a, SIZE_MAX, &off, &len);
        order(a, si);
        CHECK_CU(pg_tanh(&K, S[si], a->p + off, len / 4));
        touched(a, si);
    } else {
        range_in(a, SIZE_MAX, &off, &len);
        CHECK(nsum < SUM_SLOTS);
        order(a, si);
        order(&sums, si);
        CHECK_CU(pg_checksum(&K, S[si], sums.p + 8 * (size_t)nsum++, a->p + off, len));
        touched(a, si);
        touched(&sums, si);
    }
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: random SEED [OPS]\n");
        return 2;
    }
    uint64_t seed = strtoull(argv[1], NULL, 0);
    long ops = argc > 2 ? atol(argv[2]) : 250;
    R.s = pg_mix(seed * 7919 + 17);
    pg_init(&K);
    S[0] = NULL;
    for (int i = 1; i < NSTREAMS; i++)
        CHECK_CU(cuStreamCreate(&S[i], CU_STREAM_NON_BLOCKING));
    CUmemPoolProps props;
    memset(&props, 0, sizeof(props));
    props.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
    props.handleTypes = CU_MEM_HANDLE_TYPE_NONE;
    props.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    props.location.id = 0;
    CHECK_CU(cuMemPoolCreate(&pool, &props));
    pageable = malloc(MANAGED_MAX + 8 * MiB);
    CHECK(pageable);
    for (int i = 0; i < NSLOTS; i++) {
        CHECK_CU(cuMemAllocHost(&SL[i].h, SLOT_BYTES));
        CHECK_CU(cuEventCreate(&SL[i].ev, CU_EVENT_DISABLE_TIMING));
    }
    CHECK_CU(cuMemAlloc(&sums.p, 8 * SUM_SLOTS));
    CHECK_CU(cuEventCreate(&sums.ev, CU_EVENT_DISABLE_TIMING));
    sums.ev_stream = -1;
    sums.size = 8 * SUM_SLOTS;

    for (op = 0; op < ops; op++) {
        int n = nlive();
        int r = (int)pg_range(&R, 0, 99);
        if (n < 3 || (r < 12 && n < MAX_BUFS))
            op_alloc();
        else if (r < 20 && n > 4)
            op_free(pick_live(-1, -1));
        else if (r < 32)
            op_h2d();
        else if (r < 44)
            op_d2h();
        else if (r < 54) { /* memsets of random ranges */
            int i = pick_live(-1, -1);
            size_t off, len;
            range_in(&B[i], SIZE_MAX, &off, &len);
            int si = (int)pg_range(&R, 0, NSTREAMS - 1);
            order(&B[i], si);
            if (pg_range(&R, 0, 1))
                CHECK_CU(cuMemsetD8Async(B[i].p + off + 1, (unsigned char)pg_next(&R), len - 1, S[si]));
            else
                CHECK_CU(cuMemsetD32Async(B[i].p + off, (uint32_t)pg_next(&R), len / 4, S[si]));
            touched(&B[i], si);
        } else if (r < 58)
            op_d2d();
        else if (r < 62)
            op_2d();
        else if (r < 97)
            op_kernel();
        else if (r < 98)
            CHECK_CU(cuCtxSynchronize());
        else
            CHECK_CU(cuStreamSynchronize(S[pg_range(&R, 0, NSTREAMS - 1)]));
    }

    /* Final: every live buffer's checksum on the device and on the host. */
    for (int i = 0; i < NSLOTS; i++)
        flush_slot(&SL[i]);
    int first = nsum;
    for (int i = 0; i < MAX_BUFS; i++) {
        if (!B[i].live)
            continue;
        CHECK(nsum < SUM_SLOTS);
        order(&B[i], 1);
        order(&sums, 1);
        CHECK_CU(pg_checksum(&K, S[1], sums.p + 8 * (size_t)nsum++, B[i].p, B[i].size));
        touched(&B[i], 1);
        touched(&sums, 1);
    }
    host_wait(&sums);
    uint64_t *h = calloc(SUM_SLOTS, 8);
    CHECK(h);
    CHECK_CU(cuMemcpyDtoH(h, sums.p, 8 * (size_t)nsum));
    for (int i = 0; i < first; i++)
        printf("checksum %d 0x%016llx\n", i, (unsigned long long)h[i]);
    unsigned char *all = malloc(MANAGED_MAX + 8 * MiB);
    CHECK(all);
    for (int i = 0, k = first; i < MAX_BUFS; i++) {
        if (!B[i].live)
            continue;
        host_wait(&B[i]);
        CHECK_CU(cuMemcpyDtoH(all, B[i].p, B[i].size));
        uint64_t host = pg_fnv(all, B[i].size);
        CHECK_EQ_U64(host, h[k]);
        printf("final #%d %zu bytes 0x%016llx\n", i, B[i].size, (unsigned long long)h[k]);
        k++;
    }
    for (int i = 0; i < MAX_BUFS; i++)
        if (B[i].live)
            op_free(i);
    CHECK_CU(cuCtxSynchronize());
    CHECK_CU(cuMemFree(sums.p));
    CHECK_CU(cuMemPoolDestroy(pool));
    printf("seed %llu ops %ld done\n", (unsigned long long)seed, ops);
    return 0;
}
