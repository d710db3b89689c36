/* model-header.c: what `blockswap-run --check --model PATH` says about a model file,
 * read from its header only (a few MB at most, whatever the model's size): the bytes
 * of its tensors, its transformer blocks (the distinct `blocks.N.` prefixes of tensor
 * names, as WAN checkpoints name them) and the largest one, what lies outside them,
 * and the hidden width (the first dimension of block 0's self-attention q weight).
 *
 * safetensors: an 8-byte little-endian header length, then that many bytes of JSON:
 * {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, ...,
 * "__metadata__": {...}}. GGUF (versions 2 and 3): the magic "GGUF", a uint32 version,
 * uint64 tensor and metadata counts, the metadata key-value pairs, then per tensor its
 * name, dimension count, dimensions, ggml type and offset in the data section, which
 * starts at the next multiple of general.alignment (32 by default). A tensor's bytes
 * are the distance to the next tensor's offset, so no table of quantisation formats is
 * needed. */
#define _GNU_SOURCE
#include "model-header.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define HEADER_MAX (256u << 20) /* a safetensors header larger than this is refused */
#define NAME_MAX_LEN 1024
#define MAX_BLOCKS 100000

/* Per-block sums, indexed by N of `blocks.N.`. */
struct acc {
    uint64_t *bytes;
    int cap;
    struct model_info *mi;
};

/* N when name has a `blocks.N.` part that starts the name or follows a '.', else -1:
 * `model.diffusion_model.blocks.3.ffn.0.weight` is block 3; `vace_blocks.3.` is not. */
static int block_of(const char *name)
{
    for (const char *p = name; (p = strstr(p, "blocks.")) != NULL; p++) {
        if (p != name && p[-1] != '.')
            continue;
        const char *d = p + 7;
        long n = 0;
        if (*d < '0' || *d > '9')
            continue;
        while (*d >= '0' && *d <= '9' && n < MAX_BLOCKS)
            n = n * 10 + (*d++ - '0');
        if (*d == '.' && n < MAX_BLOCKS)
            return (int)n;
    }
    return -1;
}

static int add_tensor(struct acc *a, const char *name, uint64_t bytes, int ndims,
                      const uint64_t *dims)
{
    struct model_info *mi = a->mi;
    mi->tensors++;
    mi->total_bytes += bytes;
    int b = block_of(name);
    if (b < 0) {
        mi->outside_bytes += bytes;
        return 0;
    }
    if (b >= a->cap) {
        int ncap = a->cap ? a->cap : 64;
        while (ncap <= b)
            ncap *= 2;
        uint64_t *nb = realloc(a->bytes, (size_t)ncap * sizeof(*nb));
        if (!nb)
            return -ENOMEM;
        memset(nb + a->cap, 0xff, (size_t)(ncap - a->cap) * sizeof(*nb)); /* absent */
        a->bytes = nb;
        a->cap = ncap;
    }
    if (a->bytes[b] == UINT64_MAX)
        a->bytes[b] = 0;
    a->bytes[b] += bytes;
    /* The hidden width: block 0's q projection is width x width. */
    const char *q = strstr(name, "self_attn.q.weight");
    if (b == 0 && q && !q[18] && ndims == 2 && !mi->width)
        mi->width = dims[0];
    return 0;
}

static void finish(struct acc *a)
{
    struct model_info *mi = a->mi;
    for (int i = 0; i < a->cap; i++) {
        if (a->bytes[i] == UINT64_MAX)
            continue;
        mi->blocks++;
        mi->blocks_bytes += a->bytes[i];
        if (a->bytes[i] > mi->block_max)
            mi->block_max = a->bytes[i];
    }
    free(a->bytes);
}

/* ---- safetensors: a small JSON reader, enough for the header ---- */

struct js {
    const char *p, *end;
    int depth;
};

