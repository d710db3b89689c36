/* The built-in kernels (the C twins of tests/kernels/bs_kernels.cu, the test kernels,
 * and of src/kernels/bs_fingerprint.cu, the one libblockswap.so loads itself), modules
 * that make them available by scanning images for `.entry NAME`, parameter layout and
 * packing (kernelParams or the `extra` buffer), and kernel launches. */
#define _GNU_SOURCE /* memmem */
#include "sim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- argument access ----------------------------------------------------------- */

static uint64_t u64_at(const unsigned char *a, size_t off)
{
    uint64_t v;
    memcpy(&v, a + off, sizeof(v));
    return v;
}

static uint32_t u32_at(const unsigned char *a, size_t off)
{
    uint32_t v;
    memcpy(&v, a + off, sizeof(v));
    return v;
}

static float f32_at(const unsigned char *a, size_t off)
{
    float v;
    memcpy(&v, a + off, sizeof(v));
    return v;
}

/* Byte counts from user-controlled counts: saturate, so an absurd count becomes a
 * range that fails validation instead of one that wraps to something small. */
static size_t bytes_of(uint64_t count, uint64_t elem)
{
    uint64_t r;
    if (__builtin_mul_overflow(count, elem, &r) || r > SIZE_MAX)
        return SIZE_MAX;
    return (size_t)r;
}

static int add(struct sim_accs *a, uint64_t addr, size_t len, bool write)
{
    return cudasim_accs_add(a, (uintptr_t)addr, len, write);
}

#define PLAN_DONE(a) return (a) ? CUDA_ERROR_OUT_OF_MEMORY : CUDA_SUCCESS

/* ---- bs_fill_u32(dst, uint32_t value, uint64_t count) ------------------------- */

static CUresult fill_plan(const unsigned char *a, struct sim_accs *acc, uint64_t *min_ns)
{
    PLAN_DONE(add(acc, u64_at(a, 0), bytes_of(u64_at(a, 16), 4), true));
}

SIM_DEVICE_CODE static void fill_run(const unsigned char *a)
{
    uint32_t *dst = (uint32_t *)(uintptr_t)u64_at(a, 0);
    uint32_t v = u32_at(a, 8);
    for (uint64_t i = 0, n = u64_at(a, 16); i < n; i++)
        dst[i] = v;
}

/* ---- gemv: y[r] = sum_c W[r*cols+c] * x[c], c ascending, fmaf into a float ----- */

struct gemv {
    uint64_t y, W, x;
    uint32_t rows, cols;
};

static int gemv_accesses(const struct gemv *g, struct sim_accs *acc)
{
    return add(acc, g->W, bytes_of((uint64_t)g->rows * g->cols, 4), false) ||
           add(acc, g->x, bytes_of(g->cols, 4), false) || add(acc, g->y, bytes_of(g->rows, 4), true);
}

SIM_DEVICE_CODE static void gemv_compute(const struct gemv *g)
{
    float *y = (float *)(uintptr_t)g->y;
    const float *W = (const float *)(uintptr_t)g->W, *x = (const float *)(uintptr_t)g->x;
    for (uint64_t r = 0; r < g->rows; r++) {
        const float *w = W + r * g->cols;
        float acc = 0.0f;
        for (uint32_t c = 0; c < g->cols; c++)
            acc = fmaf(w[c], x[c], acc);
        y[r] = acc;
    }
}

static struct gemv gemv_args(const unsigned char *a)
{
    return (struct gemv){u64_at(a, 0), u64_at(a, 8), u64_at(a, 16), u32_at(a, 24), u32_at(a, 28)};
}

static CUresult gemv_plan(const unsigned char *a, struct sim_accs *acc, uint64_t *min_ns)
{
    struct gemv g = gemv_args(a);
    PLAN_DONE(gemv_accesses(&g, acc));
}

static void gemv_run(const unsigned char *a)
{
    struct gemv g = gemv_args(a);
    gemv_compute(&g);
}

/* bs_gemv_struct_f32(struct { y, W, x; uint32_t rows, cols; }): the same 32 bytes,
 * as one by-value struct parameter, so the layout is identical. */

