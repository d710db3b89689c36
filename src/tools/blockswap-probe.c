/* blockswap-probe: what `blockswap-run` runs before anything else. `driver` talks to
 * libcuda.so.1 (dlopen, never linked) and names the driver, each device, its free
 * memory and the VRAM limit blockswap would take there; `config`, run with
 * libblockswap.so preloaded, asks the shim whether it is active; `validate`, preloaded
 * too, says the same in its exit status only (the launcher checks the configuration
 * with it before it runs a command).
 * With a model file (`driver LIMIT|auto RESERVE MODEL`, `-` for none) it also says what
 * the model needs: its size, its blocks and the host RAM (model-header.c reads only the
 * header), and suggests BLOCKSWAP_BLOCKS_TO_SWAP for device 0 (without a model, for the
 * README's reference, WAN 14B at bf16).
 * Prints lines for a person; exit status 0 means "blockswap would work", 3 (driver) that
 * there is no NVIDIA driver at all, 3 (validate) that BLOCKSWAP_DISABLE turns it off. */
#define _GNU_SOURCE
#include <cuda.h>
#include <dlfcn.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model-header.h"

#define GIB (1024.0 * 1024.0 * 1024.0)
#define MIB (1024.0 * 1024.0)
#define NO_DRIVER 3

/* The VRAM limit the launcher computed from BLOCKSWAP_VRAM_LIMIT and BLOCKSWAP_RESERVE
 * (bytes), given as `driver LIMIT|auto RESERVE`; have_limit 0 when not given. */
static int have_limit, limit_auto;
static unsigned long long limit_bytes, reserve_bytes;
/* The model given with --model, read; and device 0's limit once known (0: not known). */
static struct model_info model;
static int have_model;
static unsigned long long device0_limit;

static const char *env_or(const char *name, const char *def)
{
    const char *v = getenv(name);
    return v && v[0] ? v : def;
}

/* "7.5 GiB" or "422 MiB": sizes a person compares with nvidia-smi. */
static const char *human(unsigned long long b, char *buf, size_t len)
{
    if (b >= 1024ull * 1024 * 1024)
        snprintf(buf, len, "%.1f GiB", b / GIB);
    else
        snprintf(buf, len, "%.0f MiB", b / MIB);
    return buf;
}

/* The limit blockswap would take on this device, as page/residency.c computes it at
 * the first managed allocation: BLOCKSWAP_VRAM_LIMIT, or with auto the free memory
 * minus BLOCKSWAP_RESERVE. Refuses a limit the device cannot give. */
static int check_limit(int ordinal, size_t free_b, size_t total)
{
    char a[32], b[32];
    /* Device 0: the one a process uses unless it picks another (CUDA_VISIBLE_DEVICES
     * reorders them). */
    if (!have_limit || ordinal != 0)
        return 0;
    if (limit_auto) {
        unsigned long long lim = free_b > reserve_bytes ? free_b - reserve_bytes : 0;
        if (lim < 2ull << 20) {
            printf("problem:  device %d: the automatic VRAM limit comes out %s: %s free minus "
                   "BLOCKSWAP_RESERVE=%s; lower BLOCKSWAP_RESERVE, free VRAM, or set "
                   "BLOCKSWAP_VRAM_LIMIT\n", ordinal, lim ? human(lim, a, sizeof(a)) : "0",
                   human(free_b, b, sizeof(b)), env_or("BLOCKSWAP_RESERVE", "512M"));
            return 1;
        }
        printf("limit:    device %d: %s (BLOCKSWAP_VRAM_LIMIT=auto: %s free minus "
               "BLOCKSWAP_RESERVE=%s)\n", ordinal, human(lim, a, sizeof(a)),
               human(free_b, b, sizeof(b)), env_or("BLOCKSWAP_RESERVE", "512M"));
        device0_limit = lim;
        return 0;
    }
    if (limit_bytes > total) {
        printf("problem:  BLOCKSWAP_VRAM_LIMIT=%s is more than device %d has (%s in all): "
               "blockswap would keep blocks resident that do not fit; set it lower, or "
               "auto\n", env_or("BLOCKSWAP_VRAM_LIMIT", "?"), ordinal,
               human(total, a, sizeof(a)));
        return 1;
    }
    printf("limit:    device %d: %s (BLOCKSWAP_VRAM_LIMIT=%s)%s%s%s\n", ordinal,
           human(limit_bytes, a, sizeof(a)), env_or("BLOCKSWAP_VRAM_LIMIT", "?"),
           limit_bytes > free_b ? "; only " : "", limit_bytes > free_b ? human(free_b, b, sizeof(b)) : "",
           limit_bytes > free_b ? " is free now" : "");
    device0_limit = limit_bytes;
    return 0;
}

