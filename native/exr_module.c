/*
 * exr_inspector._core: the native header reader.
 *
 *   parse_bytes(data, max_header, max_items) -> result dict | (code, message, offset)
 *   scan_chunk(paths, max_header, max_items[, signature_names[, max_bytes]]) -> column buffers for a chunk
 *       of files (stopping early, after `consumed` paths, once the chunk holds max_bytes)
 *   parse_file(path: str | bytes | PathLike, max_header, max_items)
 *       -> (result | error tuple, size, mtime_ns, inode); the stat facts are None when open failed
 *   stat_names(directory, names) -> bytes of int64 (size, mtime_ns, inode) per name, -1s where stat failed
 *   list_dir(directory, extensions, files, stat) -> (file names, subdirectory names, their stats as above)
 *
 * The GIL is released for all file I/O and scanning; it is taken back only to
 * build Python objects from the scanner's records.
 */
#include "internal_columns.h"
#include "internal_decode.h"
#include "internal_io.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
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
    PyObject *paths, *mh, *mi, *names = NULL, *rv;
    unsigned long long max_bytes = (unsigned long long) -1;
    exr_scan_t limits;
    (void) self;
    if (!PyArg_ParseTuple(args, "OOO|OK", &paths, &mh, &mi, &names, &max_bytes)) return NULL;
    memset(&limits, 0, sizeof(limits));
    if (parse_limits(mh, mi, &limits) < 0) return NULL;
    if (names) return internal_exr_scan_chunk(paths, limits.max_header, limits.max_items, names, (size_t) max_bytes);
    names = PyTuple_New(0);
    if (!names) return NULL;
    rv = internal_exr_scan_chunk(paths, limits.max_header, limits.max_items, names, (size_t) max_bytes);
    Py_DECREF(names);
    return rv;
}

