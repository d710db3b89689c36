/* Host virtual time: each thread has its own clock, so virtual times do not depend on
 * how the OS interleaves threads; and the host cost model charges each call to the
 * thread that makes it.
 *
 * determinism: two threads, run one after the other in both orders and concurrently
 * with yields. Thread A copies on its stream and, with its clock far ahead after a
 * long wait, puts a 1 ms kernel on a stream it shares with B; thread B, whose clock
 * stays near zero, runs short kernels on its own stream, synchronising after each, and
 * one on the shared stream. Every event time and the report's times must be the same
 * in every run: B's waits must not move A's clock (a single host clock would start A's
 * copies after B's waits when B runs first), and A's kernel, issued later in virtual
 * time, must not delay B's on the shared stream when the lock happens to admit A first.
 *
 * costs: a launch advances its thread's clock by CUDASIM_COST_LAUNCH and a cuMemCreate
 * by the fixed part plus the part per 2 MiB of CUDASIM_COST_MEM_CREATE, both listed
 * in host_ns_by_call; zeroed variables charge nothing; the defaults are on; a per-size
 * part is refused for a launch; CUDASIM_HOST_CPU=1 charges measured CPU time and says
 * the result is not deterministic. */
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <time.h>

#include "simtest.h"

/* ---- determinism ------------------------------------------------------------------ */

enum { NCOPY = 8, NB = 8, COPY_BYTES = 1000 * 1000 };

static CUcontext ctx;
static CUstream sa, sb, shared;
static CUevent start, ea[NCOPY + 2], eb[NB + 1];
static void *host;
static CUdeviceptr dev;
static int yield_a, yield_b;

static void maybe_yield(int on)
{
    if (on) {
        struct timespec ts = {0, 200 * 1000};
        nanosleep(&ts, NULL);
        sched_yield();
    }
}

static void *thread_a(void *arg)
{
    (void)arg;
    CHECK_CU(cuCtxSetCurrent(ctx));
    for (int i = 0; i < NCOPY; i++) {
        CHECK_CU(cuMemcpyHtoDAsync(dev + (CUdeviceptr)i * COPY_BYTES, host, COPY_BYTES, sa));
        CHECK_CU(cuEventRecord(ea[i], sa));
        maybe_yield(yield_a);
    }
    /* A long wait puts A's clock far ahead of B's; then 1 ms on the shared stream. */
    uint64_t long_ns = 10 * 1000 * 1000, ms = 1000 * 1000;
    CHECK_CU(st_launch("bs_sleep", sa, 1, &long_ns));
    CHECK_CU(cuEventRecord(ea[NCOPY], sa));
    CHECK_CU(cuEventSynchronize(ea[NCOPY]));
    CHECK_CU(st_launch("bs_sleep", shared, 1, &ms));
    CHECK_CU(cuEventRecord(ea[NCOPY + 1], shared));
    return NULL;
}

static void *thread_b(void *arg)
{
    (void)arg;
    CHECK_CU(cuCtxSetCurrent(ctx));
    uint64_t ns = 50 * 1000;
    for (int i = 0; i < NB; i++) {
        CHECK_CU(st_launch("bs_sleep", sb, 1, &ns));
        CHECK_CU(cuEventRecord(eb[i], sb));
        CHECK_CU(cuEventSynchronize(eb[i]));
        maybe_yield(yield_b);
    }
    CHECK_CU(st_launch("bs_sleep", shared, 1, &ns));
    CHECK_CU(cuEventRecord(eb[NB], shared));
    CHECK_CU(cuEventSynchronize(eb[NB]));
    return NULL;
}

