/* CUtensorMap descriptors: cuTensorMapEncodeTiled/Im2col validate the basics and
 * write an opaque 128-byte blob in which the global address never appears in plain
 * form (each word is whitened and rotated), so only a shim that records at encode
 * time can find the address; the simulator decodes it for bs_fill_tensormap_u32. */
#include "sim.h"

#include <string.h>

#define TMAP_MAGIC 0x434d5453u /* "STMC" */

/* The plain layout, 16 words. */
struct plain {
    uint32_t magic;
    uint8_t kind, dtype, rank, elem_size;
    uint64_t addr;
    uint64_t dim[5];
    uint64_t stride[4]; /* bytes, for dims 1..rank-1 */
    uint16_t box[5];
    uint8_t estride[5];
    uint8_t interleave, swizzle, l2, oob, pad;
    uint64_t check;
};
_Static_assert(sizeof(struct plain) <= 128, "tensor map plain form must fit 128 bytes");

static uint64_t key(unsigned i)
{
    /* splitmix64 of the word index: never zero for i < 16, so every word changes. */
    uint64_t z = 0x9e3779b97f4a7c15ull * (i + 1) + 0x6273696d2d746d00ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t v, unsigned r) { return r ? (v << r) | (v >> (64 - r)) : v; }
static uint64_t rotr(uint64_t v, unsigned r) { return r ? (v >> r) | (v << (64 - r)) : v; }

static uint64_t checksum(const uint64_t *w)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned i = 0; i < 15; i++)
        h = (h ^ w[i]) * 0x100000001b3ull;
    return h;
}

static void encode(CUtensorMap *map, struct plain *p)
{
    uint64_t w[16] = {0};
    memcpy(w, p, sizeof(*p));
    w[15] = checksum(w);
    for (unsigned i = 0; i < 16; i++)
        map->opaque[i] = rotl(w[i] ^ key(i), (i * 7 + 13) % 64);
}

static bool decode(const void *desc, struct plain *p)
{
    uint64_t w[16];
    memcpy(w, desc, sizeof(w));
    for (unsigned i = 0; i < 16; i++)
        w[i] = rotr(w[i], (i * 7 + 13) % 64) ^ key(i);
    if (w[15] != checksum(w))
        return false;
    memcpy(p, w, sizeof(*p));
    return p->magic == TMAP_MAGIC && p->rank >= 1 && p->rank <= 5;
}

bool cudasim_tmap_decode(const void *desc128, struct sim_tmap *out)
{
    struct plain p;
    if (!decode(desc128, &p))
        return false;
    memset(out, 0, sizeof(*out));
    out->kind = p.kind;
    out->dtype = p.dtype;
    out->rank = p.rank;
    out->elem_size = p.elem_size;
    out->addr = p.addr;
    memcpy(out->dim, p.dim, sizeof(p.dim));
    out->stride[0] = p.elem_size;
    for (unsigned i = 1; i < p.rank; i++)
        out->stride[i] = p.stride[i - 1];
    return true;
}

static unsigned elem_size(CUtensorMapDataType t)
{
    switch (t) {
    case CU_TENSOR_MAP_DATA_TYPE_UINT8: return 1;
    case CU_TENSOR_MAP_DATA_TYPE_UINT16:
    case CU_TENSOR_MAP_DATA_TYPE_FLOAT16:
    case CU_TENSOR_MAP_DATA_TYPE_BFLOAT16: return 2;
    case CU_TENSOR_MAP_DATA_TYPE_UINT32:
    case CU_TENSOR_MAP_DATA_TYPE_INT32:
    case CU_TENSOR_MAP_DATA_TYPE_FLOAT32:
    case CU_TENSOR_MAP_DATA_TYPE_FLOAT32_FTZ:
    case CU_TENSOR_MAP_DATA_TYPE_TFLOAT32:
    case CU_TENSOR_MAP_DATA_TYPE_TFLOAT32_FTZ: return 4;
    case CU_TENSOR_MAP_DATA_TYPE_UINT64:
    case CU_TENSOR_MAP_DATA_TYPE_INT64:
    case CU_TENSOR_MAP_DATA_TYPE_FLOAT64: return 8;
    default: return 0; /* packed sub-byte types: not simulated */
    }
}

/* The checks the driver documents that matter for finding memory: rank, alignment
 * of the address and strides, dimension and box limits. */
