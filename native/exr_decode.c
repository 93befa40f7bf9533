/*
 * Value decoders: scanner records -> canonical Python values and warnings.
 * Mirrors src/exr_inspector/exr/values.py, value for value and message for message.
 * Every read is bounded by the record's value length, which the scanner checked
 * against the buffer.
 */
#include "internal_decode.h"

#include <string.h>

/* A decoder returns a new reference, NULL on failure (exception set, or the item
 * budget spent: d->budget), or DROP when the attribute is to be left out. */
#define DROP Py_NotImplemented

static PyObject *K_name, *K_type, *K_value, *K_code, *K_message, *K_part_index, *K_offset;
static PyObject *K_min, *K_max, *K_base64, *K_version, *K_flags, *K_header_size, *K_parts, *K_warnings;

static const char *const COMPRESSION_NAMES[] = {
    "NONE", "RLE", "ZIPS", "ZIP", "PIZ", "PXR24", "B44", "B44A",
    "DWAA", "DWAB", "HTJ2K256", "HTJ2K32", "LJ2K", "ZSTD",
};
static const char *const LINE_ORDER_NAMES[] = {"INCREASING_Y", "DECREASING_Y", "RANDOM_Y"};
static const char *const ENVMAP_NAMES[] = {"LATLONG", "CUBE"};
static const char *const DEEP_IMAGE_STATE_NAMES[] = {"MESSY", "SORTED", "NON_OVERLAPPING", "TIDY"};
static const char *const LEVEL_MODE_NAMES[] = {"ONE_LEVEL", "MIPMAP", "RIPMAP"};
static const char *const ROUNDING_MODE_NAMES[] = {"DOWN", "UP"};
static const char *const PIXEL_TYPE_NAMES[] = {"UINT", "HALF", "FLOAT"};
#define ENUM(a) {a, (int) (sizeof(a) / sizeof((a)[0]))}
const exr_enum_t EXR_ENUM_COMPRESSION = ENUM(COMPRESSION_NAMES);
const exr_enum_t EXR_ENUM_LINE_ORDER = ENUM(LINE_ORDER_NAMES);
const exr_enum_t EXR_ENUM_ENVMAP = ENUM(ENVMAP_NAMES);
const exr_enum_t EXR_ENUM_DEEP_IMAGE_STATE = ENUM(DEEP_IMAGE_STATE_NAMES);
const exr_enum_t EXR_ENUM_LEVEL_MODE = ENUM(LEVEL_MODE_NAMES);
const exr_enum_t EXR_ENUM_ROUNDING_MODE = ENUM(ROUNDING_MODE_NAMES);
const exr_enum_t EXR_ENUM_PIXEL_TYPE = ENUM(PIXEL_TYPE_NAMES);
#undef ENUM
#define NAMES(a) a, (int) (sizeof(a) / sizeof((a)[0]))

typedef struct {
    const exr_scan_t *scan;
    PyObject *warnings;
    uint64_t items;
    long part_index;
    size_t offset;
    int budget;
} dctx_t;

typedef struct {
    const uint8_t *p;
    size_t n;
    PyObject *name;  /* decoded attribute name */
    PyObject *type;  /* decoded type name */
} attr_t;

static int init_types(void);

int internal_exr_decode_init(void)
{
#define INTERN(var, s) if (!(var = PyUnicode_InternFromString(s))) return -1
    INTERN(K_name, "name");
    INTERN(K_type, "type");
    INTERN(K_value, "value");
    INTERN(K_code, "code");
    INTERN(K_message, "message");
    INTERN(K_part_index, "part_index");
    INTERN(K_offset, "offset");
    INTERN(K_min, "min");
    INTERN(K_max, "max");
    INTERN(K_base64, "base64");
    INTERN(K_version, "version");
    INTERN(K_flags, "flags");
    INTERN(K_header_size, "header_size");
    INTERN(K_parts, "parts");
    INTERN(K_warnings, "warnings");
#undef INTERN
    return init_types();
}

/* ---- small builders ---------------------------------------------------- */

static int set_steal(PyObject *dict, PyObject *key, PyObject *v)
{
    int rc;
    if (!v) return -1;
    rc = PyDict_SetItem(dict, key, v);
    Py_DECREF(v);
    return rc;
}

/* Interned Python strings for the C string constants used as dict keys and enum
 * names, found by the constant's address: an open-addressing table, so the hot
 * path never hashes text or creates a string. */
#define KEY_SLOTS 256
static struct {
    const char *s;
    PyObject *o;
} KEYS[KEY_SLOTS];

