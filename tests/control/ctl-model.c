/* control: a small transformer under blockswap that a test drives through stdin while
 * blockswapctl talks to it. An 8 MiB embedding, 8 blocks of three 4 MiB and one 6 MiB
 * weights (detected as blocks), an 8 MiB head, and a 2 MiB buffer pinned with
 * blockswap_pin. Commands, one per line, each answered with one line on stdout:
 *   steps N   run N steps over the blocks; prints the activations' checksum
 *   verify    prints the checksum of every weight (they must survive evict and trim)
 *   stats     blockswap's counters (under the shim only)
 *   fork      a child that exits at once (running atexit handlers) must leave the
 *             parent's control socket alone
 *   quit
 * With --setuid UID it runs as that user (the test of refusing another user). */
#include "kit.h"

#include <grp.h>
#include <sys/wait.h>
#include <unistd.h>

#define MiB (1024ull * 1024)
#define NB 8

static CUdeviceptr alloc_loaded(size_t bytes, uint32_t seed)
{
    CUdeviceptr p;
    CHECK_CU(cuMemAlloc(&p, bytes));
    float *h = malloc(bytes);
    CHECK(h != NULL);
    for (size_t i = 0; i < bytes / 4; i++)
        h[i] = (float)((seed * 2654435761u + (uint32_t)i * 40503u) % 1000) / 1000.0f - 0.5f;
    CHECK_CU(cuMemcpyHtoD(p, h, bytes));
    free(h);
    return p;
}

static struct {
    CUfunction gemv, axpy, tanh_f, sum, sleep_f;
    CUdeviceptr embed, w[NB][4], head, pinned, x, y, out;
    int steps;
} g;

static uint64_t checksum(CUdeviceptr p, uint64_t bytes)
{
    uint64_t h;
    void *cp[] = { &g.out, &p, &bytes };
    CHECK_CU(kit_launch(g.sum, NULL, cp));
    CHECK_CU(cuMemcpyDtoH(&h, g.out, 8));
    return h;
}

static void step(void)
{
    uint32_t rows = 16, cols = 1024;
    uint64_t n = 16, ns = 50000, cnt = 1024;
    float a = 0.5f, one = 1.0f;
    CUdeviceptr seq[2 + NB * 4];
    int k = 0;
    seq[k++] = g.embed;
    for (int b = 0; b < NB; b++)
        for (int m = 0; m < 4; m++)
            seq[k++] = g.w[b][m];
    seq[k++] = g.head;
    for (int i = 0; i < k; i++) {
        void *gp[] = { &g.y, &seq[i], &g.x, &rows, &cols };
        CHECK_CU(kit_launch(g.gemv, NULL, gp));
        void *tp[] = { &g.y, &n };
        CHECK_CU(kit_launch(g.tanh_f, NULL, tp));
        void *sp[] = { &ns };
        CHECK_CU(kit_launch(g.sleep_f, NULL, sp));
        CUdeviceptr t = g.x;
        g.x = g.y;
        g.y = t;
    }
    /* The pinned buffer accumulates the activations; a weight of a resident block and
     * one of a swapped block are patched in place now and then (a LoRA). */
    void *pp[] = { &g.pinned, &g.x, &one, &cnt };
    CHECK_CU(kit_launch(g.axpy, NULL, pp));
    if (g.steps % 3 == 1) {
        void *ap[] = { &g.w[1][2], &g.x, &a, &cnt };
        CHECK_CU(kit_launch(g.axpy, NULL, ap));
        void *bp[] = { &g.w[6][3], &g.x, &a, &cnt };
        CHECK_CU(kit_launch(g.axpy, NULL, bp));
    }
    g.steps++;
}

int main(int argc, char **argv)
{
    if (argc > 2 && strcmp(argv[1], "--setuid") == 0) {
        uid_t u = (uid_t)atoi(argv[2]);
        CHECK(setgroups(0, NULL) == 0 && setgid(u) == 0 && setuid(u) == 0);
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct kit k;
    kit_init(&k);
    g.gemv = kit_fn(&k, "bs_gemv_f32");
    g.axpy = kit_fn(&k, "bs_axpy_f32");
    g.tanh_f = kit_fn(&k, "bs_tanh_f32");
    g.sum = kit_fn(&k, "bs_checksum_u64");
    g.sleep_f = kit_fn(&k, "bs_sleep");

    g.embed = alloc_loaded(8 * MiB, 1);
    for (int b = 0; b < NB; b++)
        for (int m = 0; m < 4; m++)
            g.w[b][m] = alloc_loaded(m < 3 ? 4 * MiB : 6 * MiB, (uint32_t)(10 * b + m + 2));
    g.head = alloc_loaded(8 * MiB, 99);
    CHECK_CU(cuMemAlloc(&g.pinned, 2 * MiB));
    CHECK_CU(cuMemsetD32(g.pinned, 0, 2 * MiB / 4));
    int (*pin)(uint64_t, int) = (int (*)(uint64_t, int))dlsym(RTLD_DEFAULT, "blockswap_pin");
    if (pin)
        CHECK(pin(g.pinned, 1) == 0);
    CHECK_CU(cuMemAlloc(&g.x, 4096));
    CHECK_CU(cuMemAlloc(&g.y, 4096));
    CHECK_CU(cuMemAlloc(&g.out, 8));
    CHECK_CU(cuMemsetD32(g.x, 0x3c23d70a, 1024)); /* 0.01f */
    printf("ready\n");

    char line[128];
    while (fgets(line, sizeof(line), stdin)) {
        int n;
        if (sscanf(line, "steps %d", &n) == 1) {
            for (int i = 0; i < n; i++)
                step();
            printf("checksum 0x%016llx after %d steps\n",
                   (unsigned long long)checksum(g.x, 4096), g.steps);
        } else if (strncmp(line, "verify", 6) == 0) {
            uint64_t h = checksum(g.embed, 8 * MiB) ^ checksum(g.head, 8 * MiB) * 3;
            for (int b = 0; b < NB; b++)
                for (int m = 0; m < 4; m++)
                    h = h * 31 + checksum(g.w[b][m], m < 3 ? 4 * MiB : 6 * MiB);
            h = h * 31 + checksum(g.pinned, 2 * MiB);
            printf("weights 0x%016llx\n", (unsigned long long)h);
        } else if (strncmp(line, "stats", 5) == 0) {
            void *api = dlsym(RTLD_DEFAULT, "blockswap_get_stats");
            struct blockswap_stats st;
            memset(&st, 0, sizeof(st));
            if (api)
                CHECK(((int (*)(struct blockswap_stats *))api)(&st) == 0);
            printf("stats blocks %llu swapped %llu resident %llu host %llu\n",
                   (unsigned long long)st.blocks, (unsigned long long)st.blocks_swapped,
                   (unsigned long long)st.resident_bytes,
                   (unsigned long long)st.host_backing_bytes);
        } else if (strncmp(line, "fork", 4) == 0) {
            pid_t c = fork();
            CHECK(c >= 0);
            if (c == 0)
                exit(0); /* atexit handlers run in the child */
            int status;
            CHECK(waitpid(c, &status, 0) == c && WIFEXITED(status) && WEXITSTATUS(status) == 0);
            printf("forked\n");
        } else if (strncmp(line, "quit", 4) == 0) {
            break;
        } else {
            printf("unknown command\n");
        }
    }
    return 0;
}