/* A file's (size, mtime_ns, inode), as every stat this module returns lays it out. */
static void put_stat(int64_t v[3], const struct stat *st)
{
    v[0] = (int64_t) st->st_size;
    v[1] = (int64_t) st->st_mtim.tv_sec * 1000000000LL + (int64_t) st->st_mtim.tv_nsec;
    v[2] = (int64_t) st->st_ino;
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
                put_stat(v + 3 * i, &st);
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

/* One directory of a walk: readdir() classifies entries by d_type (a stat only for symlinks
 * and unknown types, following them like os.scandir's is_dir()), files whose name ends in one
 * of the (lower-case ASCII) extensions are kept, and each kept file is fstatat()'ed if asked.
 * All of it without the GIL; Python objects are built at the end. */
typedef struct {
    char *names;  /* NUL-separated */
    size_t len, cap;
    size_t *off;  /* per entry */
    uint8_t *dir; /* 1 = subdirectory */
    int64_t *st;  /* 3 per entry */
    size_t n, ncap;
} listing_t;

static int listing_add(listing_t *l, const char *name, size_t nl, int is_dir, const struct stat *st)
{
    if (l->n == l->ncap) {
        size_t nc = l->ncap ? l->ncap * 2 : 256;
        size_t *o = realloc(l->off, nc * sizeof(*o));
        uint8_t *d;
        int64_t *s;
        if (!o) return -1;
        l->off = o;
        d = realloc(l->dir, nc);
        if (!d) return -1;
        l->dir = d;
        s = realloc(l->st, nc * 3 * sizeof(*s));
        if (!s) return -1;
        l->st = s;
        l->ncap = nc;
    }
    if (l->len + nl + 1 > l->cap) {
        size_t nc = l->cap ? l->cap : 4096;
        char *p;
        while (nc < l->len + nl + 1) nc *= 2;
        p = realloc(l->names, nc);
        if (!p) return -1;
        l->names = p;
        l->cap = nc;
    }
    memcpy(l->names + l->len, name, nl + 1);
    l->off[l->n] = l->len;
    l->len += nl + 1;
    l->dir[l->n] = (uint8_t) is_dir;
    if (st) {
        put_stat(l->st + 3 * l->n, st);
    } else {
        l->st[3 * l->n] = l->st[3 * l->n + 1] = l->st[3 * l->n + 2] = -1;
    }
    l->n++;
    return 0;
}

typedef struct {
    listing_t *l;
    int fd;
    size_t lo, hi;
} stat_job_t;

static void *stat_range(void *arg)
{
    stat_job_t *j = arg;
    for (size_t i = j->lo; i < j->hi; i++) {
        struct stat st;
        int64_t *v = j->l->st + 3 * i;
        if (j->l->dir[i] || v[0] != -1) continue; /* a subdirectory, or stat'ed while classifying */
        if (fstatat(j->fd, j->l->names + j->l->off[i], &st, 0) == 0) put_stat(v, &st);
    }
    return NULL;
}

/* Stat the listed files, on two threads when there are many: the system calls are most of a
 * no-op re-crawl, and its reader processes are idle. Failures leave -1s. */
static void stat_files(listing_t *l, int fd)
{
    stat_job_t a = {l, fd, 0, l->n}, b;
    pthread_t t;
    int two = l->n >= 256;
    if (two) {
        b = a;
        a.hi = b.lo = l->n / 2;
        two = pthread_create(&t, NULL, stat_range, &b) == 0;
        if (!two) a.hi = l->n;
    }
    stat_range(&a);
    if (two) pthread_join(t, NULL);
}

static int ext_match(const char *name, size_t nl, const char *const *exts, const size_t *lens, int next)
{
    for (int k = 0; k < next; k++) {
        size_t el = lens[k], i;
        if (el > nl) continue;
        for (i = 0; i < el; i++) {
            char c = name[nl - el + i];
            if (c >= 'A' && c <= 'Z') c = (char) (c - 'A' + 'a');
            if (c != exts[k][i]) break;
        }
        if (i == el) return 1;
    }
    return 0;
}

static PyObject *core_list_dir(PyObject *self, PyObject *args)
{
    PyObject *dir, *dirb = NULL, *extseq = NULL, *files = NULL, *dirs = NULL, *stats = NULL, *out = NULL;
    const char *exts[16];
    size_t lens[16];
    int next = 0, want_files, want_stat, err = 0, nomem = 0;
    listing_t l;
    (void) self;
    memset(&l, 0, sizeof(l));
    if (!PyArg_ParseTuple(args, "OOpp", &dir, &extseq, &want_files, &want_stat)) return NULL;
    if (!PyTuple_Check(extseq) || PyTuple_GET_SIZE(extseq) > 16) {
        PyErr_SetString(PyExc_TypeError, "list_dir: extensions must be a tuple of at most 16 bytes");
        return NULL;
    }
    for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(extseq); k++) {
        PyObject *e = PyTuple_GET_ITEM(extseq, k);
        if (!PyBytes_Check(e)) {
            PyErr_SetString(PyExc_TypeError, "list_dir: extensions must be bytes");
            return NULL;
        }
        exts[next] = PyBytes_AS_STRING(e);
        lens[next++] = (size_t) PyBytes_GET_SIZE(e);
    }
    if (!PyUnicode_FSConverter(dir, &dirb)) return NULL;
    Py_BEGIN_ALLOW_THREADS
    {
        int fd = open(PyBytes_AS_STRING(dirb), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *dp = fd >= 0 ? fdopendir(fd) : NULL;
        if (!dp) {
            err = errno;
            if (fd >= 0) close(fd);
        } else {
            struct dirent *de;
            for (;;) {
                struct stat st;
                size_t nl;
                int is_dir = 0, have = 0;
                errno = 0;
                de = readdir(dp);
                if (!de) {
                    err = errno;
                    break;
                }
                if (de->d_name[0] == '.' && (!de->d_name[1] || (de->d_name[1] == '.' && !de->d_name[2]))) continue;
                nl = strlen(de->d_name);
                if (de->d_type == DT_DIR) is_dir = 1;
                else if (de->d_type == DT_LNK || de->d_type == DT_UNKNOWN) {
                    have = fstatat(fd, de->d_name, &st, 0) == 0; /* follows, like DirEntry.is_dir() */
                    is_dir = have && S_ISDIR(st.st_mode);
                }
                if (!is_dir && !(want_files && ext_match(de->d_name, nl, exts, lens, next))) continue;
                if (listing_add(&l, de->d_name, nl, is_dir, !is_dir && have ? &st : NULL) < 0) {
                    nomem = 1;
                    break;
                }
            }
            if (!nomem && !err && want_stat) stat_files(&l, fd);
            closedir(dp);
        }
    }
    Py_END_ALLOW_THREADS
    if (nomem) {
        PyErr_NoMemory();
        goto done;
    }
    if (err) {
        errno = err;
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, dir);
        goto done;
    }
    files = PyList_New(0);
    dirs = PyList_New(0);
    if (!files || !dirs) goto done;
    {
        size_t nf = 0;
        int64_t *v;
        for (size_t i = 0; i < l.n; i++) nf += !l.dir[i];
        stats = PyBytes_FromStringAndSize(NULL, (Py_ssize_t) (nf * 3 * sizeof(int64_t)));
        if (!stats) goto done;
        v = (int64_t *) PyBytes_AS_STRING(stats);
        for (size_t i = 0; i < l.n; i++) {
            const char *name = l.names + l.off[i];
            PyObject *s = PyUnicode_DecodeFSDefaultAndSize(name, (Py_ssize_t) strlen(name));
            int rc;
            if (!s) goto done;
            rc = PyList_Append(l.dir[i] ? dirs : files, s);
            Py_DECREF(s);
            if (rc < 0) goto done;
            if (!l.dir[i]) {
                memcpy(v, l.st + 3 * i, 3 * sizeof(int64_t));
                v += 3;
            }
        }
    }
    out = PyTuple_Pack(3, files, dirs, stats);
done:
    Py_XDECREF(files);
    Py_XDECREF(dirs);
    Py_XDECREF(stats);
    Py_DECREF(dirb);
    free(l.names);
    free(l.off);
    free(l.dir);
    free(l.st);
    return out;
}

