/* bench-blocks: the block-swapping benchmark's program (a benchmark, not a test).
 *
 * A WAN-shaped transformer stack on the (simulated or real) driver: N blocks (40) with
 * the tensors of a WAN 2.1/2.2 14B block, scaled down to model dimension d (default
 * 1024, ffn f = 2.7 d rounded to 16), every tensor its own cuMemAlloc (--async:
 * cuMemAllocAsync):
 *
 *   modulation [6,d]
 *   self_attn.{q,k,v,o}.weight [d,d] + .bias [d], self_attn.norm_{q,k}.weight [d]
 *   norm3.weight/bias [d]
 *   cross_attn.{q,k,v,o}.weight [d,d] + .bias [d], cross_attn.norm_{q,k}.weight [d]
 *   ffn.0.weight [f,d] + bias [f], ffn.2.weight [d,f] + bias [d]
 *
 * Elements are --elem-bytes wide (default 2, WAN's bf16; 4 for float32). --source says
 * where the weights come from, the device contents being the same for each:
 *   pinned (default)  one pinned staging buffer per block, async copies;
 *   heap              each tensor in its own malloc'd buffer, an async copy and a
 *                     stream synchronisation (what PyTorch's .to("cuda") does with a
 *                     pageable tensor), then freed;
 *   file              all weights written to a file first (--file PATH, else in
 *                     $TMPDIR), mapped MAP_PRIVATE/PROT_READ, each tensor copied from
 *                     the mapping as heap does, then unmapped and closed (a
 *                     safetensors load by PyTorch or ComfyUI).
 * Each step runs the blocks in
 * order on one stream; per tensor one cheap kernel points at the whole allocation (so
 * the shim pages it in): a bs_gemv_f32 over a 16-row float32 slice of each matrix, a
 * bs_axpy_f32 over each vector. Compute is a bs_sleep after each matrix's gemv, its
 * length proportional to the matrix's bytes (a GEMM's work is), so that one block
 * computes for ratio * block_bytes / (PCIe GB/s) ns: --ratio is the compute-to-
 * transfer ratio of one block. Activations are small unmanaged allocations.
 *
 * Step time is measured on the driver's timeline by events around each step. The
 * program prints key=value lines:
 *   sizes ...            byte counts (also alone with --print-sizes)
 *   step S ms=... page_in_bytes=... writeback_bytes=... page_ins=... evictions=...
 *                        (the byte counts from blockswap's stats, when preloaded)
 *   checksum=0x...       FNV-1a of the final activations: the same for every run
 *   mem when=load|end    the process's memory from /proc/self/status after loading and
 *                        after the last step (when=mapped: file source, before munmap):
 *                        rss_anon, rss_file, rss_shmem, vm_lck in bytes; on the
 *                        simulator also its counters (sim_device, sim_device_vmm,
 *                        sim_pinned, sim_peak_pinned) and host_anon = rss_anon less
 *                        the simulated VRAM that is anonymous memory (see below);
 *                        under blockswap also its host-memory stats (bytes): bs_host_backing,
 *                        bs_peak_host_backing, bs_host_pinned, bs_peak_host_pinned,
 *                        bs_host_file_backed, bs_files_held (a count), bs_file_read,
 *                        bs_host_staging, bs_load_direct, bs_peak_vram
 *   staging how=... (measured on the CPU)
 *                        --staging-probe: this machine's CPU reading the weight file
 *                        with pread, and copying from heap memory, into a 128 MiB
 *                        buffer in 8 MiB chunks: GB/s and CPU seconds (wall clock)
 *
 * On the simulator "device memory" is this process's memory too: cuMemAlloc's is
 * anonymous (in RssAnon once written), cuMemCreate's (blockswap's paged weights) is a
 * memfd (in RssShmem while mapped). sim_device - sim_device_vmm is the first,
 * sim_device_vmm the second (an upper bound of what RssShmem holds of it).
 *
 * usage: bench-blocks [--blocks N] [--d D] [--f F] [--elem-bytes 2|4] [--steps S]
 *                     [--ratio R] [--gbps G] [--async] [--print-sizes]
 *                     [--source pinned|heap|file] [--file PATH] [--staging-probe]
 * --gbps defaults to CUDASIM_PCIE_GBPS, else 25. */
