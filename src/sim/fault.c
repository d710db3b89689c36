/* Fault injection: CUDASIM_FAIL=call:n[,call:n...] makes the n-th use of an exported
 * entry point fail before it does anything, with the error a driver gives for that
 * kind of call. Every entry point counts its uses (lock-free, so the calls that take
 * no lock count too); the report lists the counts, which is how a test learns every
 * failure point a program has. */
#include "sim.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FAULTS_MAX 32

static const char *const names[] = {
#define SIM_API(base, ver, sym, var) #sym,
#include "exports.def"
#undef SIM_API
};
#define NAMES (sizeof(names) / sizeof(names[0]))

struct fault {
    int id;
    uint64_t n;
    bool from_on; /* "call:n+": the n-th use and every later one */
};

static uint64_t uses[NAMES];
static struct fault faults[FAULTS_MAX];
static int nfaults;
static uint64_t injected;
static pthread_once_t parse_once = PTHREAD_ONCE_INIT;

static int name_id(const char *s, size_t len)
{
    for (size_t i = 0; i < NAMES; i++)
        if (strlen(names[i]) == len && memcmp(names[i], s, len) == 0)
            return (int)i;
    return -1;
}

/* Strict: every item is an exported symbol, a colon and a positive decimal count,
 * optionally followed by '+'. Fills out[] and returns the count, or -EINVAL. */
static int fault_parse(const char *spec, struct fault *out, int max)
{
    int n = 0;
    const char *p = spec;
    if (!*p)
        return 0;
    for (;;) {
        const char *colon = strchr(p, ':'), *comma = strchr(p, ',');
        if (!colon || (comma && comma < colon) || n == max)
            return -EINVAL;
        int id = name_id(p, (size_t)(colon - p));
        const char *q = colon + 1;
        if (id < 0 || *q < '1' || *q > '9')
            return -EINVAL;
        uint64_t v = 0;
        for (; *q >= '0' && *q <= '9'; q++) {
            if (v > (UINT64_MAX - 9) / 10)
                return -EINVAL;
            v = v * 10 + (uint64_t)(*q - '0');
        }
        bool from_on = *q == '+';
        q += from_on;
        if (*q != ',' && *q != '\0')
            return -EINVAL;
        out[n++] = (struct fault){ .id = id, .n = v, .from_on = from_on };
        if (!*q)
            return n;
        p = q + 1;
    }
}

static void parse_env(void)
{
    const char *v = getenv("CUDASIM_FAIL");
    if (!v)
        return;
    int n = fault_parse(v, faults, FAULTS_MAX);
    if (n < 0) {
        cudasim_warn("CUDASIM_FAIL=\"%s\" is not valid: expected call:n[,call:n...] with an "
                     "exported cu* symbol and a use count from 1, optionally n+ for every use "
                     "from the n-th on (at most %d items); injecting nothing", v, FAULTS_MAX);
        return;
    }
    nfaults = n;
}

/* What a driver answers when such a call cannot be carried out. */
static CUresult error_for(const char *sym)
{
    static const char *const host[] = { "cuMemHostAlloc", "cuMemAllocHost", "cuMemHostRegister" };
    static const char *const oom[] = { "cuMemAlloc", "cuMemCreate", "cuMemMap", "cuMemSetAccess",
                                       "cuMemAddressReserve", "cuMemPoolCreate", "cuStreamCreate",
                                       "cuEventCreate", "cuModuleLoad", "cuCtxCreate",
                                       "cuDevicePrimaryCtxRetain", "cuGraphInstantiate" };
    for (size_t i = 0; i < sizeof(host) / sizeof(host[0]); i++)
        if (strncmp(sym, host[i], strlen(host[i])) == 0)
            return CUDA_ERROR_OUT_OF_MEMORY; /* pinned host memory could not be had */
    for (size_t i = 0; i < sizeof(oom) / sizeof(oom[0]); i++)
        if (strncmp(sym, oom[i], strlen(oom[i])) == 0)
            return CUDA_ERROR_OUT_OF_MEMORY;
    if (strncmp(sym, "cuLaunch", 8) == 0)
        return CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES;
    /* Copies, memsets and the rest: an error that does not end the context, so the
     * caller can go on (a sticky one would end every test at the same point). */
    return CUDA_ERROR_UNKNOWN;
}

static CUresult use(int *cached_id, const char *sym, bool charge)
{
    int id = __atomic_load_n(cached_id, __ATOMIC_RELAXED);
    if (id < 0) {
        id = name_id(sym, strlen(sym));
        if (id < 0)
            return CUDA_SUCCESS; /* not an export: cannot happen for driver.c's names */
        __atomic_store_n(cached_id, id, __ATOMIC_RELAXED);
    }
    pthread_once(&parse_once, parse_env);
    uint64_t use = __atomic_add_fetch(&uses[id], 1, __ATOMIC_RELAXED);
    /* An accepted call costs the host its time, whether or not it is made to fail. */
    if (charge && G.initialized)
        cudasim_charge_call(id);
    for (int i = 0; i < nfaults; i++) {
        const struct fault *f = &faults[i];
        if (f->id == id && (use == f->n || (f->from_on && use > f->n))) {
            CUresult r = error_for(sym);
            const char *en = "?";
            cudasim_error_name(r, &en);
            __atomic_add_fetch(&injected, 1, __ATOMIC_RELAXED);
            fprintf(stderr, "cudasim: injected failure: use %llu of %s returns %s (CUDASIM_FAIL)\n",
                    (unsigned long long)use, sym, en);
            return r;
        }
    }
    return CUDA_SUCCESS;
}

CUresult cudasim_fault(int *cached_id, const char *sym) { return use(cached_id, sym, false); }

CUresult cudasim_call(int *cached_id, const char *sym) { return use(cached_id, sym, true); }

/* A forked child counts its own uses from zero, as a fresh process would. */
void cudasim_fault_reset_counts(void)
{
    memset(uses, 0, sizeof(uses));
    injected = 0;
    cudasim_clock_reset_counts();
}

void cudasim_fault_report(FILE *f)
{
    fprintf(f, "  \"injected_failures\": %llu,\n", (unsigned long long)injected);
    fprintf(f, "  \"calls\": {");
    const char *sep = "";
    for (size_t i = 0; i < NAMES; i++) {
        uint64_t u = __atomic_load_n(&uses[i], __ATOMIC_RELAXED);
        if (!u)
            continue;
        fprintf(f, "%s\n    \"%s\": %llu", sep, names[i], (unsigned long long)u);
        sep = ",";
    }
    fprintf(f, "%s},\n", *sep ? "\n  " : "");
}
