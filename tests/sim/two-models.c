/* sim: two models in turn, as WAN 2.2 runs its HIGH then LOW noise models, then back,
 * then the second unloaded and loaded again several times (multi-loop generation).
 * Each model: an 8 MiB embedding, 8 blocks of three 4 MiB and one 6 MiB matrix, an
 * 8 MiB head. Under a limit that holds one model's working set but not both, the model
 * in use takes the VRAM over without any call from the application. Prints checksums
 * (identical with and without the shim); under the shim, checks that repeated loads
 * leak neither host backing nor VRAM.
 *
 * usage: two-models [heap|file] [DATA_LIMIT]
 *   heap (default)  each tensor from its own malloc'd buffer, then freed;
 *   file            each model's weights written to a file in $TMPDIR (else /tmp),
 *                   mapped MAP_PRIVATE/PROT_READ, each tensor copied from the mapping,
 *                   then unmapped, closed and unlinked (a safetensors load);
 *   DATA_LIMIT      bytes: setrlimit(RLIMIT_DATA) before anything is loaded (Linux >=
 *                   4.7 counts private writable mappings and the heap, not read-only
 *                   file mappings nor shared ones such as the simulator's memfd VRAM;
 *                   the simulator's pinned host memory is anonymous and counts);
 *                   applied under blockswap only. */
#include "kit.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#define MiB (1024ull * 1024)
#define NB 8
#define NW (2 + NB * 4)

struct model {
    CUdeviceptr w[NW];
};

static CUfunction gemv, tanh_f, sum;
static int from_file;

static size_t tensor_bytes(int i)
{
    return i == 0 || i == NW - 1 ? 8 * MiB : (i - 1) % 4 < 3 ? 4 * MiB : 6 * MiB;
}

static void fill(float *h, size_t bytes, uint32_t seed, int i)
{
    for (size_t j = 0; j < bytes / 4; j++)
        h[j] = (float)(((seed + (uint32_t)i) * 2654435761u + (uint32_t)j * 40503u) % 1000) / 1000.0f - 0.5f;
}

static void load(struct model *m, uint32_t seed)
{
    if (from_file) {
        const char *dir = getenv("TMPDIR");
        char path[4096];
        snprintf(path, sizeof(path), "%s/two-models-XXXXXX", dir && *dir ? dir : "/tmp");
        int fd = mkstemp(path);
        CHECK(fd >= 0);
        size_t total = 0;
        for (int i = 0; i < NW; i++) {
            size_t bytes = tensor_bytes(i);
            float *h = malloc(bytes);
            CHECK(h != NULL);
            fill(h, bytes, seed, i);
            CHECK(write(fd, h, bytes) == (ssize_t)bytes);
            free(h);
            total += bytes;
        }
        const unsigned char *map = mmap(NULL, total, PROT_READ, MAP_PRIVATE, fd, 0);
        CHECK(map != MAP_FAILED);
        size_t off = 0;
        for (int i = 0; i < NW; i++) {
            CHECK_CU(cuMemAlloc(&m->w[i], tensor_bytes(i)));
            CHECK_CU(cuMemcpyHtoD(m->w[i], map + off, tensor_bytes(i)));
            off += tensor_bytes(i);
        }
        CHECK(munmap((void *)map, total) == 0);
        CHECK(close(fd) == 0);
        CHECK(unlink(path) == 0);
        return;
    }
    for (int i = 0; i < NW; i++) {
        size_t bytes = tensor_bytes(i);
        CHECK_CU(cuMemAlloc(&m->w[i], bytes));
        float *h = malloc(bytes);
        CHECK(h != NULL);
        fill(h, bytes, seed, i);
        CHECK_CU(cuMemcpyHtoD(m->w[i], h, bytes));
        free(h);
    }
}

static void unload(struct model *m)
{
    for (int i = 0; i < NW; i++)
        CHECK_CU(cuMemFree(m->w[i]));
}

