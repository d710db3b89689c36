/* Unit: page/filemap.c alone: which host addresses are a file's bytes (private and
 * shared mappings, anonymous memory, a written private page, past the end of the file,
 * a deleted file), held references that outlive the application's mapping, and reads
 * that catch a file truncated or rewritten in place but not one replaced by a rename;
 * a full file descriptor table is one line and a fallback. */
#define _GNU_SOURCE
#include "page/backing.h"
#include "cutest.h"

#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAGE 4096
#define FILE_BYTES (64 * PAGE + 100) /* the last page partial */

static char path[256];

static unsigned char byte_at(uint64_t off, unsigned seed)
{
    return (unsigned char)((off * 131 + seed * 7 + (off >> 12)) & 0xff);
}

/* The test file, FILE_BYTES of the pattern for seed, written and closed. */
static void write_file(const char *p, unsigned seed)
{
    static unsigned char buf[FILE_BYTES];
    for (uint64_t i = 0; i < FILE_BYTES; i++)
        buf[i] = byte_at(i, seed);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    CHECK(fd >= 0);
    CHECK(write(fd, buf, FILE_BYTES) == FILE_BYTES);
    CHECK(close(fd) == 0);
}

/* Maps the file from page `first`, as the application would; *fdp stays open. */
static unsigned char *map_file(int prot, int flags, int first, size_t len, int *fdp)
{
    int fd = open(path, (prot & PROT_WRITE) && (flags & MAP_SHARED) ? O_RDWR : O_RDONLY);
    CHECK(fd >= 0);
    void *p = mmap(NULL, len, prot, flags, fd, (off_t)first * PAGE);
    CHECK(p != MAP_FAILED);
    *fdp = fd;
    return p;
}

static void check_bytes(struct bs_file *f, uint64_t off, size_t n, unsigned seed)
{
    static unsigned char got[FILE_BYTES];
    int rr = bs_filemap_read(f, off, got, n);
    if (rr) fprintf(stderr, "read at %llu of %zu: %d\n", (unsigned long long)off, n, rr);
    CHECK(rr == 0);
    for (size_t i = 0; i < n; i++)
        if (got[i] != byte_at(off + i, seed)) {
            fprintf(stderr, "byte %zu of the read at %llu differs\n", i, (unsigned long long)off);
            exit(1);
        }
}

static int count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    CHECK(d);
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

static void private_mappings_are_the_file_with_the_offset(void)
{
    /* ComfyUI's loader (read-only) and safetensors (read-write, copy on write). */
    const int prots[] = { PROT_READ, PROT_READ | PROT_WRITE };
    for (int k = 0; k < 2; k++) {
        int fd;
        unsigned char *p = map_file(prots[k], MAP_PRIVATE, 3, 40 * PAGE, &fd);
        volatile unsigned char touch = p[5 * PAGE]; /* a page present, read only */
        (void)touch;
        struct bs_file_ref ref;
        CHECK(bs_filemap_lookup(p + 1000, 20 * PAGE, &ref));
        CHECK_EQ_U64(ref.off, 3 * PAGE + 1000);
        CHECK(strcmp(bs_filemap_name(ref.file), path) == 0);
        check_bytes(ref.file, ref.off, 20 * PAGE, 1);
        bs_filemap_release(ref.file);
        munmap(p, 40 * PAGE);
        close(fd);
    }
}

static void shared_readonly_mapping_is_the_file(void)
{
    int fd;
    unsigned char *p = map_file(PROT_READ, MAP_SHARED, 2, 30 * PAGE, &fd);
    struct bs_file_ref ref;
    CHECK(bs_filemap_lookup(p + 7 * PAGE + 3, 10 * PAGE, &ref));
    CHECK_EQ_U64(ref.off, 9 * PAGE + 3);
    check_bytes(ref.file, ref.off, 10 * PAGE, 1);
    bs_filemap_release(ref.file);
    munmap(p, 30 * PAGE);
    close(fd);
    /* Writable and shared: the process's stores reach the file with no fault to move
     * its mtime once a page is dirty. */
    p = map_file(PROT_READ | PROT_WRITE, MAP_SHARED, 2, 30 * PAGE, &fd);
    CHECK(!bs_filemap_lookup(p + 7 * PAGE, PAGE, &ref));
    munmap(p, 30 * PAGE);
    close(fd);
}