static PyObject *key(const char *s)
{
    size_t h = ((uintptr_t) s >> 3) & (KEY_SLOTS - 1);
    for (size_t i = 0; i < KEY_SLOTS; i++, h = (h + 1) & (KEY_SLOTS - 1)) {
        if (KEYS[h].s == s) return KEYS[h].o;
        if (!KEYS[h].s) {
            PyObject *o = PyUnicode_InternFromString(s);
            if (!o) return NULL;
            KEYS[h].s = s;
            KEYS[h].o = o;
            return o;
        }
    }
    PyErr_SetString(PyExc_SystemError, "exr_decode: key table full");
    return NULL;
}

static int set_str_steal(PyObject *dict, const char *k, PyObject *v)
{
    PyObject *ko;
    if (!v) return -1;
    ko = key(k);
    if (!ko) {
        Py_DECREF(v);
        return -1;
    }
    return set_steal(dict, ko, v);
}

static PyObject *f32(const uint8_t *p)
{
    uint32_t u = internal_exr_u32(p);
    float f;
    memcpy(&f, &u, 4);
    return PyFloat_FromDouble((double) f);
}

static PyObject *f64(const uint8_t *p)
{
    uint64_t u = internal_exr_u64(p);
    double f;
    memcpy(&f, &u, 8);
    return PyFloat_FromDouble(f);
}

static PyObject *i32(const uint8_t *p) { return PyLong_FromLong((long) internal_exr_i32(p)); }
static PyObject *u32(const uint8_t *p) { return PyLong_FromUnsignedLong((unsigned long) internal_exr_u32(p)); }

typedef PyObject *(*scalar_fn)(const uint8_t *);

static PyObject *vec(const uint8_t *p, int n, scalar_fn fn, int width)
{
    PyObject *l = PyList_New(n);
    if (!l) return NULL;
    for (int i = 0; i < n; i++) {
        PyObject *v = fn(p + (size_t) i * width);
        if (!v) {
            Py_DECREF(l);
            return NULL;
        }
        PyList_SET_ITEM(l, i, v);
    }
    return l;
}

static PyObject *enum_name(const char *const *names, int count, int v)
{
    if (v >= 0 && v < count) {
        PyObject *o = key(names[v]);
        Py_XINCREF(o);
        return o;
    }
    return PyUnicode_FromFormat("UNKNOWN_%d", v);
}

static PyObject *b64(const uint8_t *p, size_t n)
{
    static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t out_len = 4 * ((n + 2) / 3), i = 0, o = 0;
    PyObject *s = PyUnicode_New((Py_ssize_t) out_len, 127);
    Py_UCS1 *d;
    if (!s) return NULL;
    d = PyUnicode_1BYTE_DATA(s);
    for (; i + 3 <= n; i += 3) {
        uint32_t v = ((uint32_t) p[i] << 16) | ((uint32_t) p[i + 1] << 8) | p[i + 2];
        d[o++] = A[(v >> 18) & 63];
        d[o++] = A[(v >> 12) & 63];
        d[o++] = A[(v >> 6) & 63];
        d[o++] = A[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t) p[i] << 16;
        d[o++] = A[(v >> 18) & 63];
        d[o++] = A[(v >> 12) & 63];
        d[o++] = '=';
        d[o++] = '=';
    } else if (n - i == 2) {
        uint32_t v = ((uint32_t) p[i] << 16) | ((uint32_t) p[i + 1] << 8);
        d[o++] = A[(v >> 18) & 63];
        d[o++] = A[(v >> 12) & 63];
        d[o++] = A[(v >> 6) & 63];
        d[o++] = '=';
    }
    return s;
}

/* ---- warnings, names, text --------------------------------------------- */

static int warn(dctx_t *d, const char *code, PyObject *message)
{
    PyObject *w;
    int rc;
    if (!message) return -1;
    w = PyDict_New();
    if (!w) {
        Py_DECREF(message);
        return -1;
    }
    if (set_steal(w, K_code, PyUnicode_FromString(code)) < 0 || set_steal(w, K_message, message) < 0
        || set_steal(w, K_part_index, PyLong_FromLong(d->part_index)) < 0
        || set_steal(w, K_offset, PyLong_FromSize_t(d->offset)) < 0) {
        Py_DECREF(w);
        return -1;
    }
    rc = PyList_Append(d->warnings, w);
    Py_DECREF(w);
    return rc;
}