#include "kit.h"

#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#define MiB (1024ull * 1024ull)
#define SLICE_ROWS 16u

static int nblocks = 40, steps = 4, async_mode, print_sizes, staging_probe;
static const char *source = "pinned", *file_arg;
static uint32_t d = 1024, f, elem = 2;
static double ratio = 1.0, gbps;

enum { T_MAT, T_VEC };
struct tdesc {
    const char *name;
    int kind;
    size_t bytes;
    size_t off; /* within the block's weights, in the order added */
    uint32_t rows, cols; /* matrices: logical shape */
};

#define MAXT 32
static struct tdesc T[MAXT];
static int nt;

static void add(const char *name, int kind, uint32_t rows, uint32_t cols)
{
    T[nt].name = name;
    T[nt].kind = kind;
    T[nt].rows = rows;
    T[nt].cols = cols;
    T[nt].bytes = (size_t)rows * cols * elem;
    T[nt].off = nt ? T[nt - 1].off + T[nt - 1].bytes : 0;
    nt++;
}

/* In the order a WAN block's forward uses them. */
static void layout(void)
{
    add("modulation", T_VEC, 6, d);
    static const char *sa[] = { "self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o" };
    static const char *sab[] = { "self_attn.q.bias", "self_attn.k.bias", "self_attn.v.bias", "self_attn.o.bias" };
    static const char *ca[] = { "cross_attn.q", "cross_attn.k", "cross_attn.v", "cross_attn.o" };
    static const char *cab[] = { "cross_attn.q.bias", "cross_attn.k.bias", "cross_attn.v.bias",
                                 "cross_attn.o.bias" };
    for (int i = 0; i < 3; i++) {
        add(sa[i], T_MAT, d, d);
        add(sab[i], T_VEC, 1, d);
    }
    add("self_attn.norm_q", T_VEC, 1, d);
    add("self_attn.norm_k", T_VEC, 1, d);
    add(sa[3], T_MAT, d, d);
    add(sab[3], T_VEC, 1, d);
    add("norm3.weight", T_VEC, 1, d);
    add("norm3.bias", T_VEC, 1, d);
    for (int i = 0; i < 3; i++) {
        add(ca[i], T_MAT, d, d);
        add(cab[i], T_VEC, 1, d);
    }
    add("cross_attn.norm_q", T_VEC, 1, d);
    add("cross_attn.norm_k", T_VEC, 1, d);
    add(ca[3], T_MAT, d, d);
    add(cab[3], T_VEC, 1, d);
    add("ffn.0", T_MAT, f, d);
    add("ffn.0.bias", T_VEC, 1, f);
    add("ffn.2", T_MAT, d, f);
    add("ffn.2.bias", T_VEC, 1, d);
}

static void usage(void)
{
    fprintf(stderr, "usage: bench-blocks [--blocks N] [--d D] [--f F] [--elem-bytes 2|4] [--steps S] "
                    "[--ratio R] [--gbps G] [--async] [--print-sizes] [--source pinned|heap|file] "
                    "[--file PATH] [--staging-probe]\n");
    exit(2);
}

static void parse(int argc, char **argv)
{
    const char *g = getenv("CUDASIM_PCIE_GBPS");
    gbps = g && *g ? atof(g) : 25.0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--async"))
            async_mode = 1;
        else if (!strcmp(a, "--print-sizes"))
            print_sizes = 1;
        else if (!strcmp(a, "--staging-probe"))
            staging_probe = 1;
        else if (v && !strcmp(a, "--source"))
            source = v, i++;
        else if (v && !strcmp(a, "--file"))
            file_arg = v, i++;
        else if (v && !strcmp(a, "--blocks"))
            nblocks = atoi(v), i++;
        else if (v && !strcmp(a, "--d"))
            d = (uint32_t)atoi(v), i++;
        else if (v && !strcmp(a, "--f"))
            f = (uint32_t)atoi(v), i++;
        else if (v && !strcmp(a, "--elem-bytes"))
            elem = (uint32_t)atoi(v), i++;
        else if (v && !strcmp(a, "--steps"))
            steps = atoi(v), i++;
        else if (v && !strcmp(a, "--ratio"))
            ratio = atof(v), i++;
        else if (v && !strcmp(a, "--gbps"))
            gbps = atof(v), i++;
        else
            usage();
    }
    if (!f)
        f = (uint32_t)(2.7 * d + 8) / 16 * 16;
    if (nblocks < 1 || nblocks > 1000 || d < 64 || d > 8192 || d % 16 || f < 64 || f % 16 ||
        (elem != 2 && elem != 4) || steps < 2 || steps > 100 || !(ratio >= 0) || !(gbps > 0) ||
        (strcmp(source, "pinned") && strcmp(source, "heap") && strcmp(source, "file")))
        usage();
}

