/* page/fileback.c: weights backed by the file they were loaded from. Owns the file
 * fields of each managed allocation: which range of which file the host copied into
 * it, and whether anything else was written; pages such an allocation in through the
 * staging ring, and turns it into anonymous host backing when the file cannot stand. */
#define _GNU_SOURCE
#include "page/backing.h"
#include "page/internal.h"

#include <string.h>

#define PG bs_pg

static void set_range(struct managed *m, const struct bs_file_ref *ref, uint64_t off, size_t n)
{
    if (m->fb_file) {
        bs_filemap_account(-(int64_t)(m->fb_hi - m->fb_lo));
        bs_filemap_release(m->fb_file);
    }
    m->fb_file = ref->file; /* the lookup's hold is m's */
    m->fb_lo = off;
    m->fb_hi = off + n;
    m->fb_delta = (int64_t)ref->off - (int64_t)off;
    bs_filemap_account((int64_t)n);
}

/* A loader writes each weight once, in order: one linear range of one file per
 * allocation covers what PyTorch, ComfyUI and GGUF loaders do (a segment of tensors
 * that lie in a row in the file). Anything else makes the file unable to stand alone,
 * and the allocation gets anonymous backing like any other. */
bool pg_fb_note(struct managed *m, uint64_t off, const void *src, size_t n)
{
    struct bs_file_ref ref;
    if (!n)
        return pg_fb_backed(m);
    /* Only loads are looked up (each lookup reads /proc): once a kernel used the
     * allocation, what the host copies in is data of the moment, kept in memory. */
    if (!bs_cfg.file_backing || m->fb_mixed || m->sched.used ||
        !bs_filemap_lookup(src, n, &ref)) {
        /* Anonymous bytes: kept in VRAM or host backing, never in the file. */
        if (m->anon_lo >= m->anon_hi)
            m->anon_lo = off, m->anon_hi = off + n;
        m->anon_lo = off < m->anon_lo ? off : m->anon_lo;
        m->anon_hi = off + n > m->anon_hi ? off + n : m->anon_hi;
        return false;
    }
    int64_t delta = (int64_t)ref.off - (int64_t)off;
    if (!m->fb_file || (off <= m->fb_lo && off + n >= m->fb_hi)) {
        set_range(m, &ref, off, n); /* the first, or one that covers all before it */
    } else if (ref.file == m->fb_file && delta == m->fb_delta && off <= m->fb_hi &&
               off + n >= m->fb_lo) {
        uint64_t lo = off < m->fb_lo ? off : m->fb_lo;
        uint64_t hi = off + n > m->fb_hi ? off + n : m->fb_hi;
        bs_filemap_account((int64_t)((hi - lo) - (m->fb_hi - m->fb_lo)));
        m->fb_lo = lo, m->fb_hi = hi;
        bs_filemap_release(ref.file);
    } else {
        bs_filemap_release(ref.file);
        m->fb_mixed = true;
        return false;
    }
    /* Anonymous bytes the file overwrote no longer count (ComfyUI uploads empty
     * parameters first, then the checkpoint over them). */
    if (m->anon_lo >= off && m->anon_hi <= off + n)
        m->anon_lo = m->anon_hi = 0;
    return pg_fb_backed(m);
}

/* From here on m's host backing (or VRAM) is what holds it, for good: a later file
 * range could not tell which bytes the file alone would hold. */
void pg_fb_drop(struct managed *m)
{
    if (m->fb_file) {
        bs_filemap_account(-(int64_t)(m->fb_hi - m->fb_lo));
        bs_filemap_release(m->fb_file);
    }
    m->fb_file = NULL;
    m->fb_mixed = true;
}

static void changed_line(const struct managed *m, int err)
{
    char a[BS_SIZE_STR_LEN];
    if (err == BS_FILEMAP_CHANGED)
        bs_log_limited(10, BS_LOG_ERROR, "the weight at 0x%llx (%s) was loaded from %s, which "
                       "was truncated or rewritten since: its page-in stops here rather than "
                       "compute with other weights; restart the application, or set "
                       "BLOCKSWAP_FILE_BACKING=0 to keep copies in memory",
                       (unsigned long long)m->va, bs_size_str(m->size, a, sizeof(a)),
                       bs_filemap_name(m->fb_file));
    else
        bs_log_limited(10, BS_LOG_ERROR, "cannot read the weight at 0x%llx (%s) back from %s: "
                       "%s; set BLOCKSWAP_FILE_BACKING=0 to keep copies in memory",
                       (unsigned long long)m->va, bs_size_str(m->size, a, sizeof(a)),
                       bs_filemap_name(m->fb_file), strerror(-err));
}

CUresult pg_fb_read(struct managed *m, uint64_t off, void *dst, size_t n)
{
    /* Bytes outside the file range were never written: fresh memory reads as zero. */
    uint64_t lo = off > m->fb_lo ? off : m->fb_lo, hi = off + n < m->fb_hi ? off + n : m->fb_hi;
    memset(dst, 0, n);
    if (lo >= hi)
        return CUDA_SUCCESS;
    int err = bs_filemap_read(m->fb_file, lo + (uint64_t)m->fb_delta, (char *)dst + (lo - off), hi - lo);
    if (err) {
        changed_line(m, err);
        return CUDA_ERROR_FILE_NOT_FOUND;
    }
    return CUDA_SUCCESS;
}

CUresult pg_fb_materialize(struct managed *m)
{
    CUresult r = pg_ensure_host(m);
    if (r == CUDA_SUCCESS && m->fb_file)
        r = pg_fb_read(m, 0, m->host, m->size);
    if (r == CUDA_SUCCESS)
        pg_fb_drop(m);
    return r;
}

static int fill_from_file(void *ctx, uint64_t off, void *buf, size_t len)
{
    const struct managed *m = ctx;
    return bs_filemap_read(m->fb_file, m->fb_lo + off + (uint64_t)m->fb_delta, buf, len);
}

CUresult pg_fb_fill(struct managed *m)
{
    CUresult r = CUDA_SUCCESS;
    /* What the host never wrote reads as zero, as it did from anonymous backing. */
    if (m->fb_lo)
        r = bs_real.cuMemsetD8Async(m->va, 0, m->fb_lo, PG.h2d);
    if (r == CUDA_SUCCESS && m->fb_hi < m->size)
        r = bs_real.cuMemsetD8Async(m->va + m->fb_hi, 0, m->size - m->fb_hi, PG.h2d);
    if (r != CUDA_SUCCESS)
        return r;
    int err;
    r = pg_fill_staged(m, m->fb_lo, m->fb_hi - m->fb_lo, fill_from_file, &err);
    if (err)
        changed_line(m, err);
    return r;
}
