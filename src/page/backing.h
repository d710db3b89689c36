/* page/backing.h: host backing that is not a copy in RAM: file ranges a weight was uploaded
 * from (filemap.c) and the pinned staging ring that copies them in (staging.c). Neither
 * calls back into page/; each has its own lock. */
#ifndef BS_PAGE_BACKING_H
#define BS_PAGE_BACKING_H

#include "bs.h"

/* ---- filemap.c: which host addresses are a file's bytes, and reading them back ---- */

/* A file held open by the shim: its own descriptor, and the identity (size, mtime,
 * ctime) it had when the first reference was taken. Opaque; refcounted. */
struct bs_file;

struct bs_file_ref {
    struct bs_file *file; /* one hold, the caller's */
    uint64_t off;         /* the file offset of the looked-up address */
};

/* A read found the file changed since the reference was taken (written in place, or
 * truncated below the range): the bytes are no longer the weight's. */
#define BS_FILEMAP_CHANGED (-ESTALE)

/* Whether [src, src+n) lies in one file mapping of this process whose pages in that
 * range hold the file's bytes (a private mapping: no page of the range written). On
 * true, *ref holds the file (one hold: release it) and src's offset in it. False for
 * anonymous memory, deleted or non-regular files, ranges spanning mappings or past the
 * end of the file, a writable shared mapping, and when /proc or the file descriptor
 * limit says no (logged once). Never blocks on page/; may take a millisecond (it reads
 * /proc/self/maps). */
bool bs_filemap_lookup(const void *src, size_t n, struct bs_file_ref *ref);
void bs_filemap_hold(struct bs_file *f);
/* The file's descriptor closes with its last hold. */
void bs_filemap_release(struct bs_file *f);
/* Reads n bytes at off into dst. Returns 0, BS_FILEMAP_CHANGED, or another negative
 * errno (-EIO and the like, from pread). Thread-safe; no lock held while reading. */
int bs_filemap_read(struct bs_file *f, uint64_t off, void *dst, size_t n);
/* The path the file had when it was opened, for messages. */
const char *bs_filemap_name(const struct bs_file *f);
/* What the caller backs by files, added (positive) or removed (negative), for the counters. */
void bs_filemap_account(int64_t bytes);

struct bs_filemap_stats {
    uint64_t files;            /* files held open now */
    uint64_t bytes_referenced; /* as accounted by the caller */
    uint64_t lookups, hits;    /* bs_filemap_lookup calls, and those that said true */
    uint64_t reads, bytes_read, read_errors;
};
void bs_filemap_stats(struct bs_filemap_stats *st);
/* In a forked child: the parent's holders are gone; closes every file, zeroes counters. */
void bs_filemap_reset_after_fork(void);

/* ---- staging.c: the bounded pinned staging ring ---- */

/* Puts len bytes (the piece at off of the range being copied) into buf. Returns 0 or a
 * negative errno, which stops the copy. */
typedef int (*bs_staging_fill_fn)(void *ctx, uint64_t off, void *buf, size_t len);

/* Copies n bytes to dst_va on stream s, fill() supplying them piece by piece through the
 * ring: each piece waits for its ring chunk's previous copy, is filled, and its copy is
 * queued. Returns once the last copy is queued (record an event on s to know when the
 * data has landed). CUDA_ERROR_UNKNOWN with *fill_err set when fill() failed (the copies
 * queued before it still run: the destination holds part of the range); a driver error
 * as is. One caller at a time runs (others wait); never calls page/. */
CUresult bs_staging_copy_in(uint64_t dst_va, size_t n, CUstream s, bs_staging_fill_fn fill,
                            void *ctx, int *fill_err);

struct bs_staging_stats {
    uint64_t ring_bytes;   /* pinned host memory held by the ring (0: a pageable bounce buffer) */
    uint64_t chunk_bytes;
    uint64_t copies, bytes;
    uint64_t fill_ns;      /* time spent in fill(), wall clock */
    uint64_t wait_ns;      /* time spent waiting for a ring chunk's previous copy */
};
void bs_staging_stats(struct bs_staging_stats *st);
/* At exit: waits for the ring's copies and frees it (needs the context current). */
void bs_staging_exit(void);
/* The most the ring may pin (set before its first use); below 2 MiB it is one pageable
 * bounce buffer. */
void bs_staging_limit(uint64_t bytes);
/* In a forked child: forgets the parent's ring (its pinned memory and events are not
 * the child's); a later copy allocates anew. */
void bs_staging_reset_after_fork(void);

#endif