static size_t round_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

/* Fill n floats (a pure function of seed) in [-scale, scale). */
static void fill_floats(float *dst, size_t n, uint64_t seed, float scale)
{
    uint64_t s = seed * 0x9e3779b97f4a7c15ull + 0x1234567ull;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        dst[i] = ((float)(uint32_t)(s >> 40) / 16777216.0f * 2.0f - 1.0f) * scale;
    }
}

static uint64_t fnv(const void *p, size_t n)
{
    const unsigned char *b = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* ---- weight contents: the same bytes whatever the source ---- */

/* A block's weights are the same bulk for every block (seed 7, one block long), with
 * the part the kernels read made per block: a matrix's slice, a whole vector. */
static void fill_head(unsigned char *dst, int b, int i)
{
    size_t head = T[i].kind == T_MAT ? (size_t)SLICE_ROWS * d * 4 : T[i].bytes;
    if (head > T[i].bytes)
        head = T[i].bytes;
    float scale = T[i].kind == T_MAT ? 1.5f / sqrtf((float)d) : 0.05f;
    fill_floats((float *)dst, head / 4, (uint64_t)b * MAXT + (uint64_t)i + 100, scale);
}

static unsigned char *make_template(size_t block_bytes)
{
    unsigned char *t = malloc(block_bytes);
    CHECK(t);
    fill_floats((float *)t, block_bytes / 4, 7, 0.01f);
    return t;
}

static void tensor_bytes(unsigned char *dst, const unsigned char *tmpl, int b, int i)
{
    memcpy(dst, tmpl + T[i].off, T[i].bytes);
    fill_head(dst, b, i);
}

/* ---- the weight file (--source file, --staging-probe) ---- */

static char tmp_path[4096];

static void remove_tmp(void)
{
    if (tmp_path[0])
        unlink(tmp_path);
}

static void write_all(int fd, const unsigned char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        CHECK(w > 0);
        p += w;
        n -= (size_t)w;
    }
}

/* All blocks' weights, block after block, tensors at their offsets: file offset of
 * tensor i of block b = b * block_bytes + T[i].off. */
static const char *write_weights(size_t block_bytes)
{
    static char path[4096];
    int fd;
    if (file_arg) {
        snprintf(path, sizeof(path), "%s", file_arg);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    } else {
        const char *dir = getenv("TMPDIR");
        snprintf(path, sizeof(path), "%s/bench-blocks-weights.XXXXXX", dir && *dir ? dir : "/tmp");
        fd = mkstemp(path);
        if (fd >= 0 && !tmp_path[0]) {
            snprintf(tmp_path, sizeof(tmp_path), "%s", path);
            atexit(remove_tmp);
        }
    }
    if (fd < 0) {
        perror(path);
        exit(1);
    }
    unsigned char *tmpl = make_template(block_bytes), *blk = malloc(block_bytes);
    CHECK(blk);
    for (int b = 0; b < nblocks; b++) {
        for (int i = 0; i < nt; i++)
            tensor_bytes(blk + T[i].off, tmpl, b, i);
        write_all(fd, blk, block_bytes);
    }
    free(blk);
    free(tmpl);
    CHECK(close(fd) == 0);
    return path;
}

/* ---- memory figures ---- */

typedef CUresult (*sim_counters_fn)(uint64_t *out, unsigned n);
static sim_counters_fn sim_counters; /* the simulator's, NULL on a GPU */
typedef int (*get_stats_fn)(struct blockswap_stats *);
static get_stats_fn get_stats; /* blockswap's, NULL when not preloaded */

static unsigned long long status_bytes(const char *text, const char *key)
{
    const char *p = strstr(text, key);
    CHECK(p);
    return strtoull(p + strlen(key), NULL, 10) * 1024; /* "RssAnon:\t  1234 kB" */
}