/* bs_gemv_indirect_f32(ptrs, rows, cols): y, W, x live in device memory at ptrs. */
static CUresult indirect_args(const unsigned char *a, struct sim_accs *acc, struct gemv *g)
{
    uint64_t ptrs = u64_at(a, 0);
    /* The pointer table must be readable before its contents mean anything. */
    if (acc) {
        char what[96];
        snprintf(what, sizeof(what), "kernel %s", acc->what_name);
        CUresult r = cudasim_mem_validate(what, (uintptr_t)ptrs, 24, false);
        if (r)
            return r;
    }
    uint64_t p[3];
    memcpy(p, (const void *)(uintptr_t)ptrs, sizeof(p));
    *g = (struct gemv){p[0], p[1], p[2], u32_at(a, 8), u32_at(a, 12)};
    return CUDA_SUCCESS;
}

static CUresult indirect_plan(const unsigned char *a, struct sim_accs *acc, uint64_t *min_ns)
{
    struct gemv g;
    CUresult r = indirect_args(a, acc, &g);
    if (r)
        return r;
    PLAN_DONE(add(acc, u64_at(a, 0), 24, false) || gemv_accesses(&g, acc));
}

static void indirect_run(const unsigned char *a)
{
    struct gemv g;
    indirect_args(a, NULL, &g);
    gemv_compute(&g);
}

/* ---- bs_axpy_f32(y, x, float a, uint64_t n): y = fmaf(a, x, y) ---------------- */

static CUresult axpy_plan(const unsigned char *a, struct sim_accs *acc, uint64_t *min_ns)
{
    size_t n = bytes_of(u64_at(a, 24), 4);
    PLAN_DONE(add(acc, u64_at(a, 8), n, false) || add(acc, u64_at(a, 0), n, false) ||
              add(acc, u64_at(a, 0), n, true));
}

SIM_DEVICE_CODE static void axpy_run(const unsigned char *a)
{
    float *y = (float *)(uintptr_t)u64_at(a, 0);
    const float *x = (const float *)(uintptr_t)u64_at(a, 8);
    float k = f32_at(a, 16);
    for (uint64_t i = 0, n = u64_at(a, 24); i < n; i++)
        y[i] = fmaf(k, x[i], y[i]);
}

/* ---- bs_tanh_f32(y, uint64_t n), in place ------------------------------------- */

static CUresult tanh_plan(const unsigned char *a, struct sim_accs *acc, uint64_t *min_ns)
{
    size_t n = bytes_of(u64_at(a, 8), 4);
    PLAN_DONE(add(acc, u64_at(a, 0), n, false) || add(acc, u64_at(a, 0), n, true));
}

SIM_DEVICE_CODE static void tanh_run(const unsigned char *a)
{
    float *y = (float *)(uintptr_t)u64_at(a, 0);
    for (uint64_t i = 0, n = u64_at(a, 8); i < n; i++)
        y[i] = tanhf(y[i]);
}

/* ---- bs_checksum_u64(out, data, uint64_t bytes): 64-bit FNV-1a ----------------- */

/* Also the plan of bs_fingerprint_u64: reads bytes at data, writes 8 at out. */
static CUresult checksum_plan(const unsigned char *a, struct sim_accs *acc, uint64_t *min_ns)
{
    PLAN_DONE(add(acc, u64_at(a, 8), bytes_of(u64_at(a, 16), 1), false) || add(acc, u64_at(a, 0), 8, true));
}

SIM_DEVICE_CODE static void checksum_run(const unsigned char *a)
{
    const uint8_t *d = (const uint8_t *)(uintptr_t)u64_at(a, 8);
    uint64_t h = 0xcbf29ce484222325ull;
    for (uint64_t i = 0, n = u64_at(a, 16); i < n; i++) {
        h ^= d[i];
        h *= 0x100000001b3ull;
    }
    memcpy((void *)(uintptr_t)u64_at(a, 0), &h, sizeof(h));
}