/* Digits and an optional K, M, G or T (powers of 1024), as blockswap parses sizes; 0 for
 * anything else (the configuration check names a bad value). */
static unsigned long long parse_size(const char *s)
{
    char *end;
    if (!s || *s < '0' || *s > '9')
        return 0;
    unsigned long long v = strtoull(s, &end, 10);
    int shift = 0;
    switch (*end) {
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    case 't': case 'T': shift = 40; end++; break;
    }
    if (!strcmp(end, "iB") && shift)
        end += 2;
    else if (*end == 'B')
        end++;
    return *end || v > (~0ull >> shift) ? 0 : v << shift;
}

/* What the model needs of this machine: its size, its blocks, and the host RAM for it.
 * Loaded from this file straight to VRAM (ComfyUI under the launcher), blockswap keeps
 * no copy: the file backs what it evicts, read back through the staging ring. From
 * anonymous memory, or with BLOCKSWAP_FILE_BACKING=0, each swapped weight gets a host
 * copy: at most the model's size. */
static int print_model(const char *path)
{
    char a[32], b[32], c[32];
    const struct model_info *m = &model;
    printf("model:    %s: %s, %s (%llu tensors", path, m->format, human(m->total_bytes, a, sizeof(a)),
           (unsigned long long)m->tensors);
    if (m->width)
        printf(", width %llu", (unsigned long long)m->width);
    printf(")\n");
    if (m->blocks)
        printf("blocks:   %llu transformer blocks (blocks.N.) of up to %s, %s outside them\n",
               (unsigned long long)m->blocks, human(m->block_max, a, sizeof(a)),
               human(m->outside_bytes, b, sizeof(b)));
    else
        printf("blocks:   no blocks.N. tensors: blockswap will look for a repeated structure "
               "as the model loads, and page by predicted reuse if it finds none\n");
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    unsigned long long ram = pages > 0 && psz > 0 ? (unsigned long long)pages * psz : 0;
    unsigned long long keep = 4ull << 30, host_limit;
    const char *hl = env_or("BLOCKSWAP_HOST_LIMIT", "auto");
    int set = strcmp(hl, "auto") != 0 && parse_size(hl);
    host_limit = set ? parse_size(hl) : ram > 2 * keep ? ram - keep : ram / 2;
    const char *fb = env_or("BLOCKSWAP_FILE_BACKING", "1");
    bool file_backing = strcmp(fb, "0") != 0;
    if (file_backing)
        printf("host RAM: no copy of this model when its weights are uploaded straight from "
               "this file (blockswap-run adds --highvram to ComfyUI for that): blockswap reads "
               "swapped blocks back from the file through a %s pinned staging ring "
               "(BLOCKSWAP_STAGING_SIZE) and the page cache keeps what RAM allows; weights that "
               "come from RAM instead need a host copy of each swapped block, up to %s\n",
               env_or("BLOCKSWAP_STAGING_SIZE", "128M"), human(m->total_bytes, a, sizeof(a)));
    printf("host RAM: %s %s for this model without file backing: a host copy of each swapped "
           "weight, at most the model's size; BLOCKSWAP_HOST_LIMIT=%s allows %s (%s of RAM "
           "here)\n", file_backing ? "up to" : "about", human(m->total_bytes, a, sizeof(a)),
           set ? hl : "auto", human(host_limit, b, sizeof(b)), human(ram, c, sizeof(c)));
    if (!file_backing && m->total_bytes > host_limit) {
        printf("problem:  the model needs more pinned host memory than BLOCKSWAP_HOST_LIMIT "
               "allows: evictions would fail; use a smaller (fp8 or GGUF) model, more RAM, "
               "a higher BLOCKSWAP_HOST_LIMIT, or file backing (BLOCKSWAP_FILE_BACKING=1)\n");
        return 1;
    }
    return 0;
}

