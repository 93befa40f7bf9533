/*
 * exr_inspector._core: the native header reader.
 *
 *   parse_bytes(data, max_header, max_items) -> result dict | (code, message, offset)
 *   scan_chunk(paths, max_header, max_items) -> column buffers for a chunk of files
 *   parse_file(path: str | bytes | PathLike, max_header, max_items)
 *       -> (result | error tuple, size, mtime_ns, inode); the stat facts are None when open failed
 *   stat_names(directory, names) -> bytes of int64 (size, mtime_ns, inode) per name, -1s where stat failed
 *
 * The GIL is released for all file I/O and scanning; it is taken back only to
 * build Python objects from the scanner's records.
 */
#include "internal_columns.h"
#include "internal_decode.h"
#include "internal_io.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

static PyObject *io_error(const file_read_t *f)
{
    char msg[256];
    internal_exr_io_message(f, msg, sizeof(msg));
    Py_INCREF(Py_None);
    return internal_exr_error_tuple("io_error", PyUnicode_FromString(msg), Py_None);
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
    rv = internal_exr_scan_file(PyBytes_AS_STRING(path), &f, &ctx);
    Py_END_ALLOW_THREADS
    Py_DECREF(path);
    switch (f.stage) {
    case IO_OPEN:
    case IO_READ:
    case IO_NOT_REGULAR: res = io_error(&f); break;
    case IO_NOMEM: PyErr_NoMemory(); break;
    default: res = internal_exr_build(&ctx, rv); break;
    }
    internal_exr_scan_free(&ctx);
    internal_exr_file_free(&f);
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

static PyObject *core_scan_chunk(PyObject *self, PyObject *args)
{
    PyObject *paths, *mh, *mi;
    exr_scan_t limits;
    (void) self;
    if (!PyArg_ParseTuple(args, "OOO", &paths, &mh, &mi)) return NULL;
    memset(&limits, 0, sizeof(limits));
    if (parse_limits(mh, mi, &limits) < 0) return NULL;
    return internal_exr_scan_chunk(paths, limits.max_header, limits.max_items);
}

/* The stat of a re-crawl, one directory at a time: fstatat() relative to the open
 * directory (no path walk per file), following symlinks like os.stat(), GIL released. */
static PyObject *core_stat_names(PyObject *self, PyObject *args)
{
    PyObject *dir, *names, *dirb = NULL, *seq = NULL, *out = NULL, **enc = NULL;
    const char **ptrs = NULL;
    Py_ssize_t n = 0, i, done = 0;
    (void) self;
    if (!PyArg_ParseTuple(args, "OO", &dir, &names)) return NULL;
    if (!PyUnicode_FSConverter(dir, &dirb)) return NULL;
    seq = PySequence_Fast(names, "stat_names: names must be a sequence");
    if (!seq) goto fail;
    n = PySequence_Fast_GET_SIZE(seq);
    enc = PyMem_Calloc((size_t) (n ? n : 1), sizeof(PyObject *));
    ptrs = PyMem_Calloc((size_t) (n ? n : 1), sizeof(const char *));
    if (!enc || !ptrs) {
        PyErr_NoMemory();
        goto fail;
    }
    for (done = 0; done < n; ++done)
    {
        if (!PyUnicode_FSConverter(PySequence_Fast_GET_ITEM(seq, done), &enc[done])) goto fail;
        ptrs[done] = PyBytes_AS_STRING(enc[done]);
    }
    out = PyBytes_FromStringAndSize(NULL, n * 3 * (Py_ssize_t) sizeof(int64_t));
    if (!out) goto fail;
    {
        int64_t *v = (int64_t *) PyBytes_AS_STRING(out);
        const char *d = PyBytes_AS_STRING(dirb);
        Py_BEGIN_ALLOW_THREADS
        int fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        for (i = 0; i < n; ++i)
        {
            struct stat st;
            if (fd >= 0 && fstatat(fd, ptrs[i], &st, 0) == 0)
            {
                v[3 * i] = (int64_t) st.st_size;
                v[3 * i + 1] = (int64_t) st.st_mtim.tv_sec * 1000000000LL + (int64_t) st.st_mtim.tv_nsec;
                v[3 * i + 2] = (int64_t) st.st_ino;
            }
            else
                v[3 * i] = v[3 * i + 1] = v[3 * i + 2] = -1;
        }
        if (fd >= 0) close(fd);
        Py_END_ALLOW_THREADS
    }
fail:
    for (i = 0; i < done; ++i) Py_XDECREF(enc[i]);
    PyMem_Free(enc);
    PyMem_Free(ptrs);
    Py_XDECREF(seq);
    Py_DECREF(dirb);
    if (PyErr_Occurred()) Py_CLEAR(out);
    return out;
}

static PyMethodDef core_methods[] = {
    {"stat_names", core_stat_names, METH_VARARGS,
     "stat_names(directory, names) -> bytes: int64 (size, mtime_ns, inode) per name, -1s where stat failed"},
    {"scan_chunk", core_scan_chunk, METH_VARARGS,
     "scan_chunk(paths, max_header, max_items) -> column buffers of the files/parts/channels/attributes tables"},
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
    if (internal_exr_columns_init() < 0) return NULL;
    return PyModule_Create(&core_module);
}
