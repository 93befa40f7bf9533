/* File I/O for the scanner; see internal_io.h. */
#include "internal_io.h"

#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

/* The first read lands in a per-thread buffer: no allocation for the common header
 * that fits in 64 KiB. Only a longer header moves to the heap. */
static _Thread_local uint8_t first_buf[EXR_FIRST_READ_BYTES];

#ifndef O_CLOEXEC
#define O_CLOEXEC 0
#endif

/* Read up to n bytes at the current position; stops early only at end of file. */
static ssize_t read_upto(int fd, uint8_t *dst, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, dst + got, n - got);
        if (r < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (r == 0) break;
        got += (size_t) r;
    }
    return (ssize_t) got;
}

/* Grow f->buf to `want` bytes from the file; a short read means the file shrank. */
static int grow(int fd, file_read_t *f, exr_scan_t *ctx, size_t want)
{
    uint8_t *nb;
    ssize_t r;
    if (want <= f->len) return 0;
    if (!f->buf) {
        nb = want <= sizeof(first_buf) ? first_buf : malloc(want);
    } else if (f->buf == first_buf) {
        nb = want <= sizeof(first_buf) ? first_buf : malloc(want);
        if (nb && nb != first_buf) memcpy(nb, first_buf, f->len);
    } else {
        nb = realloc(f->buf, want);
    }
    if (!nb) {
        f->stage = IO_NOMEM;
        return -1;
    }
    f->buf = nb;
    r = read_upto(fd, f->buf + f->len, want - f->len);
    if (r < 0) {
        f->stage = IO_READ;
        f->err = errno;
        return -1;
    }
    f->len += (size_t) r;
    if (f->len < want) ctx->total = f->len;
    return 0;
}

/* Open, stat, read the first 64 KiB and scan, growing while the header runs on. No GIL. */
exr_scan_result_t internal_exr_scan_file(const char *path, file_read_t *f, exr_scan_t *ctx)
{
    struct stat st;
    exr_scan_result_t rv = EXR_SCAN_OK;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        f->stage = IO_OPEN;
        f->err = errno;
        return rv;
    }
    if (fstat(fd, &st) != 0) {
        f->stage = IO_READ;
        f->err = errno;
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        f->stage = IO_NOT_REGULAR;
        goto out;
    }
    f->size = (uint64_t) st.st_size;
    f->mtime_ns = (int64_t) st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
    f->inode = (uint64_t) st.st_ino;
    ctx->total = f->size;
    if (grow(fd, f, ctx, f->size < EXR_FIRST_READ_BYTES ? (size_t) f->size : EXR_FIRST_READ_BYTES) < 0) goto out;
    for (;;) {
        uint64_t want;
        ctx->buf = f->buf;
        ctx->len = f->len;
        rv = internal_exr_scan(ctx);
        if (rv != EXR_SCAN_NEED_MORE) break;
        want = ctx->need > 2 * (uint64_t) f->len ? ctx->need : 2 * (uint64_t) f->len;
        if (want > ctx->total) want = ctx->total;
        if (want > ctx->max_header) want = ctx->max_header;
        if (grow(fd, f, ctx, (size_t) want) < 0) break;
    }
out:
    close(fd);
    return rv;
}

void internal_exr_file_free(file_read_t *f)
{
    if (f->buf && f->buf != first_buf) free(f->buf);
    f->buf = NULL;
    f->len = 0;
}

void internal_exr_io_message(const file_read_t *f, char *out, size_t n)
{
    const char *what = f->stage == IO_OPEN ? "cannot open file" : f->stage == IO_READ ? "cannot read file"
                                                                                      : "not a regular file";
    if (f->err)
        snprintf(out, n, "%s: %s", what, strerror(f->err));
    else
        snprintf(out, n, "%s", what);
}

int internal_exr_advise(const char *path, size_t bytes)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) return 0;
#ifdef POSIX_FADV_WILLNEED
    (void) posix_fadvise(fd, 0, (off_t) bytes, POSIX_FADV_WILLNEED);
#endif
    close(fd);
    return 1;
}

int internal_exr_resident(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    int rv = 0;
    if (fd < 0) return -1;
#ifdef RWF_NOWAIT
    {
        uint8_t b;
        struct iovec iov = {&b, 1};
        ssize_t r;
        do {
            r = preadv2(fd, &iov, 1, 0, RWF_NOWAIT);
        } while (r < 0 && errno == EINTR);
        rv = r >= 0; /* EAGAIN: not cached; EOPNOTSUPP and the like: cannot tell, so not known cached */
    }
#endif
    close(fd);
    return rv;
}