/* Blocks to swap on device 0, as the README computes it: weights need (N - k + d) blocks
 * + what is outside them, and they and the activations must fit the limit; d is the
 * window, BLOCKSWAP_PREFETCH + 1. Activations: 3 GiB for WAN 14B (width 5120) at
 * 480x832, 81 frames, CFG 1, scaled by the model's width, and twice that with CFG above
 * 1 (both passes in one batch). -1: does not fit even with every block swapped. */
static long suggest_k(unsigned long long limit, unsigned long long n, unsigned long long block,
                      unsigned long long outside, unsigned long long act, unsigned d)
{
    if (!n || !block)
        return 0;
    if (limit <= outside + act)
        return -1;
    unsigned long long slots = (limit - outside - act) / block;
    if (slots >= n)
        return 0;
    long k = (long)(n + d - slots);
    if (k > (long)n)
        return slots >= (d < n ? d : n) ? (long)n : -1;
    return k;
}

static void print_suggestion(void)
{
    char a[32], b[32], c[32], e[32];
    const char *pf = env_or("BLOCKSWAP_PREFETCH", "1");
    unsigned d = (unsigned)(pf[0] >= '0' && pf[0] <= '9' && atoi(pf) < 64 ? atoi(pf) : 1) + 1;
    unsigned long long n = 40, block = 670ull << 20, outside = 444ull << 20;
    unsigned long long width = 5120;
    const char *what = "WAN 14B at bf16 (40 blocks of 670 MiB, 444 MiB outside them; give "
                       "--model PATH for your model's)";
    if (have_model) {
        n = model.blocks;
        block = model.block_max;
        outside = model.outside_bytes;
        width = model.width ? model.width : 5120;
        what = "this model";
        if (!n) {
            printf("suggest:  BLOCKSWAP_BLOCKS_TO_SWAP=auto: the model has no blocks.N. "
                   "tensors to count\n");
            return;
        }
    }
    unsigned long long act = (3ull << 30) / 5120 * width;
    long k1 = suggest_k(device0_limit, n, block, outside, act, d);
    long k2 = suggest_k(device0_limit, n, block, outside, 2 * act, d);
    if (k1 < 0) {
        printf("suggest:  device 0: %s does not fit the %s limit even with every block "
               "swapped: the window (%u blocks of %s), %s outside the blocks and about %s of "
               "activations; use fp8 or GGUF weights, fewer frames or a lower resolution\n",
               what, human(device0_limit, a, sizeof(a)), d, human(block, b, sizeof(b)),
               human(outside, c, sizeof(c)), human(act, e, sizeof(e)));
        return;
    }
    char cfg2[48];
    if (k2 < 0)
        snprintf(cfg2, sizeof(cfg2), "it does not fit");
    else
        snprintf(cfg2, sizeof(cfg2), "%ld", k2);
    printf("suggest:  BLOCKSWAP_BLOCKS_TO_SWAP=%ld for %s on device 0 with CFG 1 (with CFG "
           "above 1, which doubles the activations: %s): (%llu - k + %u) x %s of blocks + %s "
           "outside them + about %s of activations (480x832, 81 frames) fit the %s limit; "
           "auto chooses at run time\n", k1, what, cfg2, n, d, human(block, a, sizeof(a)),
           human(outside, b, sizeof(b)), human(act, c, sizeof(c)),
           human(device0_limit, e, sizeof(e)));
}

struct driver {
    CUresult (*init)(unsigned);
    CUresult (*version)(int *);
    CUresult (*count)(int *);
    CUresult (*get)(CUdevice *, int);
    CUresult (*name)(char *, int, CUdevice);
    CUresult (*attribute)(int *, CUdevice_attribute, CUdevice);
    CUresult (*retain)(CUcontext *, CUdevice);
    CUresult (*release)(CUdevice);
    CUresult (*set_current)(CUcontext);
    CUresult (*meminfo)(size_t *, size_t *);
    CUresult (*error_name)(CUresult, const char **);
};