static int count(dctx_t *d, uint64_t n)
{
    d->items += n;
    if (d->items > d->scan->max_items) {
        d->budget = 1;
        return -1;
    }
    return 0;
}

static PyObject *raw_name(const uint8_t *p, size_t n)
{
    return PyUnicode_DecodeUTF8((const char *) p, (Py_ssize_t) n, "backslashreplace");
}

/* Names must be text; invalid UTF-8 is kept readable with backslash escapes. */
static PyObject *decode_name(dctx_t *d, const uint8_t *p, size_t n, const char *what)
{
    PyObject *s = PyUnicode_DecodeUTF8((const char *) p, (Py_ssize_t) n, NULL);
    if (s) return s;
    if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) return NULL;
    PyErr_Clear();
    if (warn(d, "non_utf8_name", PyUnicode_FromFormat("%s is not valid UTF-8", what)) < 0) return NULL;
    return raw_name(p, n);
}

/* String values keep their exact bytes when they are not UTF-8. */
static PyObject *decode_text(dctx_t *d, const uint8_t *p, size_t n, const attr_t *a, const char *type_name)
{
    PyObject *s = PyUnicode_DecodeUTF8((const char *) p, (Py_ssize_t) n, NULL), *o;
    if (s) return s;
    if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) return NULL;
    PyErr_Clear();
    if (warn(d, "non_utf8_string",
             PyUnicode_FromFormat("attribute '%U', type '%s': not valid UTF-8; kept as base64", a->name, type_name))
        < 0)
        return NULL;
    o = PyDict_New();
    if (!o) return NULL;
    if (set_steal(o, K_base64, b64(p, n)) < 0) {
        Py_DECREF(o);
        return NULL;
    }
    return o;
}

/* ---- fixed-size values ------------------------------------------------- */

static PyObject *box(const uint8_t *p, scalar_fn fn)
{
    PyObject *o = PyDict_New();
    if (!o) return NULL;
    if (set_steal(o, K_min, vec(p, 2, fn, 4)) < 0 || set_steal(o, K_max, vec(p + 8, 2, fn, 4)) < 0) {
        Py_DECREF(o);
        return NULL;
    }
    return o;
}

static PyObject *matrix(const uint8_t *p, int n, scalar_fn fn, int width)
{
    PyObject *rows = PyList_New(n);
    if (!rows) return NULL;
    for (int r = 0; r < n; r++) {
        PyObject *row = vec(p + (size_t) r * n * width, n, fn, width);
        if (!row) {
            Py_DECREF(rows);
            return NULL;
        }
        PyList_SET_ITEM(rows, r, row);
    }
    return rows;
}

static PyObject *named_ints(const uint8_t *p, const char *const *keys, int n, scalar_fn fn)
{
    PyObject *o = PyDict_New();
    if (!o) return NULL;
    for (int i = 0; i < n; i++) {
        if (set_str_steal(o, keys[i], fn(p + 4 * i)) < 0) {
            Py_DECREF(o);
            return NULL;
        }
    }
    return o;
}