static void ws(struct js *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static int expect(struct js *j, char c)
{
    ws(j);
    if (j->p >= j->end || *j->p != c)
        return -1;
    j->p++;
    return 0;
}

/* A string into out (truncated to cap - 1; escapes other than \" and \\ kept as '?'). */
static int string(struct js *j, char *out, size_t cap)
{
    size_t n = 0;
    if (expect(j, '"') < 0)
        return -1;
    while (j->p < j->end && *j->p != '"') {
        char c = *j->p++;
        if (c == '\\') {
            if (j->p >= j->end)
                return -1;
            c = *j->p++;
            if (c == 'u') {
                if (j->end - j->p < 4)
                    return -1;
                j->p += 4;
                c = '?';
            } else if (c != '"' && c != '\\' && c != '/') {
                c = '?';
            }
        }
        if (out && n + 1 < cap)
            out[n++] = c;
    }
    if (j->p >= j->end)
        return -1;
    j->p++;
    if (out && cap)
        out[n] = '\0';
    return 0;
}

static int number(struct js *j, uint64_t *v)
{
    ws(j);
    const char *s = j->p;
    uint64_t x = 0;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
        if (x > (UINT64_MAX - 9) / 10)
            return -1;
        x = x * 10 + (uint64_t)(*j->p++ - '0');
    }
    if (j->p == s)
        return -1;
    *v = x;
    return 0;
}

static int skip_value(struct js *j)
{
    ws(j);
    if (j->p >= j->end || ++j->depth > 64)
        return -1;
    int r = 0;
    char c = *j->p;
    if (c == '"') {
        r = string(j, NULL, 0);
    } else if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        j->p++;
        ws(j);
        if (j->p < j->end && *j->p == close) {
            j->p++;
        } else {
            for (;;) {
                if (c == '{' && (string(j, NULL, 0) < 0 || expect(j, ':') < 0)) {
                    r = -1;
                    break;
                }
                if (skip_value(j) < 0) {
                    r = -1;
                    break;
                }
                ws(j);
                if (j->p < j->end && *j->p == ',') {
                    j->p++;
                    continue;
                }
                r = expect(j, close);
                break;
            }
        }
    } else {
        /* A number, true, false or null. */
        const char *s = j->p;
        while (j->p < j->end && strchr("0123456789+-.eEtruefalsn", *j->p))
            j->p++;
        r = j->p == s ? -1 : 0;
    }
    j->depth--;
    return r;
}

/* One tensor's object: its shape and data offsets; other keys skipped. */
static int tensor(struct js *j, struct acc *a, const char *name)
{
    uint64_t dims[8], off[2] = { 0, 0 };
    int ndims = 0, noff = 0;
    char key[64];
    if (expect(j, '{') < 0)
        return -1;
    ws(j);
    if (j->p < j->end && *j->p == '}') {
        j->p++;
        return -1;
    }
    for (;;) {
        if (string(j, key, sizeof(key)) < 0 || expect(j, ':') < 0)
            return -1;
        if (!strcmp(key, "shape") || !strcmp(key, "data_offsets")) {
            bool shape = key[0] == 's';
            if (expect(j, '[') < 0)
                return -1;
            ws(j);
            if (j->p < j->end && *j->p == ']') {
                j->p++;
            } else {
                for (;;) {
                    uint64_t v;
                    if (number(j, &v) < 0)
                        return -1;
                    if (shape && ndims < 8)
                        dims[ndims++] = v;
                    else if (!shape && noff < 2)
                        off[noff++] = v;
                    ws(j);
                    if (j->p < j->end && *j->p == ',') {
                        j->p++;
                        continue;
                    }
                    if (expect(j, ']') < 0)
                        return -1;
                    break;
                }
            }
        } else if (skip_value(j) < 0) {
            return -1;
        }
        ws(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            continue;
        }
        if (expect(j, '}') < 0)
            return -1;
        break;
    }
    if (noff != 2 || off[1] < off[0])
        return -1;
    return add_tensor(a, name, off[1] - off[0], ndims, dims);
}

