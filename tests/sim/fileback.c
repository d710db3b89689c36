/* sim: weights backed by the file they were loaded from. A small WAN-like stack (a
 * 4 MiB embedding, 8 blocks of 2, 2, 3 and 4 MiB float32 weights, a 4 MiB head, each its
 * own cuMemAlloc) is written to a temporary file, mapped MAP_PRIVATE, every weight
 * uploaded with cuMemcpyHtoD from the mapping, the mapping unmapped and the file closed;
 * then 3 steps over the blocks. Prints the final checksum on stdout (identical with and
 * without the shim) and, under the shim, checks blockswap's counters.
 *
 * argv[1], the mode:
 *   file        the mapping PROT_READ
 *   file-rw     the mapping PROT_READ|PROT_WRITE (as safetensors maps), nothing written
 *   patch       as file, and block 7's 3 MiB weight changed in place by a kernel in step 1
 *   dirty-page  the writable mapping, one byte of block 7's 3 MiB weight written before
 *               the upload: that weight is not the file's bytes
 *   fdlimit     as file, with RLIMIT_NOFILE lowered during the upload so that no file
 *               descriptor can be opened
 *   truncate    after the first step the file is cut to half its size
 *   rewrite     after the first step the second half is rewritten in place and the
 *               mtime set 2 s ahead
 *   two-step    each weight first uploaded from zeroed anonymous memory, then from the
 *               mapping over it (ComfyUI moves its empty parameters to the GPU, then
 *               loads the checkpoint into them)
 * argv[2], what the counters must say under the shim at the end:
 *   file   no host backing; file-backed bytes; bytes read back from the file
 *   anon   host backing; nothing file-backed
 *   one    host backing of exactly one weight (block 7's 3 MiB one, 4 MiB padded),
 *          no longer counted as file-backed; the rest file-backed and read back
 *   error  a read of the file failed, and a launch or synchronisation said so
 * The shim's run swaps the last blocks (BLOCKSWAP_SWAP_PLACEMENT=last), so block 7 is
 * one of them. In truncate and rewrite modes stdout has the checksum after the first
 * step and a line saying the run stopped, in both runs: the reference run (no shim)
 * does not notice the change, its copies being its own; under the shim a later step
 * must fail rather than compute with other bytes, and the final checksum is printed
 * only when every step succeeded. */
#include "kit.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define MiB (1024ull * 1024)
#define NB 8
#define NW 4

static const size_t wsize[NW] = { 2 * MiB, 2 * MiB, 3 * MiB, 4 * MiB };
static char path[4096];

static void remove_file(void)
{
    if (path[0])
        unlink(path);
}

static void fill(float *h, size_t bytes, uint32_t seed)
{
    for (size_t i = 0; i < bytes / 4; i++)
        h[i] = (float)((seed * 2654435761u + (uint32_t)i * 40503u) % 1000) / 1000.0f - 0.5f;
}

/* The lowest file descriptor number not in use. */
static int lowest_free_fd(void)
{
    int fd = dup(0);
    CHECK(fd >= 0);
    close(fd);
    return fd;
}