static PyObject *decode_fixed(const char *type, const uint8_t *p)
{
    static const char *const KEYCODE[] = {"film_mfc_code", "film_type", "prefix", "count",
                                          "perf_offset", "perfs_per_frame", "perfs_per_count"};
    static const char *const TIMECODE[] = {"time_and_flags", "user_data"};
    static const char *const CHROMA[] = {"red", "green", "blue", "white"};

    if (!strcmp(type, "box2i")) return box(p, i32);
    if (!strcmp(type, "box2f")) return box(p, f32);
    if (!strcmp(type, "chromaticities")) {
        PyObject *o = PyDict_New();
        if (!o) return NULL;
        for (int i = 0; i < 4; i++) {
            if (set_str_steal(o, CHROMA[i], vec(p + 8 * i, 2, f32, 4)) < 0) {
                Py_DECREF(o);
                return NULL;
            }
        }
        return o;
    }
    if (!strcmp(type, "compression")) return enum_name(NAMES(COMPRESSION_NAMES), p[0]);
    if (!strcmp(type, "lineOrder")) return enum_name(NAMES(LINE_ORDER_NAMES), p[0]);
    if (!strcmp(type, "envmap")) return enum_name(NAMES(ENVMAP_NAMES), p[0]);
    if (!strcmp(type, "deepImageState")) return enum_name(NAMES(DEEP_IMAGE_STATE_NAMES), p[0]);
    if (!strcmp(type, "double")) return f64(p);
    if (!strcmp(type, "float")) return f32(p);
    if (!strcmp(type, "int")) return i32(p);
    if (!strcmp(type, "keycode")) return named_ints(p, KEYCODE, 7, i32);
    if (!strcmp(type, "m33f")) return matrix(p, 3, f32, 4);
    if (!strcmp(type, "m33d")) return matrix(p, 3, f64, 8);
    if (!strcmp(type, "m44f")) return matrix(p, 4, f32, 4);
    if (!strcmp(type, "m44d")) return matrix(p, 4, f64, 8);
    if (!strcmp(type, "rational")) return Py_BuildValue("[NN]", i32(p), u32(p + 4));
    if (!strcmp(type, "tiledesc")) {
        PyObject *o = named_ints(p, (const char *const[]){"x_size", "y_size"}, 2, u32);
        if (!o) return NULL;
        if (set_str_steal(o, "level_mode", enum_name(NAMES(LEVEL_MODE_NAMES), p[8] & 0x0F)) < 0
            || set_str_steal(o, "rounding_mode", enum_name(NAMES(ROUNDING_MODE_NAMES), p[8] >> 4)) < 0) {
            Py_DECREF(o);
            return NULL;
        }
        return o;
    }
    if (!strcmp(type, "timecode")) return named_ints(p, TIMECODE, 2, u32);
    if (!strcmp(type, "v2i")) return vec(p, 2, i32, 4);
    if (!strcmp(type, "v2f")) return vec(p, 2, f32, 4);
    if (!strcmp(type, "v2d")) return vec(p, 2, f64, 8);
    if (!strcmp(type, "v3i")) return vec(p, 3, i32, 4);
    if (!strcmp(type, "v3f")) return vec(p, 3, f32, 4);
    if (!strcmp(type, "v3d")) return vec(p, 3, f64, 8);
    PyErr_SetString(PyExc_SystemError, "exr_decode: fixed type without decoder");
    return NULL;
}

/* Attribute type table: {name, expected size or -1 when variable}. */
#define T(name, size, id) {name, size, sizeof(name) - 1, id}
static const exr_type_info_t TYPES[] = {
    T("box2i", 16, EXR_T_BOX2I), T("box2f", 16, EXR_T_BOX2F), T("chromaticities", 32, EXR_T_CHROMATICITIES), T("compression", 1, EXR_T_COMPRESSION),
    T("deepImageState", 1, EXR_T_DEEP_IMAGE_STATE), T("double", 8, EXR_T_DOUBLE), T("envmap", 1, EXR_T_ENVMAP), T("float", 4, EXR_T_FLOAT), T("int", 4, EXR_T_INT),
    T("keycode", 28, EXR_T_KEYCODE), T("lineOrder", 1, EXR_T_LINE_ORDER), T("m33f", 36, EXR_T_M33F), T("m33d", 72, EXR_T_M33D), T("m44f", 64, EXR_T_M44F),
    T("m44d", 128, EXR_T_M44D), T("rational", 8, EXR_T_RATIONAL), T("tiledesc", 9, EXR_T_TILEDESC), T("timecode", 8, EXR_T_TIMECODE),
    T("v2i", 8, EXR_T_V2I), T("v2f", 8, EXR_T_V2F), T("v2d", 16, EXR_T_V2D), T("v3i", 12, EXR_T_V3I), T("v3f", 12, EXR_T_V3F), T("v3d", 24, EXR_T_V3D),
    T("chlist", -1, EXR_T_CHLIST), T("stringvector", -1, EXR_T_STRINGVECTOR), T("floatvector", -1, EXR_T_FLOATVECTOR), T("preview", -1, EXR_T_PREVIEW),
    T("bytes", -1, EXR_T_BYTES), T("string", -1, EXR_T_STRING),
};
#undef T

/* ---- variable-size values ---------------------------------------------- */

