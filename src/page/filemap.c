/* page/filemap.c: which host addresses are a file's bytes (from /proc/self/maps and
 * /proc/self/pagemap), and the files the shim holds open to read those bytes back. Owns
 * its file list and counters under its own lock; never calls page/. */
#define _GNU_SOURCE
#include "page/backing.h"

#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

struct bs_file {
    struct bs_file *next;
    int fd;
    int refs;
    dev_t dev;
    ino_t ino;
    /* The identity when the file was opened: a read checks the file still has it. */
    off_t size;
    struct timespec mtime, ctime;
    char name[256];
};

static struct {
    pthread_mutex_t lock;
    struct bs_file *files;  /* every file held, each once per identity */
    uint64_t nfiles;
    int64_t bytes_referenced;
    uint64_t lookups, hits, reads, bytes_read, read_errors; /* atomics */
} FM = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* One line of /proc/self/maps. */
struct mapping {
    uintptr_t start, end;
    uint64_t offset;
    unsigned dev_major, dev_minor;
    uint64_t ino;
    bool readable, writable, shared;
    char path[256];
};

/* Opens a /proc file or the mapped file. A full descriptor table is the one failure
 * the user can fix, so it is named with its limit, once. */
static int open_ro(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && (errno == EMFILE || errno == ENFILE)) {
        int err = errno;
        struct rlimit rl = { 0, 0 };
        getrlimit(RLIMIT_NOFILE, &rl);
        bs_log_limited(1, BS_LOG_WARN, "cannot open %s: %s (file descriptor limit %llu): "
                       "weights uploaded from files are kept in host memory instead of being "
                       "read back from the file; raise the limit with `ulimit -n` (or set "
                       "BLOCKSWAP_FILE_BACKING=0 to say so up front)", path,
                       err == EMFILE ? "the process's file descriptor limit is reached"
                                     : "the system's file table is full",
                       (unsigned long long)rl.rlim_cur);
        errno = err;
    }
    return fd;
}

static void proc_unreadable(const char *path, int err)
{
    if (err == EMFILE || err == ENFILE)
        return; /* said by open_ro */
    bs_log_limited(1, BS_LOG_WARN, "cannot read %s (%s): weights uploaded from files are kept "
                   "in host memory instead of being read back from the file", path,
                   strerror(err));
}

/* Parses one maps line ("start-end perms offset maj:min inode   path"). */
static bool parse_line(const char *line, struct mapping *m)
{
    char perms[5];
    unsigned long long start, end, off, ino;
    int at = 0;
    if (sscanf(line, "%llx-%llx %4s %llx %x:%x %llu%n", &start, &end, perms, &off,
               &m->dev_major, &m->dev_minor, &ino, &at) != 7)
        return false;
    m->start = (uintptr_t)start;
    m->end = (uintptr_t)end;
    m->offset = off;
    m->ino = ino;
    m->readable = perms[0] == 'r';
    m->writable = perms[1] == 'w';
    m->shared = perms[3] == 's';
    const char *p = line + at;
    while (*p == ' ' || *p == '\t')
        p++;
    size_t len = strcspn(p, "\n");
    if (len >= sizeof(m->path))
        return false; /* cut: it could not be opened by path anyway */
    memcpy(m->path, p, len);
    m->path[len] = '\0';
    return true;
}

/* The mapping containing addr, read from /proc/self/maps at every lookup rather than
 * cached: an address range can be unmapped and reused by another mapping (another file,
 * another offset, private instead of shared) with nothing to tell a cache so. Lines are
 * in address order, and the kernel makes them as they are read, so reading stops at the
 * line past addr: a lookup costs the lines below it (about 0.1-0.5 ms in a process
 * with a few thousand mappings), small beside the copy of a weight it precedes.
 * Returns 1 found, 0 not mapped, or a negative errno. */