/* order: 0 concurrent, 1 A then B, 2 B then A. Prints every event's time. */
static void two_threads(int order)
{
    ctx = st_setup();
    CHECK_CU(cuStreamCreate(&sa, CU_STREAM_NON_BLOCKING));
    /* Raised priority: their kernels queue behind nothing but their stream (as on the
     * shim's eviction stream), so only stream order can delay them; A's long kernel
     * has the compute engine's queue to itself. */
    CHECK_CU(cuStreamCreateWithPriority(&sb, CU_STREAM_NON_BLOCKING, -1));
    CHECK_CU(cuStreamCreateWithPriority(&shared, CU_STREAM_NON_BLOCKING, -1));
    CHECK_CU(cuEventCreate(&start, 0));
    for (int i = 0; i < NCOPY + 2; i++)
        CHECK_CU(cuEventCreate(&ea[i], 0));
    for (int i = 0; i < NB + 1; i++)
        CHECK_CU(cuEventCreate(&eb[i], 0));
    CHECK_CU(cuMemAllocHost(&host, COPY_BYTES));
    CHECK_CU(cuMemAlloc(&dev, (size_t)NCOPY * COPY_BYTES));
    CHECK_CU(cuEventRecord(start, sa));
    (void)st_kernel("bs_sleep"); /* loaded here, not in whichever thread comes first */
    pthread_t a, b;
    yield_a = order == 0;
    yield_b = order == 0;
    if (order == 0) {
        CHECK(pthread_create(&a, NULL, thread_a, NULL) == 0);
        CHECK(pthread_create(&b, NULL, thread_b, NULL) == 0);
        pthread_join(a, NULL);
        pthread_join(b, NULL);
    } else if (order == 1) {
        CHECK(pthread_create(&a, NULL, thread_a, NULL) == 0);
        pthread_join(a, NULL);
        CHECK(pthread_create(&b, NULL, thread_b, NULL) == 0);
        pthread_join(b, NULL);
    } else {
        CHECK(pthread_create(&b, NULL, thread_b, NULL) == 0);
        pthread_join(b, NULL);
        CHECK(pthread_create(&a, NULL, thread_a, NULL) == 0);
        pthread_join(a, NULL);
    }
    CHECK_CU(cuCtxSynchronize());
    for (int i = 0; i < NCOPY + 2; i++) {
        float ms;
        CHECK_CU(cuEventElapsedTime(&ms, start, ea[i]));
        fprintf(stderr, "EVENT a%d %.6f\n", i, ms);
    }
    for (int i = 0; i < NB + 1; i++) {
        float ms;
        CHECK_CU(cuEventElapsedTime(&ms, start, eb[i]));
        fprintf(stderr, "EVENT b%d %.6f\n", i, ms);
    }
}
static void run_concurrent(void) { two_threads(0); }
static void run_a_first(void) { two_threads(1); }
static void run_b_first(void) { two_threads(2); }