static PyObject *decode_chlist(dctx_t *d, const attr_t *a)
{
    const uint8_t *raw = a->p;
    size_t n = a->n, p = 0;
    PyObject *channels = PyList_New(0);
    if (!channels) return NULL;
    for (;;) {
        const uint8_t *nul;
        size_t window, end;
        PyObject *cname, *ch;
        if (p >= n) {
            if (warn(d, "bad_chlist",
                     PyUnicode_FromFormat("attribute '%U', type 'chlist': list is not terminated", a->name)) < 0)
                goto fail;
            break;
        }
        window = n - p > EXR_MAX_NAME_BYTES + 1 ? EXR_MAX_NAME_BYTES + 1 : n - p;
        nul = memchr(raw + p, 0, window);
        if (!nul) {
            if (warn(d, "bad_chlist",
                     PyUnicode_FromFormat("attribute '%U', type 'chlist': channel name at value byte %zu is "
                                          "unterminated or too long", a->name, p)) < 0)
                goto fail;
            break;
        }
        end = (size_t) (nul - raw);
        if (end == p) {
            if (p + 1 != n
                && warn(d, "bad_chlist",
                        PyUnicode_FromFormat("attribute '%U', type 'chlist': %zu bytes after the list terminator",
                                             a->name, n - p - 1)) < 0)
                goto fail;
            break;
        }
        cname = decode_name(d, raw + p, end - p, "channel name");
        if (!cname) goto fail;
        p = end + 1;
        if (p + 16 > n) {
            int rc = warn(d, "bad_chlist",
                          PyUnicode_FromFormat("attribute '%U', type 'chlist': channel '%U' is truncated", a->name,
                                               cname));
            Py_DECREF(cname);
            if (rc < 0) goto fail;
            break;
        }
        if (count(d, 1) < 0) {
            Py_DECREF(cname);
            goto fail;
        }
        ch = PyDict_New();
        if (!ch) {
            Py_DECREF(cname);
            goto fail;
        }
        if (set_steal(ch, K_name, cname) < 0
            || set_steal(ch, K_type, enum_name(NAMES(PIXEL_TYPE_NAMES), internal_exr_i32(raw + p))) < 0
            || set_str_steal(ch, "p_linear", PyBool_FromLong(raw[p + 4] != 0)) < 0
            || set_str_steal(ch, "x_sampling", i32(raw + p + 8)) < 0
            || set_str_steal(ch, "y_sampling", i32(raw + p + 12)) < 0 || PyList_Append(channels, ch) < 0) {
            Py_DECREF(ch);
            goto fail;
        }
        Py_DECREF(ch);
        p += 16;
    }
    return channels;
fail:
    Py_DECREF(channels);
    return NULL;
}

static PyObject *decode_stringvector(dctx_t *d, const attr_t *a)
{
    size_t p = 0, n = a->n;
    PyObject *out = PyList_New(0);
    if (!out) return NULL;
    while (p < n) {
        int32_t len;
        PyObject *s;
        if (p + 4 > n) {
            if (warn(d, "bad_stringvector",
                     PyUnicode_FromFormat("attribute '%U', type 'stringvector': truncated entry length at value "
                                          "byte %zu", a->name, p)) < 0)
                goto fail;
            break;
        }
        len = internal_exr_i32(a->p + p);
        p += 4;
        if (len < 0 || (size_t) len > n - p) {
            if (warn(d, "bad_stringvector",
                     PyUnicode_FromFormat("attribute '%U', type 'stringvector': entry length %d at value byte "
                                          "%zu is out of range", a->name, (int) len, p - 4)) < 0)
                goto fail;
            break;
        }
        if (count(d, 1) < 0) goto fail;
        s = decode_text(d, a->p + p, (size_t) len, a, "stringvector");
        if (!s || PyList_Append(out, s) < 0) {
            Py_XDECREF(s);
            goto fail;
        }
        Py_DECREF(s);
        p += (size_t) len;
    }
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}

static PyObject *bad_size(dctx_t *d, const attr_t *a, const char *expected)
{
    if (warn(d, "bad_attribute_size",
             PyUnicode_FromFormat("attribute '%U', type '%U': invalid size %zu (%s); dropped", a->name, a->type, a->n,
                                  expected)) < 0)
        return NULL;
    Py_INCREF(DROP);
    return DROP;
}

static PyObject *decode_floatvector(dctx_t *d, const attr_t *a)
{
    if (a->n % 4) return bad_size(d, a, "not a multiple of 4");
    if (count(d, a->n / 4) < 0) return NULL;
    return vec(a->p, (int) (a->n / 4), f32, 4);
}