static int find_mapping(uintptr_t addr, struct mapping *out)
{
    static const char path[] = "/proc/self/maps";
    int fd = open_ro(path);
    if (fd < 0)
        return -errno;
    char buf[8192];
    size_t have = 0;
    int found = 0;
    for (;;) {
        ssize_t r = read(fd, buf + have, sizeof(buf) - 1 - have);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            found = -errno;
            break;
        }
        have += (size_t)r;
        buf[have] = '\0';
        char *line = buf, *nl;
        while ((nl = strchr(line, '\n')) != NULL) {
            unsigned long long start = 0, end = 0;
            if (sscanf(line, "%llx-%llx", &start, &end) == 2 && start > addr)
                goto done; /* past addr: not mapped */
            if (end > addr && start <= addr) {
                *nl = '\0';
                found = parse_line(line, out) ? 1 : 0;
                goto done;
            }
            line = nl + 1;
        }
        /* Keep the partial last line; a line longer than the buffer is not a file we
         * could open by its path: skip it. */
        size_t rest = have - (size_t)(line - buf);
        if (rest == sizeof(buf) - 1)
            rest = 0;
        memmove(buf, line, rest);
        have = rest;
        if (r == 0)
            break;
    }
done:
    close(fd);
    return found;
}

/* Whether some page of [start, start+n), in a private mapping, is the process's own
 * copy: present but not a file page (written: copy-on-write made it anonymous), or
 * swapped (only anonymous pages of a file mapping go to swap). A page not present reads
 * from the file when touched. Returns 1 modified, 0 all the file's, or a negative errno
 * when pagemap cannot be read. */
static int private_pages_modified(uintptr_t start, size_t n)
{
    static const char path[] = "/proc/self/pagemap";
    long psz = sysconf(_SC_PAGESIZE);
    int fd = open_ro(path);
    if (fd < 0)
        return -errno;
    uint64_t first = start / (uint64_t)psz, last = (start + n - 1) / (uint64_t)psz;
    uint64_t e[512];
    int res = 0;
    for (uint64_t p = first; p <= last && !res;) {
        size_t want = (size_t)(last - p + 1 < 512 ? last - p + 1 : 512);
        ssize_t r = pread(fd, e, want * 8, (off_t)(p * 8));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0 || r % 8) {
            res = r < 0 ? -errno : -EIO;
            break;
        }
        for (size_t i = 0; i < (size_t)r / 8; i++) {
            bool present = e[i] >> 63 & 1, swapped = e[i] >> 62 & 1, file = e[i] >> 61 & 1;
            if (swapped || (present && !file)) {
                res = 1;
                break;
            }
        }
        p += (uint64_t)r / 8;
    }
    close(fd);
    return res;
}

/* The coarse alternative when pagemap is unreadable: the mapping's "Anonymous:" in
 * smaps, 0 when no page of the whole mapping is the process's copy. Returns 1 modified
 * (or not found), 0 clean, or a negative errno. */
static int smaps_anonymous(uintptr_t start)
{
    FILE *f = fopen("/proc/self/smaps", "re");
    if (!f)
        return -errno;
    char line[512];
    unsigned long long kb = 1;
    bool in = false;
    while (fgets(line, sizeof(line), f)) {
        unsigned long long s, e;
        if (sscanf(line, "%llx-%llx ", &s, &e) == 2) { /* a mapping's first line */
            if (in)
                break;
            in = s == start;
        } else if (in && sscanf(line, "Anonymous: %llu kB", &kb) == 1) {
            break;
        }
    }
    fclose(f);
    return kb != 0;
}

/* A held file of this identity that has not changed since it was opened, with a hold
 * added; NULL when none. Lock held. */
static struct bs_file *find_file(dev_t dev, ino_t ino)
{
    for (struct bs_file *f = FM.files; f; f = f->next) {
        struct stat st;
        if (f->dev != dev || f->ino != ino || fstat(f->fd, &st) != 0)
            continue;
        if (st.st_size == f->size && st.st_mtim.tv_sec == f->mtime.tv_sec &&
            st.st_mtim.tv_nsec == f->mtime.tv_nsec && st.st_ctim.tv_sec == f->ctime.tv_sec &&
            st.st_ctim.tv_nsec == f->ctime.tv_nsec) {
            f->refs++;
            return f;
        }
    }
    return NULL;
}