static const char *error_name(const struct driver *d, CUresult r)
{
    const char *s = NULL;
    if (d->error_name && d->error_name(r, &s) == CUDA_SUCCESS && s)
        return s;
    return "unknown CUDA error";
}

/* One device: name, compute capability, VMM support, total and free memory. */
static int probe_device(const struct driver *d, int ordinal)
{
    CUdevice dev;
    char name[256] = "?";
    int major = 0, minor = 0, vmm = 0;
    CUresult r = d->get(&dev, ordinal);
    if (r != CUDA_SUCCESS) {
        printf("device %d: cuDeviceGet failed: %s\n", ordinal, error_name(d, r));
        return 1;
    }
    d->name(name, sizeof(name), dev);
    d->attribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev);
    d->attribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev);
    d->attribute(&vmm, CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED, dev);

    /* Free memory needs a context: the primary one, released again at once. */
    CUcontext ctx = NULL;
    size_t free_b = 0, total = 0;
    r = d->retain(&ctx, dev);
    if (r == CUDA_SUCCESS) {
        r = d->set_current(ctx);
        if (r == CUDA_SUCCESS)
            r = d->meminfo(&free_b, &total);
        d->set_current(NULL);
        d->release(dev);
    }
    if (r != CUDA_SUCCESS) {
        printf("device %d: %s, compute capability %d.%d; cannot read its memory: %s\n",
               ordinal, name, major, minor, error_name(d, r));
        return 1;
    }
    printf("device %d: %s, compute capability %d.%d, %.1f GiB total, %.1f GiB free\n",
           ordinal, name, major, minor, total / GIB, free_b / GIB);
    if (!vmm) {
        printf("problem:  device %d lacks virtual memory management (cuMemCreate/cuMemMap), "
               "which blockswap pages with\n", ordinal);
        return 1;
    }
    return check_limit(ordinal, free_b, total);
}

static int probe_driver(void)
{
    void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        printf("driver:   no NVIDIA driver (libcuda.so.1 not found)\n");
        return NO_DRIVER;
    }
    const char *path = "libcuda.so.1";
    struct link_map *lm = NULL;
    if (dlinfo(h, RTLD_DI_LINKMAP, &lm) == 0 && lm && lm->l_name && lm->l_name[0])
        path = lm->l_name;

    struct driver d = {
#define SYM(field, name) .field = (__typeof__(d.field))dlsym(h, name)
        SYM(init, "cuInit"),
        SYM(version, "cuDriverGetVersion"),
        SYM(count, "cuDeviceGetCount"),
        SYM(get, "cuDeviceGet"),
        SYM(name, "cuDeviceGetName"),
        SYM(attribute, "cuDeviceGetAttribute"),
        SYM(retain, "cuDevicePrimaryCtxRetain"),
        SYM(release, "cuDevicePrimaryCtxRelease_v2"),
        SYM(set_current, "cuCtxSetCurrent"),
        SYM(meminfo, "cuMemGetInfo_v2"),
        SYM(error_name, "cuGetErrorName"),
#undef SYM
    };
    if (!d.init || !d.version || !d.count || !d.get || !d.name || !d.attribute ||
        !d.retain || !d.release || !d.set_current || !d.meminfo) {
        printf("driver:   %s lacks basic CUDA driver functions: not a usable NVIDIA driver\n",
               path);
        return 1;
    }
    int version = 0;
    d.version(&version);
    printf("driver:   %s, CUDA %d.%d\n", path, version / 1000, version % 1000 / 10);

    int status = 0;
    /* Without parameter layouts the shim cannot see what a kernel touches, and
     * then pages nothing. */
    if (!dlsym(h, "cuFuncGetParamInfo")) {
        printf("problem:  the driver lacks cuFuncGetParamInfo (CUDA 12.4+ drivers have it): "
               "blockswap would page nothing; update the NVIDIA driver\n");
        status = 1;
    }
    CUresult r = d.init(0);
    if (r != CUDA_SUCCESS) {
        printf("problem:  cuInit failed: %s (no usable GPU, or the driver and kernel "
               "module disagree; see nvidia-smi)\n", error_name(&d, r));
        return 1;
    }
    int n = 0;
    r = d.count(&n);
    if (r != CUDA_SUCCESS || n < 1) {
        printf("problem:  the driver sees no CUDA device\n");
        return 1;
    }
    for (int i = 0; i < n; i++)
        status |= probe_device(&d, i);
    if (device0_limit)
        print_suggestion();
    return status;
}