static PyObject *decode_preview(dctx_t *d, const attr_t *a)
{
    uint32_t w, h;
    unsigned __int128 need;
    if (a->n < 8) return bad_size(d, a, "expected at least 8");
    w = internal_exr_u32(a->p);
    h = internal_exr_u32(a->p + 4);
    need = (unsigned __int128) 4 * w * h + 8;
    if (need != (unsigned __int128) a->n) {
        /* 4*w*h+8 can pass 2**64: let Python's integers print it. */
        PyObject *pn = PyLong_FromUnsignedLongLong((unsigned long long) w * h), *four, *eight, *t1, *t2;
        int rc;
        if (!pn) return NULL;
        four = PyLong_FromLong(4);
        eight = PyLong_FromLong(8);
        t1 = four ? PyNumber_Multiply(pn, four) : NULL;
        t2 = t1 && eight ? PyNumber_Add(t1, eight) : NULL;
        Py_DECREF(pn);
        Py_XDECREF(four);
        Py_XDECREF(eight);
        Py_XDECREF(t1);
        if (!t2) return NULL;
        rc = warn(d, "bad_preview",
                  PyUnicode_FromFormat("attribute '%U', type 'preview': %ux%u pixels need %S bytes, found %zu",
                                       a->name, (unsigned) w, (unsigned) h, t2, a->n));
        Py_DECREF(t2);
        if (rc < 0) return NULL;
    }
    {
        PyObject *o = PyDict_New();
        if (!o) return NULL;
        if (set_str_steal(o, "width", PyLong_FromUnsignedLong(w)) < 0
            || set_str_steal(o, "height", PyLong_FromUnsignedLong(h)) < 0) {
            Py_DECREF(o);
            return NULL;
        }
        return o;
    }
}

static PyObject *decode_bytes(dctx_t *d, const attr_t *a)
{
    uint32_t hint_len;
    PyObject *o, *hint;
    if (a->n < 4) return bad_size(d, a, "expected at least 4");
    hint_len = internal_exr_u32(a->p);
    o = PyDict_New();
    if (!o) return NULL;
    if (set_steal(o, K_type, PyUnicode_FromString("bytes")) < 0) goto fail;
    if ((uint64_t) hint_len > a->n - 4) {
        if (warn(d, "bad_bytes",
                 PyUnicode_FromFormat("attribute '%U', type 'bytes': type hint length %u exceeds the value; kept raw",
                                      a->name, (unsigned) hint_len)) < 0
            || set_steal(o, K_base64, b64(a->p, a->n)) < 0)
            goto fail;
        return o;
    }
    hint = decode_name(d, a->p + 4, hint_len, "bytes type hint");
    if (set_str_steal(o, "type_hint", hint) < 0
        || set_steal(o, K_base64, b64(a->p + 4 + hint_len, a->n - 4 - hint_len)) < 0)
        goto fail;
    return o;
fail:
    Py_DECREF(o);
    return NULL;
}

static PyObject *decode_opaque(const attr_t *a)
{
    PyObject *o = PyDict_New();
    if (!o) return NULL;
    Py_INCREF(a->type);
    if (set_steal(o, K_type, a->type) < 0 || set_steal(o, K_base64, b64(a->p, a->n)) < 0) {
        Py_DECREF(o);
        return NULL;
    }
    return o;
}

/* Types bucketed by name length, so a lookup compares at most a few names. */
#define MAX_TYPE_LEN 16
static const exr_type_info_t *BY_LEN[MAX_TYPE_LEN][8];

const exr_type_info_t *internal_exr_find_type(const uint8_t *raw, size_t len)
{
    if (len >= MAX_TYPE_LEN) return NULL;
    for (int i = 0; i < 8 && BY_LEN[len][i]; i++)
        if (!memcmp(BY_LEN[len][i]->name, raw, len)) return BY_LEN[len][i];
    return NULL;
}

static PyObject *decode_value(dctx_t *d, const attr_t *a, const exr_type_info_t *info)
{
    const char *type = info ? info->name : NULL;
    if (!info) return decode_opaque(a);
    if (info->size >= 0) {
        if (a->n != (size_t) info->size) {
            if (warn(d, "bad_attribute_size",
                     PyUnicode_FromFormat("attribute '%U', type '%U': invalid size %zu (expected %d); dropped", a->name,
                                          a->type, a->n, info->size)) < 0)
                return NULL;
            Py_INCREF(DROP);
            return DROP;
        }
        return decode_fixed(type, a->p);
    }
    if (!strcmp(type, "chlist")) return decode_chlist(d, a);
    if (!strcmp(type, "stringvector")) return decode_stringvector(d, a);
    if (!strcmp(type, "floatvector")) return decode_floatvector(d, a);
    if (!strcmp(type, "preview")) return decode_preview(d, a);
    if (!strcmp(type, "bytes")) return decode_bytes(d, a);
    return decode_text(d, a->p, a->n, a, "string");
}

/* ---- assembly ---------------------------------------------------------- */