static uint64_t run(struct model *m, int steps, CUdeviceptr x, CUdeviceptr y, CUdeviceptr out)
{
    uint32_t rows = 16, cols = 1024;
    uint64_t n = 16;
    for (int s = 0; s < steps; s++)
        for (int i = 0; i < NW; i++) {
            void *gp[] = { &y, &m->w[i], &x, &rows, &cols };
            CHECK_CU(kit_launch(gemv, NULL, gp));
            void *tp[] = { &y, &n };
            CHECK_CU(kit_launch(tanh_f, NULL, tp));
            CUdeviceptr t = x; x = y; y = t;
        }
    uint64_t bytes = 64, h;
    void *cp[] = { &out, &x, &bytes };
    CHECK_CU(kit_launch(sum, NULL, cp));
    CHECK_CU(cuMemcpyDtoH(&h, out, 8));
    return h;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "heap") && strcmp(argv[1], "file")) {
        fprintf(stderr, "usage: two-models [heap|file] [DATA_LIMIT]\n");
        return 2;
    }
    from_file = argc > 1 && !strcmp(argv[1], "file");
    /* Under blockswap only: without it the simulator's VRAM itself is anonymous memory
     * (the reference run of --compare is not capped). */
    if (argc > 2 && dlsym(RTLD_DEFAULT, "blockswap_get_stats")) {
        struct rlimit rl = { .rlim_cur = strtoull(argv[2], NULL, 0), .rlim_max = strtoull(argv[2], NULL, 0) };
        CHECK(setrlimit(RLIMIT_DATA, &rl) == 0);
        fprintf(stderr, "RLIMIT_DATA %llu\n", (unsigned long long)rl.rlim_cur);
    }
    struct kit k;
    kit_init(&k);
    gemv = kit_fn(&k, "bs_gemv_f32");
    tanh_f = kit_fn(&k, "bs_tanh_f32");
    sum = kit_fn(&k, "bs_checksum_u64");
    CUdeviceptr x, y, out;
    CHECK_CU(cuMemAlloc(&x, 4096));
    CHECK_CU(cuMemAlloc(&y, 4096));
    CHECK_CU(cuMemAlloc(&out, 8));
    CHECK_CU(cuMemsetD32(x, 0x3c23d70a, 1024));

    struct model high, low;
    load(&high, 1);
    printf("high 0x%016llx\n", (unsigned long long)run(&high, 2, x, y, out));
    load(&low, 500);
    printf("low 0x%016llx\n", (unsigned long long)run(&low, 2, x, y, out));
    printf("high again 0x%016llx\n", (unsigned long long)run(&high, 1, x, y, out));

    int (*stats)(struct blockswap_stats *) =
        (int (*)(struct blockswap_stats *))dlsym(RTLD_DEFAULT, "blockswap_get_stats");
    struct blockswap_stats before, after;
    if (stats)
        CHECK(stats(&before) == 0);
    for (int loop = 0; loop < 3; loop++) {
        unload(&low);
        load(&low, 900 + (uint32_t)loop);
        printf("loop %d 0x%016llx\n", loop, (unsigned long long)run(&low, 1, x, y, out));
    }
    if (stats) {
        CHECK(stats(&after) == 0);
        fprintf(stderr, "host backing %llu -> %llu, managed %llu -> %llu, resident %llu, blocks %llu\n",
                (unsigned long long)before.host_backing_bytes,
                (unsigned long long)after.host_backing_bytes,
                (unsigned long long)before.managed_bytes, (unsigned long long)after.managed_bytes,
                (unsigned long long)after.resident_bytes, (unsigned long long)after.blocks);
        CHECK(after.host_backing_bytes <= before.host_backing_bytes); /* no leak */
        CHECK(after.managed_bytes == before.managed_bytes);
        CHECK(after.managed_allocations == before.managed_allocations);
        CHECK(after.resident_bytes <= after.vram_limit);
        CHECK(after.blocks == NB);
    }
    unload(&low);
    unload(&high);
    return 0;
}
