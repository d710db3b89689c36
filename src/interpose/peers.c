/* interpose/peers.c: other pagers of GPU memory in the same process. comfy-aimdo
 * (ComfyUI's dynamic VRAM) is found by its file name among the loaded objects; once
 * it is there, blockswap stands aside for every new allocation. Owns only that verdict. */
#define _GNU_SOURCE
#include "interpose/hook.h"

#include <link.h>
#include <stdio.h>
#include <string.h>

/* glibc's count of objects ever loaded, when the objects were last looked at. */
static unsigned long long seen_adds;
static int aside;

static int read_adds(struct dl_phdr_info *info, size_t size, void *data)
{
    if (size >= offsetof(struct dl_phdr_info, dlpi_adds) + sizeof(info->dlpi_adds))
        *(unsigned long long *)data = info->dlpi_adds;
    return 1; /* the first object carries the count: stop there */
}

/* comfy_aimdo/control.py loads its C library with ctypes from the package's own
 * directory: aimdo.so (NVIDIA), aimdo_rocm.so, aimdo_xpu.so; it has no soname. */
static bool is_aimdo(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    return strstr(base, "aimdo") && strstr(base, ".so");
}

struct found {
    char path[256];
};

static int find_aimdo(struct dl_phdr_info *info, size_t size, void *data)
{
    struct found *f = data;
    if (!info->dlpi_name || !is_aimdo(info->dlpi_name))
        return 0;
    snprintf(f->path, sizeof(f->path), "%s", info->dlpi_name);
    return 1;
}

bool bs_peers_aside(void)
{
    if (__atomic_load_n(&aside, __ATOMIC_ACQUIRE))
        return true;
    /* Cheap while nothing was loaded since the last look: one callback. A racing
     * thread may look too; the verdict is the same. */
    unsigned long long adds = 0;
    dl_iterate_phdr(read_adds, &adds);
    if (adds && adds == __atomic_load_n(&seen_adds, __ATOMIC_ACQUIRE))
        return false;
    struct found f = { "" };
    dl_iterate_phdr(find_aimdo, &f);
    __atomic_store_n(&seen_adds, adds, __ATOMIC_RELEASE);
    if (!f.path[0])
        return false;
    int expected = 0;
    if (__atomic_compare_exchange_n(&aside, &expected, 1, false, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE))
        bs_log(BS_LOG_WARN, "comfy-aimdo (ComfyUI's dynamic VRAM) is loaded in this "
               "process (%s): it pages model weights itself and two pagers would fight "
               "over VRAM, so blockswap now leaves every new allocation to the driver; "
               "restart ComfyUI with --disable-dynamic-vram, or start it through "
               "blockswap-run, which adds that flag", f.path);
    return true;
}