PyObject *internal_exr_error_tuple(const char *code, PyObject *message, PyObject *offset)
{
    if (!message || !offset) {
        Py_XDECREF(message);
        Py_XDECREF(offset);
        return NULL;
    }
    return Py_BuildValue("(sNN)", code, message, offset);
}

PyObject *internal_exr_scan_error_message(const exr_scan_t *c, exr_scan_result_t rv)
{
    PyObject *name = NULL, *type = NULL, *msg = NULL;
    if (c->err_name_len && !(name = raw_name(c->buf + c->err_name_off, c->err_name_len))) return NULL;
    if (c->err_type_len && !(type = raw_name(c->buf + c->err_type_off, c->err_type_len))) goto done;
    switch (rv) {
    case EXR_ERR_SHORT:
        msg = PyUnicode_FromFormat("not an OpenEXR file: %lld bytes is too short", (long long) c->err_num);
        break;
    case EXR_ERR_MAGIC: msg = PyUnicode_FromString("not an OpenEXR file: bad magic number"); break;
    case EXR_ERR_VERSION_FIELD: msg = PyUnicode_FromString("file ends inside the version field"); break;
    case EXR_ERR_VERSION:
        msg = PyUnicode_FromFormat("unsupported OpenEXR format version %d", (int) c->err_num);
        break;
    case EXR_ERR_FLAGS_UNKNOWN:
        msg = PyUnicode_FromFormat("unknown version flags 0x%x", (unsigned) c->err_num);
        break;
    case EXR_ERR_FLAGS_COMBO:
        msg = PyUnicode_FromFormat(
            "invalid version flags 0x%x: single-part tiled cannot be combined with deep or multipart",
            (unsigned) c->err_num);
        break;
    case EXR_ERR_NAME_LONG: msg = PyUnicode_FromString("attribute name is longer than 255 bytes"); break;
    case EXR_ERR_TYPE_LONG:
        msg = PyUnicode_FromFormat("type name of attribute '%U' is longer than 255 bytes", name);
        break;
    case EXR_ERR_NAME_EOF: msg = PyUnicode_FromString("file ends inside an attribute name"); break;
    case EXR_ERR_TYPE_EOF:
        msg = PyUnicode_FromFormat("file ends inside the type name of attribute '%U'", name);
        break;
    case EXR_ERR_TYPE_EMPTY: msg = PyUnicode_FromFormat("attribute '%U' has an empty type name", name); break;
    case EXR_ERR_SIZE_EOF: msg = PyUnicode_FromFormat("file ends inside the size of attribute '%U'", name); break;
    case EXR_ERR_SIZE_NEGATIVE:
        msg = PyUnicode_FromFormat("attribute '%U', type '%U': negative size %lld", name, type,
                                   (long long) c->err_num);
        break;
    case EXR_ERR_VALUE_EOF:
        msg = PyUnicode_FromFormat("attribute '%U', type '%U': size %lld runs past the end of the file (%llu bytes)",
                                   name, type, (long long) c->err_num, (unsigned long long) c->total);
        break;
    case EXR_ERR_HEADER_LARGE:
        msg = PyUnicode_FromFormat("header is larger than the %llu byte limit", (unsigned long long) c->max_header);
        break;
    case EXR_ERR_NOMEM: msg = PyUnicode_FromString("out of memory while scanning the header"); break;
    default: msg = PyUnicode_FromString("internal scanner error"); break;
    }
done:
    Py_XDECREF(name);
    Py_XDECREF(type);
    return msg;
}

/* Attribute names repeat across every file of a crawl (channels, compression,
 * dataWindow, ...): keep the decoded strings of recent ones. Only names that decode
 * cleanly are cached, so warnings for bad names are never skipped. */
#define NAME_CACHE 128
static struct {
    size_t len;
    uint8_t s[32];
    PyObject *o;
} name_cache[NAME_CACHE];

static PyObject *cached_name(dctx_t *d, const uint8_t *p, size_t n)
{
    size_t h;
    PyObject *o;
    if (n == 0 || n >= sizeof(name_cache[0].s)) return decode_name(d, p, n, "attribute name");
    h = (n * 131u + p[0] * 31u + p[n - 1] * 7u + p[n / 2]) & (NAME_CACHE - 1);
    if (name_cache[h].o && name_cache[h].len == n && !memcmp(name_cache[h].s, p, n)) {
        Py_INCREF(name_cache[h].o);
        return name_cache[h].o;
    }
    o = PyUnicode_DecodeUTF8((const char *) p, (Py_ssize_t) n, NULL);
    if (!o) {
        if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) return NULL;
        PyErr_Clear();
        return decode_name(d, p, n, "attribute name"); /* warns, not cached */
    }
    PyUnicode_InternInPlace(&o);
    Py_XDECREF(name_cache[h].o);
    Py_INCREF(o);
    name_cache[h].o = o;
    name_cache[h].len = n;
    memcpy(name_cache[h].s, p, n);
    return o;
}