/* ---- bs_fingerprint_u64(out, data, uint64_t bytes) ------------------------------
 * n = ceil(bytes / 8) little-endian 64-bit words w_i, the last zero-padded;
 * *out = bytes + sum_i fmix(w_i ^ (i * 0x9E3779B97F4A7C15)) mod 2^64, with fmix the
 * splitmix64 finalizer. A sum of per-word mixes, so a GPU may add in any order. */

static uint64_t fp_mix(uint64_t w, uint64_t i)
{
    uint64_t z = w ^ (i * 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

SIM_DEVICE_CODE static void fingerprint_run(const unsigned char *a)
{
    const uint8_t *d = (const uint8_t *)(uintptr_t)u64_at(a, 8);
    uint64_t bytes = u64_at(a, 16), full = bytes / 8, sum = bytes;
    for (uint64_t i = 0; i < full; i++) {
        uint64_t w;
        memcpy(&w, d + 8 * i, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        w = __builtin_bswap64(w);
#endif
        sum += fp_mix(w, i);
    }
    if (bytes % 8) {
        uint64_t w = 0;
        for (uint64_t b = bytes; b-- > 8 * full;)
            w = w << 8 | d[b];
        sum += fp_mix(w, full);
    }
    memcpy((void *)(uintptr_t)u64_at(a, 0), &sum, sizeof(sum));
}

/* ---- bs_sleep(uint64_t ns): touches nothing, lasts ns ------------------------- */

static CUresult sleep_plan(const unsigned char *a, struct sim_accs *acc, uint64_t *min_ns)
{
    (void)acc;
    *min_ns = u64_at(a, 0);
    return CUDA_SUCCESS;
}

static void sleep_run(const unsigned char *a) { (void)a; }

/* ---- bs_fill_tensormap_u32(CUtensorMap map, uint32_t value) -------------------- */

/* Calls f on each contiguous innermost row of the tensor. */
static int tmap_rows(const struct sim_tmap *t, int (*f)(void *ctx, uintptr_t row, size_t len), void *ctx)
{
    uint64_t idx[5] = {0};
    size_t len = bytes_of(t->dim[0], t->elem_size);
    for (;;) {
        uintptr_t row = (uintptr_t)t->addr;
        for (unsigned d = 1; d < t->rank; d++)
            row += idx[d] * t->stride[d];
        if (f(ctx, row, len))
            return -1;
        unsigned d = 1;
        for (; d < t->rank; d++) {
            if (++idx[d] < t->dim[d])
                break;
            idx[d] = 0;
        }
        if (d >= t->rank)
            return 0;
    }
}

static int tmap_add_row(void *ctx, uintptr_t row, size_t len) { return cudasim_accs_add(ctx, row, len, true); }

SIM_DEVICE_CODE static int tmap_fill_row(void *ctx, uintptr_t row, size_t len)
{
    uint32_t v = *(const uint32_t *)ctx;
    for (size_t i = 0; i < len / 4; i++)
        ((uint32_t *)row)[i] = v;
    return 0;
}

static CUresult tmap_plan(const unsigned char *a, struct sim_accs *acc, uint64_t *min_ns)
{
    struct sim_tmap t;
    if (!cudasim_tmap_decode(a, &t)) {
        cudasim_error("kernel %s: parameter 0 is not a tensor map made by cuTensorMapEncodeTiled or "
                      "cuTensorMapEncodeIm2col", acc->what_name);
        return CUDA_ERROR_INVALID_VALUE;
    }
    if (t.elem_size != 4) {
        cudasim_error("kernel %s: the tensor map has %u-byte elements; this kernel fills 4-byte elements",
                      acc->what_name, t.elem_size);
        return CUDA_ERROR_INVALID_VALUE;
    }
    PLAN_DONE(tmap_rows(&t, tmap_add_row, acc));
}

static void tmap_run(const unsigned char *a)
{
    struct sim_tmap t;
    uint32_t v = u32_at(a, 128);
    if (cudasim_tmap_decode(a, &t))
        tmap_rows(&t, tmap_fill_row, &v);
}

/* ---- bs_fill_list_u32(struct { dst[300] }, uint32_t value, uint32_t n) -------- */

#define PTR_LIST_MAX 300 /* BS_PTR_LIST_MAX in bs_kernels.cu */

static CUresult fill_list_plan(const unsigned char *a, struct sim_accs *acc, uint64_t *min_ns)
{
    int bad = 0;
    for (uint32_t i = 0, n = u32_at(a, PTR_LIST_MAX * 8 + 4); i < n && i < PTR_LIST_MAX; i++)
        bad = bad || add(acc, u64_at(a, (size_t)i * 8), 4, true);
    PLAN_DONE(bad);
}

SIM_DEVICE_CODE static void fill_list_run(const unsigned char *a)
{
    uint32_t v = u32_at(a, PTR_LIST_MAX * 8);
    for (uint32_t i = 0, n = u32_at(a, PTR_LIST_MAX * 8 + 4); i < n && i < PTR_LIST_MAX; i++)
        *(uint32_t *)(uintptr_t)u64_at(a, (size_t)i * 8) = v;
}

/* ---- the table ----------------------------------------------------------------- */

#define P(sz, al) {sz, al}
#define PTR P(8, 8)
#define U32 P(4, 4)
#define U64 P(8, 8)
#define F32 P(4, 4)

/* Parameter lists in the order and with the sizes of the .cu files; offsets follow
 * from natural alignment (cudasim_kernel_param_offset), which is how the planners
 * above read them. */
static const struct sim_kernel kernels[] = {
    {"bs_fill_u32", 3, {PTR, U32, U64}, fill_plan, fill_run},
    {"bs_gemv_f32", 5, {PTR, PTR, PTR, U32, U32}, gemv_plan, gemv_run},
    {"bs_axpy_f32", 4, {PTR, PTR, F32, U64}, axpy_plan, axpy_run},
    {"bs_tanh_f32", 2, {PTR, U64}, tanh_plan, tanh_run},
    {"bs_checksum_u64", 3, {PTR, PTR, U64}, checksum_plan, checksum_run},
    {"bs_fingerprint_u64", 3, {PTR, PTR, U64}, checksum_plan, fingerprint_run},
    {"bs_gemv_struct_f32", 1, {P(32, 8)}, gemv_plan, gemv_run},
    {"bs_gemv_indirect_f32", 3, {PTR, U32, U32}, indirect_plan, indirect_run},
    {"bs_sleep", 1, {U64}, sleep_plan, sleep_run},
    /* CUtensorMap is declared _Alignas(128) in cuda.h, and nvcc's PTX agrees. */
    {"bs_fill_tensormap_u32", 2, {P(128, 128), U32}, tmap_plan, tmap_run},
    /* 2408 bytes of parameters: SIM_ARGS_MAX must hold them. */
    {"bs_fill_list_u32", 3, {P(PTR_LIST_MAX * 8, 8), U32, U32}, fill_list_plan, fill_list_run},
};
#define NKERNELS (sizeof(kernels) / sizeof(kernels[0]))

const struct sim_kernel *cudasim_kernel_find(const char *name, size_t len)
{
    for (size_t i = 0; i < NKERNELS; i++)
        if (strlen(kernels[i].name) == len && memcmp(kernels[i].name, name, len) == 0)
            return &kernels[i];
    return NULL;
}

size_t cudasim_kernel_param_offset(const struct sim_kernel *k, unsigned i)
{
    size_t off = 0;
    for (unsigned j = 0; j <= i; j++) {
        size_t al = k->params[j].align;
        off = (off + al - 1) / al * al;
        if (j < i)
            off += k->params[j].size;
    }
    return off;
}

size_t cudasim_kernel_params_size(const struct sim_kernel *k)
{
    if (k->nparams == 0)
        return 0;
    return cudasim_kernel_param_offset(k, k->nparams - 1) + k->params[k->nparams - 1].size;
}

/* ---- modules ------------------------------------------------------------------- */

struct sim_func {
    uint32_t magic;
    const struct sim_kernel *k;
    struct sim_module *mod;
    int max_dynamic_smem;
    int carveout;
};

struct sim_module {
    uint32_t magic;
    size_t n;
    struct sim_func funcs[NKERNELS];
};

static bool ident_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '$';
}

static void module_add(struct sim_module *m, const struct sim_kernel *k)
{
    for (size_t i = 0; i < m->n; i++)
        if (m->funcs[i].k == k)
            return;
    m->funcs[m->n++] = (struct sim_func){.magic = SIM_MAGIC_FUNC, .k = k, .mod = m, .carveout = -1};
}

/* Finds `.entry NAME` tokens; NAME must be a built-in to become a function. In a
 * binary image (cubin, fatbin) the names also appear as plain strings. */
static CUresult module_scan(const char *img, size_t len, bool binary, CUmodule *out)
{
    struct sim_module *m = calloc(1, sizeof(*m));
    unsigned unknown = 0, entries = 0;
    if (!m)
        return CUDA_ERROR_OUT_OF_MEMORY;
    m->magic = SIM_MAGIC_MODULE;
    static const char tok[] = ".entry";
    for (size_t i = 0; i + sizeof(tok) < len; i++) {
        if (img[i] != '.' || memcmp(img + i, tok, sizeof(tok) - 1) != 0)
            continue;
        size_t j = i + sizeof(tok) - 1;
        if (j >= len || (img[j] != ' ' && img[j] != '\t'))
            continue;
        while (j < len && (img[j] == ' ' || img[j] == '\t'))
            j++;
        size_t s = j;
        while (j < len && ident_char(img[j]))
            j++;
        if (j == s)
            continue;
        entries++;
        const struct sim_kernel *k = cudasim_kernel_find(img + s, j - s);
        if (k)
            module_add(m, k);
        else if (unknown++ < 8)
            cudasim_warn("module entry %.*s is not a simulated built-in kernel; cuModuleGetFunction will "
                         "return CUDA_ERROR_NOT_FOUND for it", (int)(j - s), img + s);
    }
    if (binary)
        for (size_t i = 0; i < NKERNELS; i++) {
            const char *name = kernels[i].name;
            size_t nl = strlen(name) + 1; /* with its NUL */
            for (const char *p = img; p && (size_t)(p - img) + nl <= len;) {
                p = memmem(p, len - (size_t)(p - img), name, nl);
                if (!p)
                    break;
                if (p == img || p[-1] == '\0' || p[-1] == '.') {
                    module_add(m, &kernels[i]);
                    entries++;
                    break;
                }
                p++;
            }
        }
    if (entries == 0 && !memmem(img, len, ".version", 8)) {
        free(m);
        return CUDA_ERROR_INVALID_IMAGE;
    }
    *out = (CUmodule)m;
    return CUDA_SUCCESS;
}

/* Headers claiming more than this are corrupt rather than large. */
#define IMAGE_MAX ((size_t)1 << 30)

/* Length of an in-memory image: PTX is NUL-terminated text; fatbins and ELF cubins
 * carry their size in their headers. */
static bool image_len(const unsigned char *img, size_t *len, bool *binary)
{
    uint32_t magic;
    memcpy(&magic, img, 4);
    if (magic == 0xBA55ED50u) { /* fatbin: u32 magic, u16 version, u16 header size, u64 size */
        uint16_t hs;
        uint64_t fs;
        memcpy(&hs, img + 6, 2);
        memcpy(&fs, img + 8, 8);
        *len = hs + fs;
        *binary = true;
        return fs < IMAGE_MAX;
    }
    if (img[0] == 0x7f && img[1] == 'E' && img[2] == 'L' && img[3] == 'F' && img[4] == 2) {
        uint64_t shoff;
        uint16_t shentsize, shnum;
        memcpy(&shoff, img + 0x28, 8);
        memcpy(&shentsize, img + 0x3a, 2);
        memcpy(&shnum, img + 0x3c, 2);
        *len = shoff + (uint64_t)shentsize * shnum;
        *binary = true;
        return shoff < IMAGE_MAX && *len > 0x40;
    }
    *len = strlen((const char *)img);
    *binary = false;
    return true;
}

CUresult cudasim_module_load_data(CUmodule *mod, const void *image)
{
    size_t len;
    bool binary;
    if (!mod || !image)
        return CUDA_ERROR_INVALID_VALUE;
    if (!image_len(image, &len, &binary))
        return CUDA_ERROR_INVALID_IMAGE;
    return module_scan(image, len, binary, mod);
}

CUresult cudasim_module_load_file(CUmodule *mod, const char *path)
{
    if (!mod || !path)
        return CUDA_ERROR_INVALID_VALUE;
    FILE *f = fopen(path, "rb");
    if (!f)
        return CUDA_ERROR_FILE_NOT_FOUND;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    CUresult r = CUDA_SUCCESS;
    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : 65536;
            char *nb = cap <= ((size_t)1 << 30) ? realloc(buf, cap) : NULL;
            if (!nb) {
                r = CUDA_ERROR_OUT_OF_MEMORY;
                break;
            }
            buf = nb;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0)
            break;
    }
    fclose(f);
    if (r == CUDA_SUCCESS) {
        bool binary = memchr(buf, '\0', len) != NULL;
        r = module_scan(buf, len, binary, mod);
    }
    free(buf);
    return r;
}

