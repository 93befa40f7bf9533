/*
 * exr_inspector._core: the native header reader.
 *
 *   parse_bytes(data, max_header, max_items) -> result dict | (code, message, offset)
 *   parse_file(path: str | bytes | PathLike, max_header, max_items)
 *       -> (result | error tuple, size, mtime_ns, inode); the stat facts are None when open failed
 *
 * The GIL is released for all file I/O and scanning; it is taken back only to
 * build Python objects from the scanner's records.
 */
#include "internal_decode.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef O_CLOEXEC
#define O_CLOEXEC 0
#endif

typedef enum { IO_OK = 0, IO_OPEN, IO_READ, IO_NOT_REGULAR, IO_NOMEM } io_stage_t;

/* The first read lands in a per-thread buffer: no allocation for the common header
 * that fits in 64 KiB. Only a longer header moves to the heap. */
static _Thread_local uint8_t first_buf[EXR_FIRST_READ_BYTES];

typedef struct {
    uint8_t *buf; /* first_buf, or heap memory once grown past it */
    size_t len;
    io_stage_t stage;
    int err;
    uint64_t size;
    int64_t mtime_ns;
    uint64_t inode;
} file_read_t;

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
static exr_scan_result_t scan_file(const char *path, file_read_t *f, exr_scan_t *ctx)
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

static int parse_limits(PyObject *mh, PyObject *mi, exr_scan_t *ctx)
{
    unsigned long long a = PyLong_AsUnsignedLongLong(mh), b;
    if (a == (unsigned long long) -1 && PyErr_Occurred()) return -1;
    b = PyLong_AsUnsignedLongLong(mi);
    if (b == (unsigned long long) -1 && PyErr_Occurred()) return -1;
    ctx->max_header = a;
    ctx->max_items = b;
    return 0;
}

static PyObject *io_error(const char *prefix, int err)
{
    PyObject *msg = err ? PyUnicode_FromFormat("%s: %s", prefix, strerror(err)) : PyUnicode_FromString(prefix);
    Py_INCREF(Py_None);
    return internal_exr_error_tuple("io_error", msg, Py_None);
}

static PyObject *core_parse_file(PyObject *self, PyObject *args)
{
    PyObject *path, *mh, *mi, *res = NULL;
    exr_scan_t ctx;
    file_read_t f;
    exr_scan_result_t rv;
    (void) self;
    /* PyUnicode_FSConverter takes str, bytes or os.PathLike and rejects embedded NULs. */
    if (!PyArg_ParseTuple(args, "O&OO", PyUnicode_FSConverter, &path, &mh, &mi)) return NULL;
    memset(&ctx, 0, sizeof(ctx));
    memset(&f, 0, sizeof(f));
    if (parse_limits(mh, mi, &ctx) < 0) {
        Py_DECREF(path);
        return NULL;
    }
    f.mtime_ns = -1;
    Py_BEGIN_ALLOW_THREADS
    rv = scan_file(PyBytes_AS_STRING(path), &f, &ctx);
    Py_END_ALLOW_THREADS
    Py_DECREF(path);
    switch (f.stage) {
    case IO_OPEN: res = io_error("cannot open file", f.err); break;
    case IO_READ: res = io_error("cannot read file", f.err); break;
    case IO_NOT_REGULAR: res = io_error("not a regular file", 0); break;
    case IO_NOMEM: PyErr_NoMemory(); break;
    default: res = internal_exr_build(&ctx, rv); break;
    }
    internal_exr_scan_free(&ctx);
    if (f.buf != first_buf) free(f.buf);
    if (!res) return NULL;
    if (f.stage == IO_OPEN) /* nothing was stat'ed */
        return Py_BuildValue("(NOOO)", res, Py_None, Py_None, Py_None);
    return Py_BuildValue("(NKLK)", res, (unsigned long long) f.size, (long long) f.mtime_ns,
                         (unsigned long long) f.inode);
}

static PyObject *core_parse_bytes(PyObject *self, PyObject *args)
{
    Py_buffer view;
    PyObject *mh, *mi, *res;
    exr_scan_t ctx;
    exr_scan_result_t rv;
    (void) self;
    if (!PyArg_ParseTuple(args, "y*OO", &view, &mh, &mi)) return NULL;
    memset(&ctx, 0, sizeof(ctx));
    if (parse_limits(mh, mi, &ctx) < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    ctx.buf = view.buf;
    ctx.len = (size_t) view.len;
    ctx.total = (uint64_t) view.len;
    Py_BEGIN_ALLOW_THREADS
    rv = internal_exr_scan(&ctx);
    Py_END_ALLOW_THREADS
    res = internal_exr_build(&ctx, rv);
    internal_exr_scan_free(&ctx);
    PyBuffer_Release(&view);
    return res;
}

static PyMethodDef core_methods[] = {
    {"parse_file", core_parse_file, METH_VARARGS, "parse_file(path, max_header, max_items) -> (result, size, mtime_ns)"},
    {"parse_bytes", core_parse_bytes, METH_VARARGS, "parse_bytes(data, max_header, max_items) -> result"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT, "_core", "Native OpenEXR header scanner.", -1, core_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__core(void)
{
    if (internal_exr_decode_init() < 0) return NULL;
    return PyModule_Create(&core_module);
}