static PyObject *decode_records(dctx_t *d, PyObject *parts)
{
    const exr_scan_t *c = d->scan;
    for (size_t i = 0; i < c->nrecs; i++) {
        const exr_attr_rec_t *r = &c->recs[i];
        attr_t a;
        const exr_type_info_t *info;
        PyObject *value, *attr;
        d->part_index = (long) r->part;
        d->offset = r->attr_off;
        a.p = c->buf + r->value_off;
        a.n = r->value_len;
        a.name = cached_name(d, c->buf + r->attr_off, r->name_len);
        if (!a.name) return NULL;
        info = internal_exr_find_type(c->buf + r->type_off, r->type_len);
        if (info) {
            a.type = key(info->name);
            Py_XINCREF(a.type);
        } else {
            a.type = decode_name(d, c->buf + r->type_off, r->type_len, "attribute type name");
        }
        if (!a.type) {
            Py_DECREF(a.name);
            return NULL;
        }
        value = count(d, 1) < 0 ? NULL : decode_value(d, &a, info);
        if (!value) {
            Py_DECREF(a.name);
            Py_DECREF(a.type);
            return NULL;
        }
        if (value == DROP || r->part >= c->nparts) {
            /* Records of an unfinished part (budget stop) are decoded only to spend the budget. */
            Py_DECREF(value);
            Py_DECREF(a.name);
            Py_DECREF(a.type);
            continue;
        }
        attr = PyDict_New();
        if (!attr || set_steal(attr, K_name, a.name) < 0 || set_steal(attr, K_type, a.type) < 0
            || set_steal(attr, K_value, value) < 0 || PyList_Append(PyList_GET_ITEM(parts, r->part), attr) < 0) {
            Py_XDECREF(attr);
            return NULL;
        }
        Py_DECREF(attr);
    }
    return parts;
}

PyObject *internal_exr_build(const exr_scan_t *c, exr_scan_result_t rv)
{
    dctx_t d = {c, NULL, 0, 0, 0, 0};
    PyObject *parts = NULL, *result = NULL;
    /* Decode before reporting a scan error: the budget error of an earlier
     * attribute comes first in stream order, as it does in the reference. */
    d.warnings = PyList_New(0);
    parts = PyList_New(c->nparts);
    if (!d.warnings || !parts) goto done;
    for (uint32_t i = 0; i < c->nparts; i++) {
        PyObject *l = PyList_New(0);
        if (!l) goto done;
        PyList_SET_ITEM(parts, i, l);
    }
    if (!decode_records(&d, parts)) {
        if (d.budget) {
            PyErr_Clear();
            result = internal_exr_error_tuple(
                "header_too_large",
                PyUnicode_FromFormat("header has more than %llu attributes and values",
                                     (unsigned long long) c->max_items),
                PyLong_FromSize_t(d.offset));
        }
        goto done;
    }
    if (rv != EXR_SCAN_OK) {
        result = internal_exr_error_tuple(internal_exr_scan_code(rv), internal_exr_scan_error_message(c, rv),
                                          PyLong_FromSize_t(c->err_off));
        goto done;
    }
    result = PyDict_New();
    if (!result) goto done;
    if (set_steal(result, K_version, PyLong_FromUnsignedLong(c->version)) < 0
        || set_steal(result, K_flags, PyLong_FromUnsignedLong(c->flags)) < 0
        || set_steal(result, K_header_size, PyLong_FromSize_t(c->header_size)) < 0
        || PyDict_SetItem(result, K_parts, parts) < 0 || PyDict_SetItem(result, K_warnings, d.warnings) < 0) {
        Py_CLEAR(result);
    }
done:
    Py_XDECREF(parts);
    Py_XDECREF(d.warnings);
    return result;
}

static int init_types(void)
{
    for (size_t i = 0; i < sizeof(TYPES) / sizeof(TYPES[0]); i++) {
        size_t len = TYPES[i].len;
        int k = 0;
        if (len >= MAX_TYPE_LEN) return -1;
        while (k < 7 && BY_LEN[len][k]) k++;
        BY_LEN[len][k] = &TYPES[i];
        if (!key(TYPES[i].name)) return -1;
    }
    return 0;
}