static CUresult module_get(CUmodule h, struct sim_module **out)
{
    struct sim_module *m = (struct sim_module *)h;
    if (!m || m->magic != SIM_MAGIC_MODULE)
        return CUDA_ERROR_INVALID_HANDLE;
    *out = m;
    return CUDA_SUCCESS;
}

CUresult cudasim_module_unload(CUmodule h)
{
    struct sim_module *m;
    CUresult r = module_get(h, &m);
    if (r)
        return r;
    m->magic = SIM_MAGIC_DEAD;
    for (size_t i = 0; i < m->n; i++)
        m->funcs[i].magic = SIM_MAGIC_DEAD;
    free(m);
    return CUDA_SUCCESS;
}

CUresult cudasim_module_get_function(CUfunction *f, CUmodule h, const char *name)
{
    struct sim_module *m;
    CUresult r = module_get(h, &m);
    if (r)
        return r;
    if (!f || !name)
        return CUDA_ERROR_INVALID_VALUE;
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->funcs[i].k->name, name) == 0) {
            *f = (CUfunction)&m->funcs[i];
            return CUDA_SUCCESS;
        }
    return CUDA_ERROR_NOT_FOUND;
}

static CUresult func_get(CUfunction h, struct sim_func **out)
{
    struct sim_func *f = (struct sim_func *)h;
    if (!f || f->magic != SIM_MAGIC_FUNC)
        return CUDA_ERROR_INVALID_HANDLE;
    *out = f;
    return CUDA_SUCCESS;
}