static CUresult common(CUtensorMap *map, CUtensorMapDataType dtype, cuuint32_t rank, void *addr,
                       const cuuint64_t *dim, const cuuint64_t *strides, const cuuint32_t *estrides,
                       CUtensorMapInterleave il, CUtensorMapSwizzle sw, CUtensorMapL2promotion l2,
                       CUtensorMapFloatOOBfill oob, unsigned min_rank, struct plain *p)
{
    unsigned es = elem_size(dtype);
    uintptr_t a = (uintptr_t)addr;
    if (!map || ((uintptr_t)map % 64) || !dim || !estrides || (rank > 1 && !strides) || es == 0)
        return CUDA_ERROR_INVALID_VALUE;
    if (rank < min_rank || rank > 5 || (il != CU_TENSOR_MAP_INTERLEAVE_NONE && rank < 3))
        return CUDA_ERROR_INVALID_VALUE;
    if (!a || a % (il == CU_TENSOR_MAP_INTERLEAVE_32B ? 32 : 16))
        return CUDA_ERROR_INVALID_VALUE;
    memset(p, 0, sizeof(*p));
    for (unsigned i = 0; i < rank; i++) {
        if (dim[i] == 0 || dim[i] > ((uint64_t)1 << 32) || estrides[i] == 0 || estrides[i] > 8)
            return CUDA_ERROR_INVALID_VALUE;
        p->dim[i] = dim[i];
        p->estride[i] = (uint8_t)estrides[i];
    }
    for (unsigned i = 0; i + 1 < rank; i++) {
        if (strides[i] % 16 || strides[i] >= ((uint64_t)1 << 40))
            return CUDA_ERROR_INVALID_VALUE;
        p->stride[i] = strides[i];
    }
    p->magic = TMAP_MAGIC;
    p->dtype = (uint8_t)dtype;
    p->rank = (uint8_t)rank;
    p->elem_size = (uint8_t)es;
    p->addr = a;
    p->interleave = (uint8_t)il;
    p->swizzle = (uint8_t)sw;
    p->l2 = (uint8_t)l2;
    p->oob = (uint8_t)oob;
    return CUDA_SUCCESS;
}

CUresult cudasim_tmap_encode_tiled(CUtensorMap *map, CUtensorMapDataType dtype, cuuint32_t rank, void *addr,
                                   const cuuint64_t *dim, const cuuint64_t *strides, const cuuint32_t *box,
                                   const cuuint32_t *estrides, CUtensorMapInterleave il, CUtensorMapSwizzle sw,
                                   CUtensorMapL2promotion l2, CUtensorMapFloatOOBfill oob)
{
    struct plain p;
    CUresult r = common(map, dtype, rank, addr, dim, strides, estrides, il, sw, l2, oob, 1, &p);
    if (r)
        return r;
    if (!box)
        return CUDA_ERROR_INVALID_VALUE;
    for (unsigned i = 0; i < rank; i++) {
        if (box[i] == 0 || box[i] > 256)
            return CUDA_ERROR_INVALID_VALUE;
        p.box[i] = (uint16_t)box[i];
    }
    if (il == CU_TENSOR_MAP_INTERLEAVE_NONE && (box[0] * p.elem_size) % 16)
        return CUDA_ERROR_INVALID_VALUE;
    p.kind = 1;
    encode(map, &p);
    return CUDA_SUCCESS;
}

CUresult cudasim_tmap_encode_im2col(CUtensorMap *map, CUtensorMapDataType dtype, cuuint32_t rank, void *addr,
                                    const cuuint64_t *dim, const cuuint64_t *strides, const int *lower,
                                    const int *upper, cuuint32_t channels, cuuint32_t pixels,
                                    const cuuint32_t *estrides, CUtensorMapInterleave il, CUtensorMapSwizzle sw,
                                    CUtensorMapL2promotion l2, CUtensorMapFloatOOBfill oob)
{
    struct plain p;
    CUresult r = common(map, dtype, rank, addr, dim, strides, estrides, il, sw, l2, oob, 3, &p);
    if (r)
        return r;
    if (!lower || !upper || channels == 0 || channels > 256 || pixels == 0 || pixels > 1024)
        return CUDA_ERROR_INVALID_VALUE;
    p.box[0] = (uint16_t)channels;
    p.box[1] = (uint16_t)pixels;
    p.kind = 2;
    encode(map, &p);
    return CUDA_SUCCESS;
}

CUresult cudasim_tmap_replace_address(CUtensorMap *map, void *addr)
{
    struct plain p;
    if (!map || !decode(map, &p))
        return CUDA_ERROR_INVALID_VALUE;
    if (!addr || (uintptr_t)addr % (p.interleave == CU_TENSOR_MAP_INTERLEAVE_32B ? 32 : 16))
        return CUDA_ERROR_INVALID_VALUE;
    p.addr = (uintptr_t)addr;
    encode(map, &p);
    return CUDA_SUCCESS;
}