static void anonymous_memory_is_not_a_file(void)
{
    struct bs_file_ref ref;
    void *a = mmap(NULL, 16 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(a != MAP_FAILED);
    memset(a, 1, 16 * PAGE);
    CHECK(!bs_filemap_lookup(a, 16 * PAGE, &ref));
    char *h = malloc(1000);
    CHECK(h && !bs_filemap_lookup(h, 1000, &ref));
    char stack[64];
    CHECK(!bs_filemap_lookup(stack, sizeof(stack), &ref));
    free(h);
    munmap(a, 16 * PAGE);
    /* Nor a file mapping the process cannot read (nothing could be uploaded from it). */
    int fd;
    unsigned char *p = map_file(PROT_NONE, MAP_PRIVATE, 0, 4 * PAGE, &fd);
    CHECK(!bs_filemap_lookup(p, PAGE, &ref));
    munmap(p, 4 * PAGE);
    close(fd);
}

/* One byte written makes that page the process's own copy: a range holding it is not the
 * file's, a range beside it still is. */
static void private_page_written_is_not_the_file(void)
{
    int fd;
    unsigned char *p = map_file(PROT_READ | PROT_WRITE, MAP_PRIVATE, 0, 32 * PAGE, &fd);
    struct bs_file_ref ref;
    CHECK(bs_filemap_lookup(p, 32 * PAGE, &ref));
    bs_filemap_release(ref.file);
    p[10 * PAGE + 17] ^= 0xff;
    CHECK(!bs_filemap_lookup(p, 32 * PAGE, &ref));
    CHECK(!bs_filemap_lookup(p + 10 * PAGE + 17, 1, &ref));
    CHECK(bs_filemap_lookup(p, 10 * PAGE, &ref));
    bs_filemap_release(ref.file);
    CHECK(bs_filemap_lookup(p + 11 * PAGE, 5 * PAGE, &ref));
    bs_filemap_release(ref.file);
    munmap(p, 32 * PAGE);
    close(fd);
}

/* Past the file's last byte a mapping reads zeros; across two mappings, neither holds it. */
static void ranges_past_the_file_or_across_mappings_are_not(void)
{
    int fd;
    unsigned char *p = map_file(PROT_READ, MAP_PRIVATE, 60, 8 * PAGE, &fd);
    struct bs_file_ref ref;
    CHECK(bs_filemap_lookup(p, 4 * PAGE + 100, &ref)); /* up to the last byte */
    bs_filemap_release(ref.file);
    CHECK(!bs_filemap_lookup(p, 4 * PAGE + 101, &ref));
    CHECK(!bs_filemap_lookup(p + 8 * PAGE - 1, 2, &ref));
    munmap(p, 8 * PAGE);
    close(fd);
}

/* The application unmaps and closes right after the upload: the shim's own descriptor
 * still reads the bytes, one per file however many references, closed with the last. */
static void reference_outlives_the_applications_mapping(void)
{
    int fds0 = count_fds(), fd;
    struct bs_filemap_stats st;
    unsigned char *p = map_file(PROT_READ, MAP_PRIVATE, 0, 64 * PAGE, &fd);
    struct bs_file_ref r1, r2;
    CHECK(bs_filemap_lookup(p + 4 * PAGE, PAGE, &r1));
    CHECK(bs_filemap_lookup(p + 20 * PAGE, 3 * PAGE, &r2));
    CHECK(r1.file == r2.file);
    bs_filemap_stats(&st);
    CHECK_EQ_U64(st.files, 1);
    munmap(p, 64 * PAGE);
    close(fd);
    CHECK_EQ_U64(count_fds(), fds0 + 1);
    check_bytes(r1.file, r1.off, PAGE, 1);
    check_bytes(r2.file, r2.off, 3 * PAGE, 1);
    bs_filemap_release(r1.file);
    check_bytes(r2.file, r2.off, 3 * PAGE, 1);
    bs_filemap_release(r2.file);
    bs_filemap_stats(&st);
    CHECK_EQ_U64(st.files, 0);
    CHECK_EQ_U64(count_fds(), fds0);
}

/* Takes a reference to pages 8..15 through a mapping that is gone at once. */
static struct bs_file_ref take_ref(void)
{
    int fd;
    unsigned char *p = map_file(PROT_READ, MAP_SHARED, 0, 16 * PAGE, &fd);
    struct bs_file_ref ref;
    CHECK(bs_filemap_lookup(p + 8 * PAGE, 8 * PAGE, &ref));
    munmap(p, 16 * PAGE);
    close(fd);
    return ref;
}

static void truncation_is_detected(void)
{
    write_file(path, 1);
    struct bs_file_ref ref = take_ref();
    CHECK(truncate(path, 12 * PAGE) == 0);
    unsigned char buf[8 * PAGE];
    CHECK(bs_filemap_read(ref.file, ref.off, buf, 8 * PAGE) == BS_FILEMAP_CHANGED);
    /* What is left below the new end is not trusted either. */
    CHECK(bs_filemap_read(ref.file, ref.off, buf, 2 * PAGE) == BS_FILEMAP_CHANGED);
    bs_filemap_release(ref.file);
    write_file(path, 1);
}

/* The same size and new bytes: caught by the modification time, set explicitly here (a
 * second later, whatever the file system's granularity), and by the change time when
 * the modification time is set back to what it was. */
static void rewrite_in_place_is_detected(void)
{
    for (int restore = 0; restore < 2; restore++) {
        write_file(path, 1);
        struct bs_file_ref ref = take_ref();
        struct stat st;
        CHECK(stat(path, &st) == 0);
        /* Past the clock tick of a file system with coarse timestamps: the write must
         * move ctime. */
        if (restore)
            usleep(20000);
        int fd = open(path, O_WRONLY);
        CHECK(fd >= 0);
        unsigned char b = 0x5a;
        CHECK(pwrite(fd, &b, 1, 9 * PAGE) == 1);
        struct timespec ts[2] = { st.st_atim, st.st_mtim };
        if (!restore)
            ts[1].tv_sec += 1;
        CHECK(futimens(fd, ts) == 0);
        close(fd);
        CHECK(stat(path, &st) == 0 && (restore || st.st_mtim.tv_sec == ts[1].tv_sec));
        unsigned char buf[PAGE];
        CHECK(bs_filemap_read(ref.file, ref.off, buf, sizeof(buf)) == BS_FILEMAP_CHANGED);
        struct bs_filemap_stats s;
        bs_filemap_stats(&s);
        CHECK(s.read_errors >= 1);
        bs_filemap_release(ref.file);
    }
    write_file(path, 1);
}

/* A new version written beside it and renamed over it: the shim still holds the old
 * inode, whose bytes are the weight's. The application's mapping, of the old inode, is
 * now of a deleted file, which a new lookup refuses. */
static void replaced_file_still_reads_the_old_bytes(void)
{
    write_file(path, 1);
    int fd;
    unsigned char *p = map_file(PROT_READ, MAP_PRIVATE, 0, 16 * PAGE, &fd);
    struct bs_file_ref ref;
    CHECK(bs_filemap_lookup(p + 8 * PAGE, 8 * PAGE, &ref));
    char tmp[300];
    snprintf(tmp, sizeof(tmp), "%s.new", path);
    write_file(tmp, 2);
    int old_fd = open(path, O_WRONLY);
    CHECK(old_fd >= 0);
    CHECK(rename(tmp, path) == 0);
    check_bytes(ref.file, ref.off, 8 * PAGE, 1);
    struct bs_file_ref again;
    CHECK(!bs_filemap_lookup(p + 8 * PAGE, 8 * PAGE, &again));
    /* The old inode written through a descriptor opened before the rename: no name, so
     * no ctime check, but its mtime moved. */
    struct stat st;
    CHECK(fstat(old_fd, &st) == 0 && st.st_nlink == 0);
    unsigned char b = 0x5a, buf[PAGE];
    CHECK(pwrite(old_fd, &b, 1, 9 * PAGE) == 1);
    struct timespec ts[2] = { st.st_atim, st.st_mtim };
    ts[1].tv_sec += 1;
    CHECK(futimens(old_fd, ts) == 0);
    CHECK(bs_filemap_read(ref.file, ref.off, buf, sizeof(buf)) == BS_FILEMAP_CHANGED);
    close(old_fd);
    bs_filemap_release(ref.file);
    munmap(p, 16 * PAGE);
    close(fd);
    write_file(path, 1);
}

/* In a child whose descriptor table is full: no lookup succeeds, one line says which
 * limit and what to change, however many lookups fail. */
static void full_descriptor_table_is_one_line(void)
{
    int pfd[2];
    CHECK(pipe(pfd) == 0);
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        dup2(pfd[1], 2);
        close(pfd[0]);
        close(pfd[1]);
        int fd;
        unsigned char *p = map_file(PROT_READ, MAP_PRIVATE, 0, 16 * PAGE, &fd);
        struct rlimit rl = { 64, 64 };
        CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
        while (dup(0) >= 0)
            ;
        struct bs_file_ref ref;
        for (int i = 0; i < 3; i++)
            if (bs_filemap_lookup(p, PAGE, &ref))
                _exit(3);
        _exit(0);
    }
    close(pfd[1]);
    char out[4096];
    size_t len = 0;
    ssize_t r;
    while ((r = read(pfd[0], out + len, sizeof(out) - 1 - len)) > 0)
        len += (size_t)r;
    out[len] = '\0';
    close(pfd[0]);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status));
    if (WEXITSTATUS(status) != 0 || !strstr(out, "ulimit -n") || !strstr(out, "limit 64") ||
        strchr(out, '\n') != out + len - 1) {
        fprintf(stderr, "child exit %d, its stderr:\n%s", WEXITSTATUS(status), out);
        exit(1);
    }
}

static void deleted_file_is_not(void)
{
    int fd;
    unsigned char *p = map_file(PROT_READ, MAP_SHARED, 0, 16 * PAGE, &fd);
    CHECK(unlink(path) == 0);
    struct bs_file_ref ref;
    CHECK(!bs_filemap_lookup(p, PAGE, &ref));
    munmap(p, 16 * PAGE);
    close(fd);
    write_file(path, 1);
}

int main(void)
{
    const char *dir = getenv("TMPDIR");
    snprintf(path, sizeof(path), "%s/bs-filemap-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    write_file(path, 1);

    private_mappings_are_the_file_with_the_offset();
    shared_readonly_mapping_is_the_file();
    anonymous_memory_is_not_a_file();
    private_page_written_is_not_the_file();
    ranges_past_the_file_or_across_mappings_are_not();
    reference_outlives_the_applications_mapping();
    truncation_is_detected();
    rewrite_in_place_is_detected();
    replaced_file_still_reads_the_old_bytes();
    full_descriptor_table_is_one_line();
    deleted_file_is_not();

    struct bs_filemap_stats st;
    bs_filemap_stats(&st);
    CHECK_EQ_U64(st.files, 0);
    unlink(path);
    return 0;
}