/* The file behind mapping m, held. Opened through map_files (the mapped file itself,
 * whatever its path names now; needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE), else by
 * its path, which must still name the mapped inode. Lock held. */
static struct bs_file *open_file(const struct mapping *m)
{
    char mf[64];
    snprintf(mf, sizeof(mf), "/proc/self/map_files/%llx-%llx", (unsigned long long)m->start,
             (unsigned long long)m->end);
    int fd = open_ro(mf);
    if (fd < 0 && errno != EMFILE && errno != ENFILE)
        fd = open_ro(m->path);
    if (fd < 0)
        return NULL;
    struct stat st;
    struct bs_file *f = NULL;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || major(st.st_dev) != m->dev_major ||
        minor(st.st_dev) != m->dev_minor || (uint64_t)st.st_ino != m->ino)
        goto close_fd; /* the path names another file now */
    if ((f = find_file(st.st_dev, st.st_ino)) != NULL)
        goto close_fd; /* already held: no second descriptor */
    if (!(f = calloc(1, sizeof(*f))))
        goto close_fd;
    f->fd = fd;
    f->refs = 1;
    f->dev = st.st_dev;
    f->ino = st.st_ino;
    f->size = st.st_size;
    f->mtime = st.st_mtim;
    f->ctime = st.st_ctim;
    snprintf(f->name, sizeof(f->name), "%s", m->path);
    f->next = FM.files;
    FM.files = f;
    FM.nfiles++;
    return f;
close_fd:
    close(fd);
    return f;
}

/* Drops a hold; the last one closes the file. Lock held. */
static void unhold_locked(struct bs_file *f)
{
    if (--f->refs > 0)
        return;
    struct bs_file **pp = &FM.files;
    while (*pp != f)
        pp = &(*pp)->next;
    *pp = f->next;
    FM.nfiles--;
    close(f->fd);
    free(f);
}

bool bs_filemap_lookup(const void *src, size_t n, struct bs_file_ref *ref)
{
    uintptr_t a = (uintptr_t)src;
    struct mapping m;
    if (!n || a + n < a)
        return false;
    __atomic_fetch_add(&FM.lookups, 1, __ATOMIC_RELAXED);
    int r = find_mapping(a, &m);
    if (r < 0)
        proc_unreadable("/proc/self/maps", -r);
    /* Anonymous memory has inode 0 and no path; "[heap]" and the like, no inode. */
    if (r <= 0 || !m.ino || m.path[0] != '/' || !m.readable || a + n > m.end)
        return false;
    size_t plen = strlen(m.path);
    if (plen >= 10 && strcmp(m.path + plen - 10, " (deleted)") == 0)
        return false;
    if (m.shared && m.writable)
        return false; /* its stores reach the file without moving mtime when a page is dirty */
    if (!m.shared) {
        int mod = private_pages_modified(a, n);
        if (mod == -EMFILE || mod == -ENFILE)
            return false; /* said by open_ro */
        if (mod < 0) {
            int s = smaps_anonymous(m.start);
            if (s < 0) {
                proc_unreadable("/proc/self/pagemap and /proc/self/smaps", -s);
                return false;
            }
            mod = s;
        }
        if (mod)
            return false;
    }
    /* Only the file list needs the lock: lookups read /proc side by side. */
    uint64_t off = m.offset + (a - m.start);
    pthread_mutex_lock(&FM.lock);
    struct bs_file *f = open_file(&m);
    if (f && off + n > (uint64_t)f->size) { /* past the end of the file: zeros, not its bytes */
        unhold_locked(f);
        f = NULL;
    }
    pthread_mutex_unlock(&FM.lock);
    if (!f)
        return false;
    ref->file = f;
    ref->off = off;
    __atomic_fetch_add(&FM.hits, 1, __ATOMIC_RELAXED);
    return true;
}

