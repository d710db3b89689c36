/* trace-prog: a block stack whose timeline is known exactly on the simulated driver, for
 * the tracing tests.
 *
 * N blocks of W weights (cuMemAlloc, filled from pageable host memory); weight j of a
 * block has (j + 1) * M MiB, so that blocks are told apart by their sizes.
 * Each step runs the blocks in order on one stream; per weight one bs_checksum_u64 over
 * the whole weight into a small per-block result buffer, so every kernel of a block
 * touches that block and lasts (bytes + 8) / CUDASIM_HBM_GBPS. With --write B, step 1
 * also overwrites weight 0 of block B (bs_fill_u32): a weight that must be written back.
 * Prints key=value lines: "sizes ...", then "checksum=0x..." (FNV-1a of all results).
 *
 * usage: trace-prog [--blocks N] [--weights W] [--mib M] [--steps S] [--write B]
 *                   [--summary] (calls blockswap_log_summary() before exiting) */
#include "kit.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int nblocks = 8, nweights = 2, mib = 4, steps = 4, write_block = -1, summary;

static void usage(void)
{
    fprintf(stderr, "usage: trace-prog [--blocks N] [--weights W] [--mib M] [--steps S] "
                    "[--write B] [--summary]\n");
    exit(2);
}

static void parse(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int *dst = !strcmp(a, "--blocks") ? &nblocks : !strcmp(a, "--weights") ? &nweights
                 : !strcmp(a, "--mib") ? &mib : !strcmp(a, "--steps") ? &steps
                 : !strcmp(a, "--write") ? &write_block : NULL;
        if (!strcmp(a, "--summary")) {
            summary = 1;
            continue;
        }
        if (!dst || !v)
            usage();
        *dst = atoi(v);
        i++;
    }
    if (nblocks < 1 || nweights < 1 || mib < 1 || steps < 1)
        usage();
}

int main(int argc, char **argv)
{
    parse(argc, argv);
    struct kit K;
    kit_init(&K);
    CUfunction k_sum = kit_fn(&K, "bs_checksum_u64"), k_fill = kit_fn(&K, "bs_fill_u32");
    size_t unit = (size_t)mib << 20, bytes = unit * (size_t)nweights; /* the largest */
    printf("sizes blocks=%d weights=%d unit_bytes=%zu block_bytes=%zu\n", nblocks,
           nweights, unit, unit * (size_t)(nweights * (nweights + 1) / 2));

    CUdeviceptr *w = calloc((size_t)(nblocks * nweights), sizeof(*w));
    CUdeviceptr *res = calloc((size_t)nblocks, sizeof(*res));
    uint32_t *host = malloc(bytes);
    if (!w || !res || !host)
        return 1;
    for (int b = 0; b < nblocks; b++) {
        CHECK_CU(cuMemAlloc(&res[b], (size_t)nweights * 8));
        for (int j = 0; j < nweights; j++) {
            CUdeviceptr *p = &w[b * nweights + j];
            size_t n = unit * (size_t)(j + 1);
            CHECK_CU(cuMemAlloc(p, n));
            for (size_t i = 0; i < n / 4; i++)
                host[i] = (uint32_t)(i * 2654435761u) ^ (uint32_t)(b * 131 + j);
            CHECK_CU(cuMemcpyHtoD(*p, host, n));
        }
    }

    CUstream s;
    CHECK_CU(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
    uint64_t fnv = 0xcbf29ce484222325ull;
    for (int step = 0; step < steps; step++) {
        for (int b = 0; b < nblocks; b++) {
            if (step == 1 && b == write_block) {
                CUdeviceptr p = w[b * nweights];
                uint32_t val = 0x5eed0000u + (uint32_t)b;
                uint64_t n = unit / 4;
                void *fp[] = { &p, &val, &n };
                CHECK_CU(kit_launch(k_fill, s, fp));
            }
            for (int j = 0; j < nweights; j++) {
                CUdeviceptr out = res[b] + (CUdeviceptr)j * 8, data = w[b * nweights + j];
                uint64_t n = unit * (uint64_t)(j + 1);
                void *sp[] = { &out, &data, &n };
                CHECK_CU(kit_launch(k_sum, s, sp));
            }
        }
        uint64_t r[64];
        for (int b = 0; b < nblocks; b++) {
            int n = nweights < 64 ? nweights : 64;
            CHECK_CU(cuMemcpyDtoHAsync(r, res[b], (size_t)n * 8, s));
            CHECK_CU(cuStreamSynchronize(s));
            for (int j = 0; j < n; j++)
                for (int k = 0; k < 8; k++)
                    fnv = (fnv ^ (r[j] >> (8 * k) & 0xff)) * 0x100000001b3ull;
        }
    }
    printf("checksum=0x%016llx\n", (unsigned long long)fnv);
    fflush(stdout);
    if (summary)
        BS_API_FN(blockswap_log_summary)();
    for (int i = 0; i < nblocks * nweights; i++)
        CHECK_CU(cuMemFree(w[i]));
    for (int b = 0; b < nblocks; b++)
        CHECK_CU(cuMemFree(res[b]));
    CHECK_CU(cuStreamDestroy(s));
    free(w);
    free(res);
    free(host);
    return 0;
}