int main(int argc, char **argv)
{
    CHECK(argc > 2);
    const char *mode = argv[1], *expect = argv[2];
    bool writable = !strcmp(mode, "file-rw") || !strcmp(mode, "dirty-page");
    bool patch = !strcmp(mode, "patch"), dirty = !strcmp(mode, "dirty-page");
    bool fdlimit = !strcmp(mode, "fdlimit");
    bool truncate_ = !strcmp(mode, "truncate"), rewrite = !strcmp(mode, "rewrite");
    bool changes = truncate_ || rewrite, two_step = !strcmp(mode, "two-step");
    CHECK(writable || patch || fdlimit || changes || two_step || !strcmp(mode, "file"));
    struct kit k;
    kit_init(&k);
    CUfunction gemv = kit_fn(&k, "bs_gemv_f32"), axpy = kit_fn(&k, "bs_axpy_f32");
    CUfunction tanh_f = kit_fn(&k, "bs_tanh_f32"), sum = kit_fn(&k, "bs_checksum_u64");
    CUfunction sleep_f = kit_fn(&k, "bs_sleep");
    int (*stats_fn)(struct blockswap_stats *) =
        (int (*)(struct blockswap_stats *))dlsym(RTLD_DEFAULT, "blockswap_get_stats");

    /* The file: embedding, the blocks in order, head. */
    enum { NT = 2 + NB * NW };
    size_t size[NT], off[NT], total = 0;
    for (int t = 0; t < NT; t++) {
        size[t] = t == 0 || t == NT - 1 ? 4 * MiB : wsize[(t - 1) % NW];
        off[t] = total;
        total += size[t];
    }
    const char *dir = getenv("TMPDIR");
    snprintf(path, sizeof(path), "%s/bs-fileback-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    atexit(remove_file);
    float *h = malloc(4 * MiB);
    CHECK(h != NULL);
    for (int t = 0; t < NT; t++) {
        fill(h, size[t], t == NT - 1 ? 99u : (uint32_t)(t + 1));
        CHECK(pwrite(fd, h, size[t], (off_t)off[t]) == (ssize_t)size[t]);
    }
    free(h);
    CHECK(fsync(fd) == 0);

    char *map = mmap(NULL, total, PROT_READ | (writable ? PROT_WRITE : 0), MAP_PRIVATE, fd, 0);
    CHECK(map != MAP_FAILED);
    const int dirty_t = 1 + 7 * NW + 2; /* block 7's 3 MiB weight */
    if (dirty)
        map[off[dirty_t] + 12345] ^= 0x40; /* a copy-on-write page: no longer the file's */
    CHECK(close(fd) == 0);

    struct rlimit saved;
    if (fdlimit) { /* no descriptor can be opened while loading */
        CHECK(getrlimit(RLIMIT_NOFILE, &saved) == 0);
        struct rlimit low = saved;
        low.rlim_cur = (rlim_t)lowest_free_fd();
        CHECK(setrlimit(RLIMIT_NOFILE, &low) == 0);
    }
    CUdeviceptr wt[NT];
    char *zeros = two_step ? calloc(1, 4 * MiB) : NULL;
    CHECK(!two_step || zeros);
    for (int t = 0; t < NT; t++) {
        CHECK_CU(cuMemAlloc(&wt[t], size[t]));
        if (two_step)
            CHECK_CU(cuMemcpyHtoD(wt[t], zeros, size[t]));
        CHECK_CU(cuMemcpyHtoD(wt[t], map + off[t], size[t]));
    }
    free(zeros);
    if (fdlimit)
        CHECK(setrlimit(RLIMIT_NOFILE, &saved) == 0);
    CHECK(munmap(map, total) == 0);

    CUdeviceptr x, y, out;
    CHECK_CU(cuMemAlloc(&x, 4096));
    CHECK_CU(cuMemAlloc(&y, 4096));
    CHECK_CU(cuMemAlloc(&out, 8));
    CHECK_CU(cuMemsetD32(x, 0x3c23d70a, 1024)); /* 0.01f */

    uint32_t rows = 16, cols = 1024;
    uint64_t n = 16, ns = 200000, bytes = 4096, cnt = 1024, hsum;
    float a = 0.5f;
    CUresult err = CUDA_SUCCESS;
    for (int s = 0; s < 3 && err == CUDA_SUCCESS; s++) {
        if (s == 1 && changes) {
            int wfd = open(path, O_RDWR);
            CHECK(wfd >= 0);
            if (truncate_) {
                CHECK(ftruncate(wfd, (off_t)(total / 2)) == 0);
            } else {
                char *z = calloc(1, total / 2);
                CHECK(z != NULL);
                CHECK(pwrite(wfd, z, total / 2, (off_t)(total / 2)) == (ssize_t)(total / 2));
                free(z);
                struct stat st;
                CHECK(fstat(wfd, &st) == 0);
                struct timespec ts[2] = { st.st_atim, st.st_mtim };
                ts[1].tv_sec += 2;
                CHECK(futimens(wfd, ts) == 0);
            }
            CHECK(close(wfd) == 0);
        }
        for (int t = 0; t < NT && err == CUDA_SUCCESS; t++) {
            void *gp[] = { &y, &wt[t], &x, &rows, &cols };
            void *tp[] = { &y, &n };
            void *sp[] = { &ns };
            if ((err = kit_launch(gemv, NULL, gp)) != CUDA_SUCCESS ||
                (err = kit_launch(tanh_f, NULL, tp)) != CUDA_SUCCESS ||
                (err = kit_launch(sleep_f, NULL, sp)) != CUDA_SUCCESS)
                break;
            CUdeviceptr tmp = x; x = y; y = tmp;
        }
        if (s == 1 && patch && err == CUDA_SUCCESS) { /* a LoRA-like patch in place */
            void *ap[] = { &wt[dirty_t], &x, &a, &cnt };
            err = kit_launch(axpy, NULL, ap);
        }
        if (err == CUDA_SUCCESS)
            err = cuCtxSynchronize();
        if (s == 0 && changes && err == CUDA_SUCCESS) {
            void *cp[] = { &out, &x, &bytes };
            CHECK_CU(kit_launch(sum, NULL, cp));
            CHECK_CU(cuMemcpyDtoH(&hsum, out, 8));
            printf("first step: checksum 0x%016llx\n", (unsigned long long)hsum);
        }
    }
    if (changes) {
        /* The reference run has its own copies; under the shim the change must stop it. */
        printf("the weights' file changed: stopped\n");
        if (stats_fn) {
            fprintf(stderr, "the run stopped with CUresult %d\n", (int)err);
            CHECK(err != CUDA_SUCCESS);
        }
    } else {
        CHECK_CU(err);
        void *cp[] = { &out, &x, &bytes };
        CHECK_CU(kit_launch(sum, NULL, cp));
        CHECK_CU(cuMemcpyDtoH(&hsum, out, 8));
        printf("checksum 0x%016llx\n", (unsigned long long)hsum);
    }
    fflush(stdout);

    if (stats_fn) {
        struct blockswap_stats st;
        CHECK(stats_fn(&st) == 0);
        fprintf(stderr, "blocks %llu swapped %llu; host backing %llu (pinned %llu), "
                "file-backed %llu in %llu files, read back %llu, read errors %llu, "
                "staging %llu, loaded direct %llu\n",
                (unsigned long long)st.blocks, (unsigned long long)st.blocks_swapped,
                (unsigned long long)st.host_backing_bytes,
                (unsigned long long)st.host_pinned_bytes,
                (unsigned long long)st.host_file_backed_bytes,
                (unsigned long long)st.files_held, (unsigned long long)st.file_read_bytes,
                (unsigned long long)st.file_read_errors,
                (unsigned long long)st.host_staging_bytes,
                (unsigned long long)st.load_direct_bytes);
        CHECK(st.blocks == NB && st.blocks_swapped > 0);
        if (!strcmp(expect, "file")) {
            /* Weights out of VRAM read back from the file: the bytes loaded. */
            int (*resident)(uint64_t) =
                (int (*)(uint64_t))dlsym(RTLD_DEFAULT, "blockswap_is_resident");
            float *want = malloc(4 * MiB), *got = malloc(4 * MiB);
            CHECK(want && got);
            int out_of_vram = 0;
            for (int t = 0; t < NT; t++) {
                if (resident(wt[t]) != 0)
                    continue;
                out_of_vram++;
                fill(want, size[t], t == NT - 1 ? 99u : (uint32_t)(t + 1));
                CHECK_CU(cuMemcpyDtoH(got, wt[t], size[t]));
                CHECK(memcmp(want, got, size[t]) == 0);
            }
            CHECK(out_of_vram > 0);
            free(want);
            free(got);
            CHECK_EQ_U64(st.host_backing_bytes, 0);
            CHECK_EQ_U64(st.host_file_backed_bytes, total);
            CHECK(st.files_held == 1);
            CHECK(st.file_read_bytes > 0);
            CHECK_EQ_U64(st.file_read_errors, 0);
        } else if (!strcmp(expect, "anon")) {
            CHECK(st.host_backing_bytes > 0);
            CHECK_EQ_U64(st.host_file_backed_bytes, 0);
            CHECK_EQ_U64(st.files_held, 0);
            CHECK_EQ_U64(st.file_read_bytes, 0);
        } else if (!strcmp(expect, "one")) {
            CHECK_EQ_U64(st.host_backing_bytes, 4 * MiB);
            CHECK_EQ_U64(st.host_file_backed_bytes, total - size[dirty_t]); /* it left */
            CHECK(st.file_read_bytes > 0);
            CHECK_EQ_U64(st.file_read_errors, 0);
        } else {
            CHECK(!strcmp(expect, "error"));
            CHECK(st.file_read_errors > 0);
        }
    }
    return 0;
}