void bs_filemap_hold(struct bs_file *f)
{
    pthread_mutex_lock(&FM.lock);
    f->refs++;
    pthread_mutex_unlock(&FM.lock);
}

void bs_filemap_release(struct bs_file *f)
{
    pthread_mutex_lock(&FM.lock);
    unhold_locked(f);
    pthread_mutex_unlock(&FM.lock);
}

/* The identity check. A file REPLACED by a rename keeps this descriptor on the old
 * inode, whose bytes are still the weight's: nothing is wrong. A file rewritten in place
 * (mtime) or truncated (size) is what this catches, and ctime a write whose mtime was
 * set back (futimens, cp -p). ctime counts only while the inode still has a name: the
 * rename that replaced it (or a delete) moved its ctime without touching its bytes. A
 * chmod moves ctime too and fails the read: a weight not read is an error the user sees,
 * a wrong one is not. */
int bs_filemap_read(struct bs_file *f, uint64_t off, void *dst, size_t n)
{
    struct stat st;
    int err = 0;
    if (fstat(f->fd, &st) != 0) {
        err = -errno;
        goto fail;
    }
    if ((uint64_t)st.st_size < off + n || st.st_size < f->size ||
        st.st_mtim.tv_sec != f->mtime.tv_sec || st.st_mtim.tv_nsec != f->mtime.tv_nsec ||
        (st.st_nlink > 0 && (st.st_ctim.tv_sec != f->ctime.tv_sec ||
                             st.st_ctim.tv_nsec != f->ctime.tv_nsec))) {
        err = BS_FILEMAP_CHANGED;
        goto fail;
    }
    for (size_t done = 0; done < n;) {
        ssize_t r = pread(f->fd, (char *)dst + done, n - done, (off_t)(off + done));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            /* End of file before the end of the range: truncated since the check. */
            err = r == 0 ? BS_FILEMAP_CHANGED : -errno;
            goto fail;
        }
        done += (size_t)r;
    }
    __atomic_fetch_add(&FM.reads, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&FM.bytes_read, n, __ATOMIC_RELAXED);
    return 0;
fail:
    __atomic_fetch_add(&FM.read_errors, 1, __ATOMIC_RELAXED);
    return err;
}

const char *bs_filemap_name(const struct bs_file *f)
{
    return f->name;
}

void bs_filemap_account(int64_t bytes)
{
    __atomic_fetch_add(&FM.bytes_referenced, bytes, __ATOMIC_RELAXED);
}

void bs_filemap_stats(struct bs_filemap_stats *st)
{
    pthread_mutex_lock(&FM.lock);
    st->files = FM.nfiles;
    pthread_mutex_unlock(&FM.lock);
    int64_t b = __atomic_load_n(&FM.bytes_referenced, __ATOMIC_RELAXED);
    st->bytes_referenced = b > 0 ? (uint64_t)b : 0;
    st->lookups = __atomic_load_n(&FM.lookups, __ATOMIC_RELAXED);
    st->hits = __atomic_load_n(&FM.hits, __ATOMIC_RELAXED);
    st->reads = __atomic_load_n(&FM.reads, __ATOMIC_RELAXED);
    st->bytes_read = __atomic_load_n(&FM.bytes_read, __ATOMIC_RELAXED);
    st->read_errors = __atomic_load_n(&FM.read_errors, __ATOMIC_RELAXED);
}

/* The list is only ever changed by single pointer stores, so a child forked while
 * another thread held the lock still finds it whole. */
void bs_filemap_reset_after_fork(void)
{
    pthread_mutex_init(&FM.lock, NULL);
    for (struct bs_file *f = FM.files, *next; f; f = next) {
        next = f->next;
        close(f->fd);
        free(f);
    }
    FM.files = NULL;
    FM.nfiles = 0;
    FM.bytes_referenced = 0;
    FM.lookups = FM.hits = FM.reads = FM.bytes_read = FM.read_errors = 0;
}