CUresult cudasim_func_param_info(CUfunction h, size_t index, size_t *off, size_t *size)
{
    struct sim_func *f;
    CUresult r = func_get(h, &f);
    if (r)
        return r;
    if (index >= f->k->nparams)
        return CUDA_ERROR_INVALID_VALUE;
    if (off)
        *off = cudasim_kernel_param_offset(f->k, (unsigned)index);
    if (size)
        *size = f->k->params[index].size;
    return CUDA_SUCCESS;
}

CUresult cudasim_func_name(const char **name, CUfunction h)
{
    struct sim_func *f;
    CUresult r = func_get(h, &f);
    if (r)
        return r;
    if (!name)
        return CUDA_ERROR_INVALID_VALUE;
    *name = f->k->name;
    return CUDA_SUCCESS;
}

CUresult cudasim_func_attribute(int *pi, CUfunction_attribute attr, CUfunction h)
{
    struct sim_func *f;
    CUresult r = func_get(h, &f);
    if (r)
        return r;
    if (!pi)
        return CUDA_ERROR_INVALID_VALUE;
    switch (attr) {
    case CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK: *pi = 1024; break;
    case CU_FUNC_ATTRIBUTE_NUM_REGS: *pi = 32; break;
    case CU_FUNC_ATTRIBUTE_PTX_VERSION: *pi = 80; break;
    case CU_FUNC_ATTRIBUTE_BINARY_VERSION: *pi = 90; break;
    case CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES: *pi = f->max_dynamic_smem; break;
    case CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT: *pi = f->carveout; break;
    default:
        if ((int)attr < 0 || attr >= CU_FUNC_ATTRIBUTE_MAX)
            return CUDA_ERROR_INVALID_VALUE;
        *pi = 0;
        break;
    }
    return CUDA_SUCCESS;
}