static int read_safetensors(FILE *f, uint64_t file_size, struct model_info *mi, char *err,
                            size_t errlen)
{
    unsigned char le[8];
    if (fread(le, 1, 8, f) != 8) {
        snprintf(err, errlen, "too short for a safetensors header");
        return -1;
    }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = n << 8 | le[i];
    if (n < 2 || n > HEADER_MAX || n > file_size - 8) {
        snprintf(err, errlen, "not a safetensors file (header length %llu, file %llu bytes)",
                 (unsigned long long)n, (unsigned long long)file_size);
        return -1;
    }
    char *h = malloc(n);
    if (!h || fread(h, 1, n, f) != n) {
        free(h);
        snprintf(err, errlen, "cannot read its %llu-byte header", (unsigned long long)n);
        return -1;
    }
    struct js j = { h, h + n, 0 };
    struct acc a = { NULL, 0, mi };
    char *name = malloc(NAME_MAX_LEN);
    int r = name && expect(&j, '{') == 0 ? 0 : -1;
    ws(&j);
    if (r == 0 && j.p < j.end && *j.p == '}')
        j.p++;
    else
        while (r == 0) {
            if (string(&j, name, NAME_MAX_LEN) < 0 || expect(&j, ':') < 0) {
                r = -1;
                break;
            }
            r = !strcmp(name, "__metadata__") ? skip_value(&j) : tensor(&j, &a, name);
            ws(&j);
            if (r == 0 && j.p < j.end && *j.p == ',') {
                j.p++;
                continue;
            }
            if (r == 0)
                r = expect(&j, '}');
            break;
        }
    free(name);
    free(h);
    finish(&a);
    if (r < 0) {
        snprintf(err, errlen, "its safetensors header is not the JSON expected");
        return -1;
    }
    mi->format = "safetensors";
    return 0;
}

/* ---- GGUF ---- */

static int rd(FILE *f, void *p, size_t n)
{
    return fread(p, 1, n, f) == n ? 0 : -1;
}

static int rd_u32(FILE *f, uint32_t *v)
{
    unsigned char b[4];
    if (rd(f, b, 4) < 0)
        return -1;
    *v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    return 0;
}

static int rd_u64(FILE *f, uint64_t *v)
{
    uint32_t lo, hi;
    if (rd_u32(f, &lo) < 0 || rd_u32(f, &hi) < 0)
        return -1;
    *v = (uint64_t)hi << 32 | lo;
    return 0;
}

/* A GGUF string: uint64 length, bytes. Into out (truncated), or skipped. */
static int rd_str(FILE *f, char *out, size_t cap)
{
    uint64_t n;
    if (rd_u64(f, &n) < 0 || n > (1u << 30))
        return -1;
    size_t keep = out && cap ? (n < cap - 1 ? n : cap - 1) : 0;
    if (keep && rd(f, out, keep) < 0)
        return -1;
    if (out && cap)
        out[keep] = '\0';
    return n > keep ? fseeko(f, (off_t)(n - keep), SEEK_CUR) : 0;
}

/* Bytes of a fixed-size GGUF value type; 0 for string and array. */
static int gguf_size(uint32_t t)
{
    static const int size[] = { 1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8 };
    return t < sizeof(size) / sizeof(size[0]) ? size[t] : -1;
}

static int skip_gguf_value(FILE *f, uint32_t t, int depth)
{
    if (t == 8)
        return rd_str(f, NULL, 0);
    if (t == 9) {
        uint32_t et;
        uint64_t n;
        if (depth > 4 || rd_u32(f, &et) < 0 || rd_u64(f, &n) < 0)
            return -1;
        int s = gguf_size(et);
        if (s < 0)
            return -1;
        if (s > 0)
            return n > (1ull << 40) ? -1 : fseeko(f, (off_t)(n * (uint64_t)s), SEEK_CUR);
        for (uint64_t i = 0; i < n; i++)
            if (skip_gguf_value(f, et, depth + 1) < 0)
                return -1;
        return 0;
    }
    int s = gguf_size(t);
    return s <= 0 ? -1 : fseeko(f, s, SEEK_CUR);
}

struct gtensor {
    char *name;
    uint64_t offset, dims[2];
    int ndims;
};

static int cmp_offset(const void *x, const void *y)
{
    const struct gtensor *a = x, *b = y;
    return (a->offset > b->offset) - (a->offset < b->offset);
}