/* Exit status only: 0 active, NO_DRIVER (3) turned off by BLOCKSWAP_DISABLE, 1 a bad
 * value (the shim's error lines, on stderr, name it) or the library not loaded. */
static int probe_validate(void)
{
    int (*enabled)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "blockswap_enabled");
    if (!enabled)
        return 1;
    if (enabled())
        return 0;
    const char *dis = getenv("BLOCKSWAP_DISABLE");
    if (dis && (!strcmp(dis, "1") || !strcmp(dis, "true") || !strcmp(dis, "yes") ||
                !strcmp(dis, "on")))
        return NO_DRIVER;
    return 1;
}

static int probe_config(void)
{
    const char *(*version)(void) = (const char *(*)(void))dlsym(RTLD_DEFAULT,
                                                               "blockswap_version");
    int (*enabled)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "blockswap_enabled");
    if (!version || !enabled) {
        printf("library:  not loaded (LD_PRELOAD failed; the dynamic loader's message, "
               "if any, is above)\n");
        return 1;
    }
    printf("library:  loaded, blockswap %s\n", version());
    fflush(stdout);
    if (enabled()) {
        printf("config:   valid: blockswap is active\n");
        return 0;
    }
    const char *dis = getenv("BLOCKSWAP_DISABLE");
    if (dis && (!strcmp(dis, "1") || !strcmp(dis, "true") || !strcmp(dis, "yes") ||
                !strcmp(dis, "on")))
        printf("config:   BLOCKSWAP_DISABLE=%s: blockswap would pass every call through\n",
               dis);
    else
        printf("config:   not valid: the blockswap: error line above names the variable; "
               "blockswap would pass every call through\n");
    return 1;
}

int main(int argc, char **argv)
{
    int status, model_status = 0;
    if ((argc == 2 || argc == 4 || argc == 5) && strcmp(argv[1], "driver") == 0) {
        if (argc == 5 && strcmp(argv[4], "-") != 0) {
            char err[200];
            if (bs_model_read(argv[4], &model, err, sizeof(err)) < 0) {
                printf("problem:  --model %s: %s\n", argv[4], err);
                fflush(stdout);
                _exit(1);
            }
            have_model = 1;
            model_status = print_model(argv[4]);
        }
        if (argc >= 4) {
            char *end1 = NULL, *end2 = NULL;
            have_limit = 1;
            limit_auto = strcmp(argv[2], "auto") == 0;
            if (!limit_auto)
                limit_bytes = strtoull(argv[2], &end1, 10);
            reserve_bytes = strtoull(argv[3], &end2, 10);
            if ((!limit_auto && (!end1 || *end1)) || !end2 || *end2) {
                fprintf(stderr, "blockswap-probe: driver LIMIT|auto RESERVE: bytes\n");
                return 2;
            }
        }
        status = probe_driver();
        if (status == 0)
            status = model_status;
    } else if (argc == 2 && strcmp(argv[1], "config") == 0) {
        status = probe_config();
    } else if (argc == 2 && strcmp(argv[1], "validate") == 0) {
        status = probe_validate();
    } else {
        fprintf(stderr, "usage: blockswap-probe driver [LIMIT|auto RESERVE [MODEL|-]] | config | "
                        "validate\n"
                        "  (run by blockswap-run; config and validate expect libblockswap.so "
                        "in LD_PRELOAD; LIMIT and RESERVE in bytes)\n");
        return 2;
    }
    /* _exit: the preloaded shim's exit summary is no part of a check. */
    fflush(stdout);
    _exit(status);
}