CUresult cudasim_func_set_attribute(CUfunction h, CUfunction_attribute attr, int value)
{
    struct sim_func *f;
    CUresult r = func_get(h, &f);
    if (r)
        return r;
    switch (attr) {
    case CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES:
        if (value < 0 || value > 232448)
            return CUDA_ERROR_INVALID_VALUE;
        f->max_dynamic_smem = value;
        return CUDA_SUCCESS;
    case CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT:
        f->carveout = value;
        return CUDA_SUCCESS;
    default:
        return CUDA_SUCCESS; /* scheduling hints with no effect here */
    }
}

CUresult cudasim_func_module(CUmodule *mod, CUfunction h)
{
    struct sim_func *f;
    CUresult r = func_get(h, &f);
    if (r)
        return r;
    if (!mod)
        return CUDA_ERROR_INVALID_VALUE;
    *mod = (CUmodule)f->mod;
    return CUDA_SUCCESS;
}

/* ---- launches ------------------------------------------------------------------ */

/* Packs the arguments into op->u.kern.args with natural alignment, from either form
 * CUDA allows: an array of pointers to each argument, or one packed buffer. */
static CUresult pack_args(const struct sim_kernel *k, void **params, void **extra, unsigned char *out)
{
    size_t total = cudasim_kernel_params_size(k);
    if (params && extra)
        return CUDA_ERROR_INVALID_VALUE;
    if (params) {
        for (unsigned i = 0; i < k->nparams; i++) {
            if (!params[i])
                return CUDA_ERROR_INVALID_VALUE;
            memcpy(out + cudasim_kernel_param_offset(k, i), params[i], k->params[i].size);
        }
        return CUDA_SUCCESS;
    }
    if (extra) {
        void *buf = NULL;
        size_t size = 0;
        bool have_size = false;
        for (size_t i = 0; extra[i] != CU_LAUNCH_PARAM_END; i += 2) {
            if (extra[i] == CU_LAUNCH_PARAM_BUFFER_POINTER)
                buf = extra[i + 1];
            else if (extra[i] == CU_LAUNCH_PARAM_BUFFER_SIZE) {
                if (!extra[i + 1])
                    return CUDA_ERROR_INVALID_VALUE;
                size = *(size_t *)extra[i + 1];
                have_size = true;
            } else
                return CUDA_ERROR_INVALID_VALUE;
        }
        if (!buf || !have_size || size < total)
            return CUDA_ERROR_INVALID_VALUE;
        memcpy(out, buf, total);
        return CUDA_SUCCESS;
    }
    return k->nparams == 0 ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

CUresult cudasim_launch(const char *api, CUfunction hf, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                        unsigned by, unsigned bz, unsigned smem, CUstream hs, void **params, void **extra, bool pt)
{
    struct sim_func *f;
    struct sim_stream *s;
    struct sim_op op;
    CUresult r;
    if ((r = func_get(hf, &f)))
        return r;
    /* Geometry is checked as a GPU would, then ignored: every built-in computes its
     * whole result (the CUDA versions use grid-stride loops to match). */
    if (!gx || !gy || !gz || !bx || !by || !bz || (uint64_t)bx * by * bz > 1024 || bz > 64 || gy > 65535 ||
        gz > 65535 || smem > 232448)
        return CUDA_ERROR_INVALID_VALUE;
    memset(&op, 0, sizeof(op));
    op.kind = SIM_OP_KERNEL;
    op.api = api;
    op.u.kern.k = f->k;
    if ((r = pack_args(f->k, params, extra, op.u.kern.args)))
        return r;
    if ((r = cudasim_stream_resolve(hs, pt, &s)))
        return r;
    return cudasim_op_submit(s, &op, SIM_WAIT_NONE);
}