/* prefetch(paths, probe=8, nbytes=65536) -> int
 *
 * Read-ahead for a cold tree: posix_fadvise(WILLNEED) on the first `nbytes` of every path,
 * so that the storage serves many reads at once instead of the readers' one at a time.
 * A warm tree must not pay an open per file for nothing: the first `probe` paths that open
 * are checked with a non-blocking read (RWF_NOWAIT), and if each is in the page cache,
 * nothing is advised (probe 0 advises always). Returns how many paths were advised. A hint
 * only: paths that cannot be opened are skipped; the GIL is released throughout. */
static PyObject *core_prefetch(PyObject *self, PyObject *args)
{
    PyObject *paths, *seq, **fs = NULL, *out = NULL;
    Py_ssize_t probe = 8, nbytes = 65536, n, advised = 0;
    if (!PyArg_ParseTuple(args, "O|nn", &paths, &probe, &nbytes)) return NULL;
    if (nbytes < 0) nbytes = 0;
    seq = PySequence_Fast(paths, "prefetch expects a sequence of paths");
    if (!seq) return NULL;
    n = PySequence_Fast_GET_SIZE(seq);
    fs = PyMem_Calloc((size_t) (n ? n : 1), sizeof(PyObject *));
    if (!fs) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!PyUnicode_FSConverter(PySequence_Fast_GET_ITEM(seq, i), &fs[i])) {
            PyErr_Clear(); /* not a path (or an embedded NUL): nothing to read ahead */
            fs[i] = NULL;
        }
    }
    Py_BEGIN_ALLOW_THREADS
    {
        int cold = probe <= 0;
        Py_ssize_t probed = 0;
        for (Py_ssize_t i = 0; i < n && !cold && probed < probe; i++) {
            int r;
            if (!fs[i]) continue;
            r = internal_exr_resident(PyBytes_AS_STRING(fs[i]));
            if (r < 0) continue;
            probed++;
            cold = r == 0;
        }
        if (cold) {
            for (Py_ssize_t i = 0; i < n; i++) {
                if (fs[i]) advised += internal_exr_advise(PyBytes_AS_STRING(fs[i]), (size_t) nbytes);
            }
        }
    }
    Py_END_ALLOW_THREADS
    out = PyLong_FromSsize_t(advised);
done:
    if (fs) {
        for (Py_ssize_t i = 0; i < n; i++) Py_XDECREF(fs[i]);
        PyMem_Free(fs);
    }
    Py_DECREF(seq);
    return out;
}

static PyMethodDef core_methods[] = {
    {"list_dir", core_list_dir, METH_VARARGS,
     "list_dir(directory, extensions, files, stat) -> (file names, subdirectory names, int64 stats bytes)"},
    {"stat_names", core_stat_names, METH_VARARGS,
     "stat_names(directory, names) -> bytes: int64 (size, mtime_ns, inode) per name, -1s where stat failed"},
    {"scan_chunk", core_scan_chunk, METH_VARARGS,
     "scan_chunk(paths, max_header, max_items[, signature_names[, max_bytes]]) -> column buffers of the\n"
     "files/parts/channels/attributes/values tables, the distinct file and channel signatures, and how\n"
     "many paths were consumed (it stops early once it holds max_bytes)"},
    {"prefetch", core_prefetch, METH_VARARGS,
     "prefetch(paths, probe=8, nbytes=65536) -> int: ask the kernel to read ahead the first nbytes of each\n"
     "path, unless the first probe paths are all in the page cache; how many paths were advised"},
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