/* The EVENT lines and the report's times of one run, as one string. */
static void summary(const struct st_child *c, char *out, size_t len)
{
    size_t n = 0;
    out[0] = '\0';
    for (const char *p = strstr(c->err, "EVENT "); p; p = strstr(p + 1, "EVENT ")) {
        const char *eol = strchr(p, '\n');
        size_t l = eol ? (size_t)(eol - p + 1) : strlen(p);
        CHECK(n + l < len);
        memcpy(out + n, p, l);
        n += l;
        out[n] = '\0';
    }
    static const char *const keys[] = {"virtual_time_ns", "host_time_ns", "compute_busy_ns",
                                       "compute_priority_busy_ns", "h2d_busy_ns"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        n += (size_t)snprintf(out + n, len - n, "%s %lld\n", keys[i], st_report_num(c->report, keys[i]));
}

static void determinism(void)
{
    static const char *const modes[] = {"concurrent", "A then B", "B then A"};
    void (*fns[])(void) = {run_concurrent, run_a_first, run_b_first};
    static char first[8192], now[8192];
    for (int round = 0; round < 2; round++)
        for (int m = 0; m < 3; m++) {
            struct st_child c;
            st_run_child(fns[m], NULL, &c);
            CHECK(c.exit_code == 0);
            CHECK(st_report_num(c.report, "errors") == 0);
            summary(&c, round == 0 && m == 0 ? first : now, sizeof(first));
            if (round == 0 && m == 0) {
                fprintf(stderr, "%s:\n%s", modes[m], first);
                continue;
            }
            if (strcmp(first, now) != 0) {
                fprintf(stderr, "%s gives other virtual times than concurrent:\n%s", modes[m], now);
                CHECK(0);
            }
        }
    /* B's kernel on the shared stream did not wait for A's, issued 10 ms later in
     * virtual time although the lock may have admitted it first. */
    const char *p = strstr(first, "EVENT b8 ");
    CHECK(p && atof(p + 9) < 1.0);
}

/* ---- costs -------------------------------------------------------------------------- */

enum { NLAUNCH = 10 };

/* Times, from event records on one stream: NLAUNCH zero-length launches, then one
 * cuMemCreate of 6 MiB. Prints LAUNCHES=ms CREATE=ms. */
static void cost_scenario(void)
{
    st_setup();
    CUstream s;
    CUevent e0, e1, e2;
    CHECK_CU(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
    CHECK_CU(cuEventCreate(&e0, 0));
    CHECK_CU(cuEventCreate(&e1, 0));
    CHECK_CU(cuEventCreate(&e2, 0));
    (void)st_kernel("bs_sleep");
    uint64_t zero = 0;
    CHECK_CU(cuEventRecord(e0, s));
    for (int i = 0; i < NLAUNCH; i++)
        CHECK_CU(st_launch("bs_sleep", s, 1, &zero));
    CHECK_CU(cuEventRecord(e1, s));
    CUmemAllocationProp prop = {0};
    prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    prop.location.id = 0;
    CUmemGenericAllocationHandle h;
    CHECK_CU(cuMemCreate(&h, 6u << 20, &prop, 0));
    CHECK_CU(cuEventRecord(e2, s));
    CHECK_CU(cuStreamSynchronize(s));
    float l, c;
    CHECK_CU(cuEventElapsedTime(&l, e0, e1));
    CHECK_CU(cuEventElapsedTime(&c, e1, e2));
    fprintf(stderr, "LAUNCHES=%.6f CREATE=%.6f\n", l, c);
    CHECK_CU(cuMemRelease(h));
}

static double field(const char *err, const char *key)
{
    const char *p = strstr(err, key);
    CHECK(p);
    return atof(p + strlen(key));
}

/* The value of "name" inside host_ns_by_call, or -1 when not listed. */
static long long by_call(const char *report, const char *name)
{
    const char *p = strstr(report, "\"host_ns_by_call\": {");
    CHECK(p);
    const char *end = strchr(p, '}');
    char pat[96];
    snprintf(pat, sizeof(pat), "\"%s\": ", name);
    const char *q = strstr(p, pat);
    return q && q < end ? strtoll(q + strlen(pat), NULL, 10) : -1;
}

static void burn_cpu(void)
{
    struct timespec a, b;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
    volatile uint64_t x = 0;
    do {
        for (int i = 0; i < 100000; i++)
            x += (uint64_t)i * 3;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
    } while ((b.tv_sec - a.tv_sec) * 1000000000ll + (b.tv_nsec - a.tv_nsec) < 5000000);
}

static void cpu_scenario(void)
{
    st_setup();
    CUstream s;
    CUevent e0, e1;
    CHECK_CU(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
    CHECK_CU(cuEventCreate(&e0, 0));
    CHECK_CU(cuEventCreate(&e1, 0));
    CHECK_CU(cuEventRecord(e0, s));
    burn_cpu(); /* 5 ms of the program's own CPU time between two calls */
    CHECK_CU(cuEventRecord(e1, s));
    CHECK_CU(cuStreamSynchronize(s));
    float ms;
    CHECK_CU(cuEventElapsedTime(&ms, e0, e1));
    fprintf(stderr, "CPU=%.6f\n", ms);
}

static void costs(void)
{
    struct st_child c;
    /* Only the two costs under test, at odd values. */
    const char *const set[] = {"CUDASIM_COSTS=0", "CUDASIM_COST_LAUNCH=7000",
                               "CUDASIM_COST_MEM_CREATE=1000+5000/2M", NULL};
    st_run_child(cost_scenario, set, &c);
    CHECK(c.exit_code == 0);
    fprintf(stderr, "set: %s", strstr(c.err, "LAUNCHES="));
    CHECK(fabs(field(c.err, "LAUNCHES=") - NLAUNCH * 7000 / 1e6) < 1e-6);
    CHECK(fabs(field(c.err, "CREATE=") - (1000 + 3 * 5000) / 1e6) < 1e-6);
    CHECK_EQ_U64(by_call(c.report, "cuLaunchKernel"), NLAUNCH * 7000);
    CHECK_EQ_U64(by_call(c.report, "cuMemCreate"), 1000 + 3 * 5000);
    CHECK(by_call(c.report, "cuEventRecord") == -1); /* zeroed: not charged, not listed */
    CHECK(st_report_num(c.report, "host_time_ns") >= NLAUNCH * 7000 + 16000);
    CHECK(strstr(c.report, "\"deterministic_host_time\": true"));

    /* Everything zero: no time passes on the host, nothing is listed. */
    const char *const zero[] = {"CUDASIM_COST_LAUNCH=0", "CUDASIM_COST_MEM_CREATE=0",
                                "CUDASIM_COST_EVENT=0", "CUDASIM_COST_STREAM=0",
                                "CUDASIM_COST_MEM_RELEASE=0", NULL};
    st_run_child(cost_scenario, zero, &c);
    CHECK(c.exit_code == 0);
    CHECK(field(c.err, "LAUNCHES=") == 0 && field(c.err, "CREATE=") == 0);
    CHECK(strstr(c.report, "\"host_ns_by_call\": {}"));
    CHECK(st_report_num(c.report, "host_time_ns") == 0);

    /* The defaults are on: 3 us per launch, 40 us per 2 MiB created. */
    st_run_child(cost_scenario, NULL, &c);
    CHECK(c.exit_code == 0);
    fprintf(stderr, "defaults: %s", strstr(c.err, "LAUNCHES="));
    CHECK_EQ_U64(by_call(c.report, "cuLaunchKernel"), NLAUNCH * 3000);
    CHECK_EQ_U64(by_call(c.report, "cuMemCreate"), 3 * 40000);
    CHECK(by_call(c.report, "cuEventRecord") == 3 * 1000);
    CHECK(by_call(c.report, "cuMemRelease") == 3 * 10000);

    /* A per-size part makes no sense for a launch: refused, the default applies. */
    const char *const bad[] = {"CUDASIM_COST_LAUNCH=5/2M", NULL};
    st_run_child(cost_scenario, bad, &c);
    CHECK(c.exit_code == 0);
    CHECK(strstr(c.err, "CUDASIM_COST_LAUNCH=\"5/2M\" is not valid"));
    CHECK_EQ_U64(by_call(c.report, "cuLaunchKernel"), NLAUNCH * 3000);

    /* Measured CPU time: opt-in, and labelled as not deterministic. */
    const char *const cpu[] = {"CUDASIM_COSTS=0", "CUDASIM_HOST_CPU=1", NULL};
    st_run_child(cpu_scenario, cpu, &c);
    CHECK(c.exit_code == 0);
    fprintf(stderr, "cpu: %s", strstr(c.err, "CPU="));
    CHECK(field(c.err, "CPU=") >= 4.0);
    CHECK(st_report_num(c.report, "host_cpu_ns") >= 4000000);
    CHECK(strstr(c.report, "\"deterministic_host_time\": false"));
}

int main(int argc, char **argv)
{
    CHECK(argc == 2);
    if (strcmp(argv[1], "determinism") == 0)
        determinism();
    else if (strcmp(argv[1], "costs") == 0)
        costs();
    else
        CHECK(0);
    return 0;
}
