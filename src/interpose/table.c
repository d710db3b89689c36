/* interpose/table.c: the real-function table generated from hooks.def, lazy run-once
 * initialisation (config, log, driver resolution), hook lookup by name and by real
 * pointer, and fork handling. The wrappers are hand-written (wrappers.c, copies.c) and
 * the call counters live in track/stats.c; it owns no tracking state. */
#define _GNU_SOURCE
#include "bs.h"

#include <dlfcn.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Declare every wrapper with its real prototype: a definition that disagrees with
 * cudaTypedefs.h (or with cuda.h's own declaration) does not compile. */
#define BS_HOOK(name, pfn) typedef __typeof__(*(pfn)0) bs_fn_##name; BS_EXPORT bs_fn_##name name;
#include "interpose/hooks.def"
#undef BS_HOOK

struct bs_real_table bs_real;
struct bs_driver_table bs_drv;
struct bs_config bs_cfg;
int bs_active_flag;

static const char *const hook_names[BS_HOOK_COUNT] = {
#define BS_HOOK(name, pfn) [BS_ID_##name] = #name,
#include "interpose/hooks.def"
#undef BS_HOOK
};

static void *const hook_wrappers[BS_HOOK_COUNT] = {
#define BS_HOOK(name, pfn) [BS_ID_##name] = (void *)name,
#include "interpose/hooks.def"
#undef BS_HOOK
};

/* The real table viewed as an array indexed by hook id; every member is a
 * function pointer, in hooks.def order. */
static void **real_slot(enum bs_hook_id id)
{
    _Static_assert(sizeof(bs_real) == BS_HOOK_COUNT * sizeof(void *),
                   "bs_real_table must hold one pointer per hook");
    return (void **)&bs_real + id;
}

const char *bs_hook_name(enum bs_hook_id id)
{
    return (unsigned)id < BS_HOOK_COUNT ? hook_names[id] : NULL;
}

void *bs_hook_wrapper(enum bs_hook_id id)
{
    return (unsigned)id < BS_HOOK_COUNT ? hook_wrappers[id] : NULL;
}

int bs_hook_find(const char *name)
{
    /* Every hooked name starts with "cu": reject the rest before any strcmp. */
    if (!name || name[0] != 'c' || name[1] != 'u')
        return -1;
    for (int i = 0; i < BS_HOOK_COUNT; i++)
        if (strcmp(hook_names[i], name) == 0)
            return i;
    return -1;
}

/* ---- real functions ---- */

static void *libcuda;

static void *open_libcuda(void)
{
    void *h = __atomic_load_n(&libcuda, __ATOMIC_ACQUIRE);
    if (h)
        return h;
    /* The same soname the application uses, so LD_LIBRARY_PATH (the simulator)
     * and the system driver resolve exactly as they do for it. */
    h = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_NOLOAD);
    if (!h)
        h = dlopen("libcuda.so.1", RTLD_LAZY);
    if (!h) {
        bs_log_limited(1, BS_LOG_ERROR,
                       "cannot open libcuda.so.1 (%s): no NVIDIA driver found; "
                       "every CUDA call will fail as it would without blockswap",
                       dlerror());
        return NULL;
    }
    void *expected = NULL;
    if (!__atomic_compare_exchange_n(&libcuda, &expected, h, false,
                                     __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        dlclose(h);
        h = expected;
    }
    return h;
}

bool bs_real_adopt(enum bs_hook_id id, void *p)
{
    void *expected = NULL;
    if (__atomic_compare_exchange_n(real_slot(id), &expected, p, false,
                                    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return true;
    return expected == p;
}

void *bs_real_resolve(enum bs_hook_id id)
{
    void *p = __atomic_load_n(real_slot(id), __ATOMIC_ACQUIRE);
    if (p)
        return p;
    void *h = open_libcuda();
    if (h) {
        p = bs_real_dlsym(h, hook_names[id]);
        if (p && p != hook_wrappers[id]) {
            bs_real_adopt(id, p);
            return __atomic_load_n(real_slot(id), __ATOMIC_ACQUIRE);
        }
    }
    return NULL;
}

CUresult bs_missing(enum bs_hook_id id)
{
    bs_log_limited(3, BS_LOG_ERROR,
                   "%s was called but the CUDA driver does not provide it; "
                   "returning CUDA_ERROR_NOT_FOUND", hook_names[id]);
    return CUDA_ERROR_NOT_FOUND;
}

void *bs_wrap_pointer(void *p)
{
    if (!p || !bs_active())
        return p;
    for (int i = 0; i < BS_HOOK_COUNT; i++) {
        void *r = bs_real_resolve((enum bs_hook_id)i);
        if (r == p)
            return hook_wrappers[i];
    }
    return p;
}

/* ---- run-once initialisation ---- */

enum { INIT_NONE, INIT_RUNNING, INIT_DONE };
static int init_state;
static pthread_t init_thread;

static void atfork_prepare(void)
{
    bs_alloc_map_atfork_prepare();
}

static void atfork_parent(void)
{
    bs_alloc_map_atfork_parent();
}

/* The child has no usable CUDA context of its parent's: it starts from an empty
 * tracking state and re-reads nothing else (config and real functions stay valid). */
static void atfork_child(void)
{
    bs_alloc_map_reset();
    bs_launch_reset();
    bs_stats_reset();
    bs_log_reset_after_fork();
    bs_page_reset();
    bs_control_reset_after_fork();
}

static void init_once(void)
{
    bs_config_defaults(&bs_cfg);
    int bad = bs_config_load(&bs_cfg);
    bs_log_set_level(bs_cfg.log_level);
    if (bs_cfg.log_file[0])
        bs_log_open(bs_cfg.log_file);

    void *h = open_libcuda();
    if (h) {
#define BS_DRV_RESOLVE(name, pfn) bs_drv.name = (pfn)bs_real_dlsym(h, #name);
        BS_DRIVER_FUNCTIONS(BS_DRV_RESOLVE)
#undef BS_DRV_RESOLVE
        for (int i = 0; i < BS_HOOK_COUNT; i++)
            bs_real_resolve((enum bs_hook_id)i);
    }

    if (bad > 0) {
        bs_log(BS_LOG_ERROR, "%d bad BLOCKSWAP_* value%s (above): passing every CUDA call "
               "through unchanged; fix the value%s or unset it to enable blockswap",
               bad, bad > 1 ? "s" : "", bad > 1 ? "s" : "");
    } else if (bs_cfg.disable) {
        bs_log(BS_LOG_INFO, "BLOCKSWAP_DISABLE=1: passing every CUDA call through");
    } else {
        int ver = 0;
        if (bs_drv.cuDriverGetVersion)
            bs_drv.cuDriverGetVersion(&ver);
        if (!bs_drv.cuFuncGetParamInfo && !bs_drv.cuKernelGetParamInfo)
            bs_log(BS_LOG_WARN, "the CUDA driver lacks cuFuncGetParamInfo (needs 12.4+): "
                   "kernel parameters cannot be read, so nothing will be paged; "
                   "update the NVIDIA driver");
        bs_log(BS_LOG_INFO, "blockswap %s active (pid %d, driver API %d.%d)",
               BS_VERSION, (int)getpid(), ver / 1000, ver % 1000 / 10);
        __atomic_store_n(&bs_active_flag, 1, __ATOMIC_RELEASE);
        atexit(bs_summary_log);
    }
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

void bs_init(void)
{
    if (BS_LIKELY(__atomic_load_n(&init_state, __ATOMIC_ACQUIRE) == INIT_DONE))
        return;
    int expected = INIT_NONE;
    if (__atomic_compare_exchange_n(&init_state, &expected, INIT_RUNNING, false,
                                    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        __atomic_store_n(&init_thread, pthread_self(), __ATOMIC_RELEASE);
        init_once();
        __atomic_store_n(&init_state, INIT_DONE, __ATOMIC_RELEASE);
        return;
    }
    /* A hooked call made by init itself (dlopen running a constructor) proceeds in
     * pass-through; other threads wait for init to finish. Another thread may read
     * init_thread before the initialising thread has stored it: then it is not its own
     * id, and it waits, as it should. */
    if (pthread_equal(__atomic_load_n(&init_thread, __ATOMIC_ACQUIRE), pthread_self()))
        return;
    while (__atomic_load_n(&init_state, __ATOMIC_ACQUIRE) != INIT_DONE)
        sched_yield();
}