static void mem_line(const char *when)
{
    char buf[8192];
    FILE *fp = fopen("/proc/self/status", "r");
    CHECK(fp);
    size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    unsigned long long anon = status_bytes(buf, "\nRssAnon:"), file = status_bytes(buf, "\nRssFile:"),
                       shmem = status_bytes(buf, "\nRssShmem:"), lck = status_bytes(buf, "\nVmLck:");
    printf("mem when=%s rss_anon=%llu rss_file=%llu rss_shmem=%llu vm_lck=%llu", when, anon, file, shmem, lck);
    uint64_t c[5];
    if (sim_counters && sim_counters(c, 5) == CUDA_SUCCESS) {
        uint64_t dev_anon = c[0] - c[4];
        printf(" sim_device=%llu sim_device_vmm=%llu sim_pinned=%llu sim_peak_pinned=%llu host_anon=%llu",
               (unsigned long long)c[0], (unsigned long long)c[4], (unsigned long long)c[2],
               (unsigned long long)c[3], anon > dev_anon ? anon - dev_anon : 0ull);
    }
    struct blockswap_stats bs;
    if (get_stats && get_stats(&bs) == 0)
        printf(" bs_host_backing=%llu bs_peak_host_backing=%llu bs_host_pinned=%llu bs_peak_host_pinned=%llu"
               " bs_host_file_backed=%llu bs_files_held=%llu bs_file_read=%llu bs_host_staging=%llu"
               " bs_load_direct=%llu bs_peak_vram=%llu",
               (unsigned long long)bs.host_backing_bytes, (unsigned long long)bs.peak_host_backing_bytes,
               (unsigned long long)bs.host_pinned_bytes, (unsigned long long)bs.peak_host_pinned_bytes,
               (unsigned long long)bs.host_file_backed_bytes, (unsigned long long)bs.files_held,
               (unsigned long long)bs.file_read_bytes, (unsigned long long)bs.host_staging_bytes,
               (unsigned long long)bs.load_direct_bytes, (unsigned long long)bs.peak_vram_bytes);
    printf("\n");
    fflush(stdout);
}

/* ---- --staging-probe: the CPU side of a staging path, measured (wall clock) ---- */