static int read_gguf(FILE *f, uint64_t file_size, struct model_info *mi, char *err,
                     size_t errlen)
{
    uint32_t version;
    uint64_t ntensors, nkv, alignment = 32;
    if (fseeko(f, 4, SEEK_SET) < 0 || rd_u32(f, &version) < 0 || rd_u64(f, &ntensors) < 0 ||
        rd_u64(f, &nkv) < 0) {
        snprintf(err, errlen, "its GGUF header is cut short");
        return -1;
    }
    if (version < 2 || version > 3) {
        snprintf(err, errlen, "GGUF version %u (2 and 3 are read)", version);
        return -1;
    }
    if (ntensors > 1000000 || nkv > 1000000) {
        snprintf(err, errlen, "its GGUF header claims %llu tensors and %llu metadata entries",
                 (unsigned long long)ntensors, (unsigned long long)nkv);
        return -1;
    }
    char key[256];
    for (uint64_t i = 0; i < nkv; i++) {
        uint32_t t;
        if (rd_str(f, key, sizeof(key)) < 0 || rd_u32(f, &t) < 0)
            goto bad;
        if (!strcmp(key, "general.alignment") && t == 4) {
            uint32_t v;
            if (rd_u32(f, &v) < 0)
                goto bad;
            if (v)
                alignment = v;
        } else if (skip_gguf_value(f, t, 0) < 0) {
            goto bad;
        }
    }
    struct gtensor *ts = calloc(ntensors ? ntensors : 1, sizeof(*ts));
    if (!ts)
        goto bad;
    int r = 0;
    uint64_t i = 0;
    for (; i < ntensors && r == 0; i++) {
        uint32_t nd, type;
        ts[i].name = malloc(NAME_MAX_LEN);
        if (!ts[i].name || rd_str(f, ts[i].name, NAME_MAX_LEN) < 0 || rd_u32(f, &nd) < 0 || nd > 8) {
            r = -1;
            break;
        }
        for (uint32_t d = 0; d < nd && r == 0; d++) {
            uint64_t v = 0;
            r = rd_u64(f, &v);
            if (d < 2)
                ts[i].dims[d] = v;
        }
        ts[i].ndims = (int)nd;
        if (r == 0 && (rd_u32(f, &type) < 0 || rd_u64(f, &ts[i].offset) < 0))
            r = -1;
    }
    uint64_t data = 0;
    if (r == 0) {
        off_t here = ftello(f);
        data = ((uint64_t)here + alignment - 1) / alignment * alignment;
        if (here < 0 || data > file_size)
            r = -1;
    }
    if (r == 0) {
        qsort(ts, ntensors, sizeof(*ts), cmp_offset);
        struct acc a = { NULL, 0, mi };
        for (uint64_t t = 0; t < ntensors && r == 0; t++) {
            uint64_t next = t + 1 < ntensors ? ts[t + 1].offset : file_size - data;
            if (next < ts[t].offset || data + ts[t].offset > file_size) {
                r = -1;
                break;
            }
            /* GGUF lists dimensions fastest first: a q weight's are (in, out). */
            uint64_t dims[2] = { ts[t].dims[1], ts[t].dims[0] };
            r = add_tensor(&a, ts[t].name, next - ts[t].offset, ts[t].ndims, dims);
        }
        finish(&a);
    }
    for (uint64_t t = 0; t < ntensors; t++)
        free(ts[t].name);
    free(ts);
    if (r < 0)
        goto bad;
    mi->format = "GGUF";
    return 0;
bad:
    snprintf(err, errlen, "its GGUF header is not what the GGUF specification describes");
    return -1;
}

int bs_model_read(const char *path, struct model_info *mi, char *err, size_t errlen)
{
    memset(mi, 0, sizeof(*mi));
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s", strerror(errno));
        return -1;
    }
    struct stat st;
    char magic[4];
    int r = -1;
    if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "not a regular file");
    } else if ((uint64_t)st.st_size < 8 || fread(magic, 1, 4, f) != 4) {
        snprintf(err, errlen, "too short for a safetensors or GGUF file");
    } else {
        mi->file_bytes = (uint64_t)st.st_size;
        if (!memcmp(magic, "GGUF", 4)) {
            r = read_gguf(f, mi->file_bytes, mi, err, errlen);
        } else {
            rewind(f);
            r = read_safetensors(f, mi->file_bytes, mi, err, errlen);
        }
    }
    fclose(f);
    return r;
}