static double wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void cpu_s(double *user, double *sys)
{
    struct rusage ru;
    CHECK(getrusage(RUSAGE_THREAD, &ru) == 0);
    *user = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6;
    *sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

struct probe_t {
    double wall, user, sys;
};

static struct probe_t probe_start(void)
{
    struct probe_t t;
    cpu_s(&t.user, &t.sys);
    t.wall = wall_s();
    return t;
}

static void probe_line(const char *how, const char *extra, size_t bytes, struct probe_t t0)
{
    struct probe_t t = probe_start();
    double sec = t.wall - t0.wall;
    printf("staging how=%s %sbytes=%zu chunk=%llu buffer=%llu seconds=%.4f gbps=%.2f cpu_user_s=%.4f "
           "cpu_sys_s=%.4f (measured on the CPU)\n",
           how, extra, bytes, 8 * MiB, 128 * MiB, sec, sec > 0 ? (double)bytes / sec / 1e9 : 0.0,
           t.user - t0.user, t.sys - t0.sys);
    fflush(stdout);
}

/* Reads the weight file with pread in 8 MiB chunks into a 128 MiB buffer (pinned: the
 * staging buffer a real path would DMA from), round and round, first with the file in
 * the page cache (it was just written), then after asking the kernel to drop it;
 * then the same from heap memory with memcpy. */
static void run_staging_probe(const char *path, size_t file_bytes)
{
    const size_t chunk = 8 * MiB, ring = 128 * MiB;
    unsigned char *buf;
    CHECK_CU(cuMemAllocHost((void **)&buf, ring));
    memset(buf, 0, ring); /* fault it in before timing */
    struct statfs sf;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    CHECK(fd >= 0 && fstatfs(fd, &sf) == 0);
    const char *fs = sf.f_type == 0x01021994 ? "tmpfs" : "other"; /* TMPFS_MAGIC: always cached */
    for (int cold = 0; cold < 2; cold++) {
        if (cold) {
            CHECK(fdatasync(fd) == 0);
            CHECK(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0); /* best effort */
        }
        char extra[64];
        snprintf(extra, sizeof(extra), "cache=%s fs=%s ", cold ? "dropped" : "warm", fs);
        struct probe_t t0 = probe_start();
        for (size_t off = 0; off < file_bytes; off += chunk) {
            size_t n = file_bytes - off < chunk ? file_bytes - off : chunk;
            CHECK(pread(fd, buf + (off / chunk) % (ring / chunk) * chunk, n, (off_t)off) == (ssize_t)n);
        }
        probe_line("pread", extra, file_bytes, t0);
    }
    close(fd);

    size_t hb = file_bytes < 1024 * MiB ? file_bytes : 1024 * MiB;
    hb = hb < chunk ? chunk : hb / chunk * chunk;
    unsigned char *h = malloc(hb);
    CHECK(h);
    memset(h, 1, hb);
    struct probe_t t0 = probe_start();
    for (size_t off = 0; off < file_bytes; off += chunk) {
        size_t n = file_bytes - off < chunk ? file_bytes - off : chunk;
        memcpy(buf + (off / chunk) % (ring / chunk) * chunk, h + off % hb, n);
    }
    probe_line("memcpy", "", file_bytes, t0);
    /* The compiler may not drop the copies: their result is read. */
    volatile unsigned char sink = buf[ring - 1];
    (void)sink;
    free(h);
    CHECK_CU(cuMemFreeHost(buf));
}

static void stats(get_stats_fn fn, struct blockswap_stats *s)
{
    memset(s, 0, sizeof(*s));
    if (fn)
        fn(s);
}

static CUresult launch(CUfunction fn, CUstream s, void **params)
{
    return cuLaunchKernel(fn, 1, 1, 1, 128, 1, 1, 0, s, params, NULL);
}

int main(int argc, char **argv)
{
    parse(argc, argv);
    layout();

    size_t block_bytes = 0, block_paged = 0, block_managed = 0, block_small = 0, mat_bytes = 0, max_t = 0;
    int nmat = 0;
    for (int i = 0; i < nt; i++) {
        block_bytes += T[i].bytes;
        if (T[i].bytes > max_t)
            max_t = T[i].bytes;
        if (T[i].bytes >= 2 * MiB) { /* BLOCKSWAP_MIN_BYTES default: managed, 2 MiB pages */
            block_managed += T[i].bytes;
            block_paged += round_up(T[i].bytes, 2 * MiB);
        } else
            block_small += round_up(T[i].bytes, 4096); /* the simulator charges pages */
        if (T[i].kind == T_MAT) {
            mat_bytes += T[i].bytes;
            nmat++;
        }
    }
    /* Activations: x [d], y [SLICE_ROWS], out (checksum) — each at least a page. */
    size_t act_bytes = round_up((size_t)d * 4, 4096) + round_up(SLICE_ROWS * 4, 4096) + 4096;
    double compute_ns = ratio * (double)block_bytes / gbps; /* gbps GB/s = bytes per ns */
    printf("sizes blocks=%d d=%u f=%u elem_bytes=%u tensors_per_block=%d matrices_per_block=%d "
           "block_bytes=%zu block_managed=%zu block_paged=%zu block_small=%zu activation_bytes=%zu "
           "rest_bytes=%zu model_bytes=%zu largest_tensor=%zu\n",
           nblocks, d, f, elem, nt, nmat, block_bytes, block_managed, block_paged, block_small, act_bytes,
           block_small * nblocks + act_bytes, block_bytes * nblocks, max_t);
    printf("config steps=%d ratio=%g gbps=%g block_compute_ns=%.0f block_fill_ns=%.0f async=%d source=%s\n",
           steps, ratio, gbps, compute_ns, (double)block_bytes / gbps, async_mode, source);
    fflush(stdout);
    if (print_sizes)
        return 0;

    struct kit K;
    kit_init(&K);
    CUfunction k_gemv = kit_fn(&K, "bs_gemv_f32"), k_axpy = kit_fn(&K, "bs_axpy_f32"),
               k_tanh = kit_fn(&K, "bs_tanh_f32"), k_sleep = kit_fn(&K, "bs_sleep"),
               k_sum = kit_fn(&K, "bs_checksum_u64");
    get_stats = (get_stats_fn)dlsym(RTLD_DEFAULT, "blockswap_get_stats");
    if (cuGetProcAddress("cudasimGetMemCounters", (void **)&sim_counters, 12000, 0, NULL) != CUDA_SUCCESS)
        sim_counters = NULL; /* a GPU */

    CUstream cs, xs; /* compute, copy */
    CHECK_CU(cuStreamCreate(&cs, CU_STREAM_NON_BLOCKING));
    CHECK_CU(cuStreamCreate(&xs, CU_STREAM_NON_BLOCKING));

    /* ---- load ---- */
    CUdeviceptr *W = calloc((size_t)nblocks * nt, sizeof(*W));
    unsigned char *stage = NULL;
    const char *wfile = NULL;
    CHECK(W);
    if (!strcmp(source, "pinned")) {
        /* One pinned staging buffer per block, copied tensor by tensor. */
        CHECK_CU(cuMemAllocHost((void **)&stage, block_bytes));
        fill_floats((float *)stage, block_bytes / 4, 7, 0.01f); /* bulk: the same for every block */
        for (int b = 0; b < nblocks; b++) {
            CHECK_CU(cuStreamSynchronize(xs)); /* the staging buffer is free again */
            for (int i = 0; i < nt; i++) {
                CUdeviceptr *p = &W[(size_t)b * nt + i];
                if (async_mode)
                    CHECK_CU(cuMemAllocAsync(p, T[i].bytes, xs));
                else
                    CHECK_CU(cuMemAlloc(p, T[i].bytes));
                fill_head(stage + T[i].off, b, i);
                CHECK_CU(cuMemcpyHtoDAsync(*p, stage + T[i].off, T[i].bytes, xs));
            }
        }
        CHECK_CU(cuStreamSynchronize(xs));
    } else {
        /* Pageable memory, one tensor at a time, as PyTorch's .to("cuda") does: an
         * async copy on the stream and a synchronisation. */
        unsigned char *tmpl = NULL, *map = NULL;
        size_t map_len = (size_t)nblocks * block_bytes;
        int fd = -1;
        if (!strcmp(source, "file")) {
            wfile = write_weights(block_bytes);
            fd = open(wfile, O_RDONLY | O_CLOEXEC);
            CHECK(fd >= 0);
            map = mmap(NULL, map_len, PROT_READ, MAP_PRIVATE, fd, 0);
            CHECK(map != MAP_FAILED);
        } else {
            tmpl = make_template(block_bytes);
        }
        for (int b = 0; b < nblocks; b++) {
            for (int i = 0; i < nt; i++) {
                CUdeviceptr *p = &W[(size_t)b * nt + i];
                unsigned char *heap = NULL;
                const unsigned char *src;
                if (async_mode)
                    CHECK_CU(cuMemAllocAsync(p, T[i].bytes, xs));
                else
                    CHECK_CU(cuMemAlloc(p, T[i].bytes));
                if (map) {
                    src = map + (size_t)b * block_bytes + T[i].off;
                } else {
                    heap = malloc(T[i].bytes);
                    CHECK(heap);
                    tensor_bytes(heap, tmpl, b, i);
                    src = heap;
                }
                CHECK_CU(cuMemcpyHtoDAsync(*p, src, T[i].bytes, xs));
                CHECK_CU(cuStreamSynchronize(xs));
                free(heap);
            }
        }
        free(tmpl);
        if (map) {
            mem_line("mapped");
            CHECK(munmap(map, map_len) == 0);
            CHECK(close(fd) == 0);
        }
    }

    mem_line("load");

    /* ---- activations ---- */
    CUdeviceptr x, y, out;
    CHECK_CU(cuMemAlloc(&x, (size_t)d * 4));
    CHECK_CU(cuMemAlloc(&y, SLICE_ROWS * 4));
    CHECK_CU(cuMemAlloc(&out, 8));
    float *x0 = malloc((size_t)d * 4);
    CHECK(x0);
    fill_floats(x0, d, 999, 0.5f);
    CHECK_CU(cuMemcpyHtoD(x, x0, (size_t)d * 4));

    CUevent *ev = calloc((size_t)steps + 1, sizeof(*ev));
    struct blockswap_stats *st = calloc((size_t)steps + 1, sizeof(*st));
    CHECK(ev && st);
    for (int s = 0; s <= steps; s++)
        CHECK_CU(cuEventCreate(&ev[s], CU_EVENT_DEFAULT));

    /* ---- steps ---- */
    uint32_t rows = SLICE_ROWS, cols = d;
    uint64_t nd = d;
    float a_mat = 0.05f, a_vec = 0.01f;
    stats(get_stats, &st[0]);
    CHECK_CU(cuEventRecord(ev[0], cs));
    for (int s = 0; s < steps; s++) {
        for (int b = 0; b < nblocks; b++) {
            for (int i = 0; i < nt; i++) {
                CUdeviceptr w = W[(size_t)b * nt + i];
                if (T[i].kind == T_MAT) {
                    void *pg[] = { &y, &w, &x, &rows, &cols };
                    CHECK_CU(launch(k_gemv, cs, pg));
                    uint64_t ny = SLICE_ROWS;
                    void *pa[] = { &x, &y, &a_mat, &ny };
                    CHECK_CU(launch(k_axpy, cs, pa));
                    uint64_t ns = (uint64_t)llround(compute_ns * (double)T[i].bytes / (double)mat_bytes);
                    if (ns) {
                        void *ps[] = { &ns };
                        CHECK_CU(launch(k_sleep, cs, ps));
                    }
                } else {
                    uint64_t n = T[i].bytes / 4 < nd ? T[i].bytes / 4 : nd;
                    void *pa[] = { &x, &w, &a_vec, &n };
                    CHECK_CU(launch(k_axpy, cs, pa));
                }
            }
            void *pt[] = { &x, &nd };
            CHECK_CU(launch(k_tanh, cs, pt));
        }
        CHECK_CU(cuEventRecord(ev[s + 1], cs));
        stats(get_stats, &st[s + 1]);
    }
    uint64_t bytes = (uint64_t)d * 4;
    void *pc[] = { &out, &x, &bytes };
    CHECK_CU(launch(k_sum, cs, pc));
    uint64_t sum = 0;
    CHECK_CU(cuMemcpyDtoHAsync(&sum, out, 8, cs));
    CHECK_CU(cuStreamSynchronize(cs));
    CHECK_CU(cuCtxSynchronize());
    mem_line("end");

    for (int s = 0; s < steps; s++) {
        float ms = 0;
        CHECK_CU(cuEventElapsedTime(&ms, ev[s], ev[s + 1]));
        printf("step %d ms=%.6f page_in_bytes=%llu writeback_bytes=%llu page_ins=%llu evictions=%llu\n", s,
               (double)ms, (unsigned long long)(st[s + 1].page_in_bytes - st[s].page_in_bytes),
               (unsigned long long)(st[s + 1].writeback_bytes - st[s].writeback_bytes),
               (unsigned long long)(st[s + 1].page_ins - st[s].page_ins),
               (unsigned long long)(st[s + 1].evictions - st[s].evictions));
    }
    float *xf = malloc((size_t)d * 4);
    CHECK(xf);
    CHECK_CU(cuMemcpyDtoH(xf, x, (size_t)d * 4));
    printf("checksum=0x%016llx host_fnv=0x%016llx shim_stats=%d\n", (unsigned long long)sum,
           (unsigned long long)fnv(xf, (size_t)d * 4), get_stats != NULL);

    /* ---- teardown ---- */
    for (int b = 0; b < nblocks; b++)
        for (int i = 0; i < nt; i++) {
            if (async_mode)
                CHECK_CU(cuMemFreeAsync(W[(size_t)b * nt + i], cs));
            else
                CHECK_CU(cuMemFree(W[(size_t)b * nt + i]));
        }
    CHECK_CU(cuStreamSynchronize(cs));
    CHECK_CU(cuMemFree(x));
    CHECK_CU(cuMemFree(y));
    CHECK_CU(cuMemFree(out));
    for (int s = 0; s <= steps; s++)
        CHECK_CU(cuEventDestroy(ev[s]));
    if (stage)
        CHECK_CU(cuMemFreeHost(stage));
    CHECK_CU(cuStreamDestroy(cs));
    CHECK_CU(cuStreamDestroy(xs));
    if (staging_probe)
        run_staging_probe(wfile ? wfile : write_weights(block_bytes), (size_t)nblocks * block_bytes);
    return 0;
}
