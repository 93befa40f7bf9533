/*
 * Chunk scanner: a list of paths -> Arrow-layout column buffers for the files,
 * parts, channels and attributes tables, with no per-file Python objects.
 *
 * Mirrors src/exr_inspector/crawl/columns.py (the reference) column for column;
 * tests/test_chunk_parity.py holds them equal. value_json is byte-identical to
 * orjson.dumps(value, OPT_SORT_KEYS) of the reference value, and header_hash is
 * XXH64 (seeds 0 and 1) of the canonical serialisation of every part's attributes.
 *
 * File I/O and scanning run without the GIL; emission holds it, though it only
 * needs it for the few Python objects returned (error rows and the buffers).
 */
#include "internal_columns.h"
#include "internal_decode.h"
#include "internal_dtoa.h"
#include "internal_io.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- growable buffers -------------------------------------------------- */

typedef struct {
    uint8_t *p;
    size_t len, cap;
    int failed;
} cbuf_t;

static int cb_reserve(cbuf_t *b, size_t extra)
{
    size_t need = b->len + extra, ncap;
    uint8_t *np;
    if (need <= b->cap) return 0;
    ncap = b->cap ? b->cap : 256;
    while (ncap < need) ncap *= 2;
    np = realloc(b->p, ncap);
    if (!np) {
        b->failed = 1;
        return -1;
    }
    b->p = np;
    b->cap = ncap;
    return 0;
}

static inline void cb_put(cbuf_t *b, const void *src, size_t n)
{
    if (!n) return; /* memcpy of nothing may still not take NULL */
    if (b->len + n > b->cap && cb_reserve(b, n) < 0) return;
    memcpy(b->p + b->len, src, n);
    b->len += n;
}

static inline void cb_char(cbuf_t *b, char c)
{
    if (b->len + 1 > b->cap && cb_reserve(b, 1) < 0) return;
    b->p[b->len++] = (uint8_t) c;
}

#define cb_str(b, s) cb_put((b), (s), strlen(s))

/* ---- Arrow-layout columns ---------------------------------------------- */

typedef enum { COL_STR, COL_I32, COL_I64, COL_F64, COL_BOOL } col_kind_t;

typedef struct {
    const char *name;
    col_kind_t kind;
    int64_t n, nulls;
    cbuf_t values;   /* fixed-width values, bit-packed bools, or int32 string offsets */
    cbuf_t data;     /* string bytes */
    cbuf_t validity; /* bit-packed, 1 = valid */
} col_t;

static void col_bit(cbuf_t *b, int64_t i, int v)
{
    if ((size_t) (i >> 3) >= b->len) {
        uint8_t z = 0;
        cb_put(b, &z, 1);
    }
    if (b->failed) return;
    if (v) b->p[i >> 3] |= (uint8_t) (1u << (i & 7));
}

static void col_valid(col_t *c, int valid)
{
    col_bit(&c->validity, c->n, valid);
    if (!valid) c->nulls++;
}

static void col_str_offset(col_t *c)
{
    int32_t off = (int32_t) c->data.len;
    if (c->values.len == 0) {
        int32_t zero = 0;
        cb_put(&c->values, &zero, 4);
    }
    cb_put(&c->values, &off, 4);
}

/* String cells are written straight into c->data, then closed with col_str_end. */
static cbuf_t *col_str_begin(col_t *c) { return &c->data; }

static void col_str_end(col_t *c)
{
    col_valid(c, 1);
    col_str_offset(c);
    c->n++;
}

static void col_str(col_t *c, const void *p, size_t n)
{
    cb_put(&c->data, p, n);
    col_str_end(c);
}

static void col_null(col_t *c)
{
    col_valid(c, 0);
    switch (c->kind) {
    case COL_STR: col_str_offset(c); break;
    case COL_BOOL: col_bit(&c->values, c->n, 0); break;
    case COL_I32: {
        int32_t z = 0;
        cb_put(&c->values, &z, 4);
        break;
    }
    default: {
        int64_t z = 0;
        cb_put(&c->values, &z, 8);
        break;
    }
    }
    c->n++;
}

/* A valid fixed-width value (native byte order: Arrow buffers are read on this machine). */
static void col_fixed(col_t *c, const void *v, size_t width)
{
    col_valid(c, 1);
    cb_put(&c->values, v, width);
    c->n++;
}

static void col_i32(col_t *c, int32_t v) { col_fixed(c, &v, 4); }
static void col_i64(col_t *c, int64_t v) { col_fixed(c, &v, 8); }
static void col_f64(col_t *c, double v) { col_fixed(c, &v, 8); }

static void col_bool(col_t *c, int v)
{
    col_valid(c, 1);
    col_bit(&c->values, c->n, v);
    c->n++;
}

static int col_failed(const col_t *c) { return c->values.failed || c->data.failed || c->validity.failed; }

static void col_free(col_t *c)
{
    free(c->values.p);
    free(c->data.p);
    free(c->validity.p);
}

/* ---- the chunk's tables ------------------------------------------------- */

enum { F_FILE_INDEX, F_ID, F_PATH, F_SIZE, F_MTIME, F_INODE, F_FLAGS, F_NPARTS, F_DEEP, F_TILED, F_HASH, F_SIG, F_N };
enum {
    P_FILE_INDEX, P_PART_INDEX, P_NAME, P_VIEW, P_TYPE, P_WIDTH, P_HEIGHT, P_DWIDTH, P_DHEIGHT, P_XOFF, P_YOFF,
    P_DW_MINX, P_DW_MINY, P_DW_MAXX, P_DW_MAXY, P_DISP_MINX, P_DISP_MINY, P_DISP_MAXX, P_DISP_MAXY,
    P_PAR, P_LINE_ORDER, P_COMPRESSION, P_TILED, P_TILE_W, P_TILE_H, P_LEVEL, P_ROUNDING, P_DEEP, P_CHUNKS,
    P_COLOR, P_SOFTWARE, P_N
};
enum { C_FILE_INDEX, C_PART_INDEX, C_NAME, C_LAYER, C_COMPONENT, C_TYPE, C_XS, C_YS, C_PLINEAR, C_SIG, C_N };
enum { A_FILE_INDEX, A_PART_INDEX, A_VALUE, A_N };
enum { V_NAME, V_TYPE, V_JSON, V_TEXT, V_INT, V_FLOAT, V_N };

/* Byte strings -> 0, 1, ... by first appearance, exactly: by hash, then by bytes. The keys
 * are kept as a string column, so the distinct strings are exported as they are. Open
 * addressing, power-of-two capacity, at most half full; index -1 marks an empty slot. */
typedef struct {
    uint64_t hash;
    int32_t index;
} islot_t;

typedef struct {
    islot_t *slots;
    size_t cap;
    int32_t count;
    col_t keys;
} intern_t;

/* One distinct attribute (name, type, value bytes) of the chunk: the frames of a sequence
 * repeat nearly every attribute, so each is formatted once and its canonical JSON fragment
 * reused for the header hash. index -1: the attribute is dropped (wrong size for its type).
 * in_sig: its whole value counts in the file's signature, not only its name. */
typedef struct {
    size_t frag_off, frag_len; /* {"name":..,"type":..,"value":..}, in frags */
    int32_t index;
    int in_sig;
} vinfo_t;

/* The names whose values make file tokens (embed/features.py passes them): the UTF-8 of
 * Python strings, borrowed from `owner`, held for the call. */
typedef struct {
    PyObject *owner;
    const char **name;
    Py_ssize_t *len;
    Py_ssize_t n;
} names_t;

typedef struct {
    col_t files[F_N], parts[P_N], channels[C_N], attrs[A_N], values[V_N];
    PyObject *errors; /* list of (path, code, message, size, mtime_ns): rare, so Python objects */
    cbuf_t hjson;     /* the current file's canonical header JSON */
    cbuf_t tmp;       /* one attribute value */
    cbuf_t key;       /* the attribute being looked up */
    cbuf_t frags;
    intern_t vkeys;   /* name \0 type \0 value of each distinct attribute */
    vinfo_t *vinfo;   /* per vkeys index */
    size_t vinfo_cap;
    /* The values rows: each distinct (name, type, canonical JSON) as text, which is what the
     * reference dedupes on; two byte strings can format alike (NaN payloads, chlist padding). */
    intern_t jkeys;
    int32_t *vfirst; /* per value row: the vkeys index that made it (its fragment) */
    size_t vfirst_cap;
    int32_t nvalues;
    /* Signatures: the exact inputs of a file's (channel's) embedding tokens, interned, so a
     * reader embeds each distinct one once, and can keep its vector across chunks. */
    names_t signames;
    cbuf_t sig, csig; /* the file's signature being built; a channel's */
    intern_t fsigs, csigs;
} chunk_t;

static const struct {
    const char *name;
    col_kind_t kind;
} FILE_COLS[F_N] = {
    {"file_index", COL_I32}, {"file_id", COL_STR}, {"file_path", COL_STR}, {"size_bytes", COL_I64}, {"mtime_ns", COL_I64},
    {"inode", COL_I64}, {"flags", COL_I32}, {"multipart_count", COL_I32}, {"is_deep", COL_BOOL},
    {"is_tiled", COL_BOOL}, {"header_hash", COL_STR}, {"signature", COL_I32},
},
  PART_COLS[P_N] = {
    {"file_index", COL_I32}, {"part_index", COL_I32}, {"part_name", COL_STR}, {"view_name", COL_STR},
    {"part_type", COL_STR}, {"width", COL_I64}, {"height", COL_I64}, {"display_width", COL_I64},
    {"display_height", COL_I64}, {"data_x_offset", COL_I64}, {"data_y_offset", COL_I64},
    {"data_window.min_x", COL_I32}, {"data_window.min_y", COL_I32}, {"data_window.max_x", COL_I32},
    {"data_window.max_y", COL_I32}, {"display_window.min_x", COL_I32}, {"display_window.min_y", COL_I32},
    {"display_window.max_x", COL_I32}, {"display_window.max_y", COL_I32}, {"pixel_aspect_ratio", COL_F64},
    {"line_order", COL_STR}, {"compression", COL_STR}, {"is_tiled", COL_BOOL}, {"tile_width", COL_I64},
    {"tile_height", COL_I64}, {"tile_level_mode", COL_STR}, {"tile_rounding_mode", COL_STR},
    {"is_deep", COL_BOOL}, {"chunk_count", COL_I64}, {"color_space", COL_STR}, {"render_software", COL_STR},
},
  CHANNEL_COLS[C_N] = {
    {"file_index", COL_I32}, {"part_index", COL_I32}, {"channel_name", COL_STR}, {"layer_name", COL_STR},
    {"component_name", COL_STR}, {"channel_type", COL_STR}, {"x_sampling", COL_I32}, {"y_sampling", COL_I32},
    {"p_linear", COL_BOOL}, {"signature", COL_I32},
},
  ATTR_COLS[A_N] = {
    {"file_index", COL_I32}, {"part_index", COL_I32}, {"value_index", COL_I32},
},
  VALUE_COLS[V_N] = {
    {"attr_name", COL_STR}, {"attr_type", COL_STR}, {"value_json", COL_STR}, {"value_text", COL_STR},
    {"value_int", COL_I64}, {"value_float", COL_F64},
};

/* ---- text: UTF-8 checks, backslashreplace, JSON ------------------------ */

/* Length of the well-formed UTF-8 sequence at p (1-4), or 0 if the byte starts none. */
static size_t utf8_seq(const uint8_t *p, size_t n)
{
    uint8_t c = p[0];
    size_t len;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else
        return 0;
    if (n < len || p[1] < lo || p[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if (p[i] < 0x80 || p[i] > 0xBF) return 0;
    return len;
}

static int utf8_valid(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t k = utf8_seq(p + i, n - i);
        if (!k) return 0;
        i += k;
    }
    return 1;
}

static const char HEX[] = "0123456789abcdef";

/* Bytes that are printable ASCII and need no JSON escape. */
#define R16(v) v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v
static const uint8_t PLAIN[256] = {
    R16(0), R16(0),
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x20-0x2f: '"' is 0x22 */
    R16(1), R16(1),
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, /* 0x50-0x5f: '\\' is 0x5c */
    R16(1), R16(1),
    R16(0), R16(0), R16(0), R16(0), R16(0), R16(0), R16(0), R16(0),
};
#undef R16

/* Python's bytes.decode("utf-8", "backslashreplace"): each byte outside a well-formed
 * sequence becomes the four characters \xNN. With json != 0 the text is also JSON-escaped. */
static void put_text(cbuf_t *b, const uint8_t *p, size_t n, int json)
{
    size_t i = 0;
    while (i < n) {
        size_t run = i, k;
        /* plain printable ASCII needs no check and no escape: copy it in one go */
        while (run < n && PLAIN[p[run]]) run++;
        if (run > i) {
            cb_put(b, p + i, run - i);
            i = run;
            continue;
        }
        k = utf8_seq(p + i, n - i);
        if (!k) {
            char esc[5] = {'\\', '\\', 'x', HEX[p[i] >> 4], HEX[p[i] & 15]};
            if (json)
                cb_put(b, esc, 5);
            else
                cb_put(b, esc + 1, 4);
            i++;
            continue;
        }
        if (json && k == 1 && (p[i] < 0x20 || p[i] == '"' || p[i] == '\\')) {
            switch (p[i]) {
            case '"': cb_str(b, "\\\""); break;
            case '\\': cb_str(b, "\\\\"); break;
            case '\b': cb_str(b, "\\b"); break;
            case '\t': cb_str(b, "\\t"); break;
            case '\n': cb_str(b, "\\n"); break;
            case '\f': cb_str(b, "\\f"); break;
            case '\r': cb_str(b, "\\r"); break;
            default: {
                char esc[6] = {'\\', 'u', '0', '0', HEX[p[i] >> 4], HEX[p[i] & 15]};
                cb_put(b, esc, 6);
            }
            }
        } else {
            cb_put(b, p + i, k);
        }
        i += k;
    }
}

static void json_text(cbuf_t *b, const uint8_t *p, size_t n)
{
    cb_char(b, '"');
    put_text(b, p, n, 1);
    cb_char(b, '"');
}

static void json_cstr(cbuf_t *b, const char *s) { json_text(b, (const uint8_t *) s, strlen(s)); }

static size_t fmt_i64(char out[24], int64_t v)
{
    char tmp[24];
    size_t n = 0, k = 0;
    uint64_t u = v < 0 ? 0 - (uint64_t) v : (uint64_t) v;
    do {
        tmp[n++] = (char) ('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) out[k++] = '-';
    while (n) out[k++] = tmp[--n];
    return k;
}

static void json_i64(cbuf_t *b, int64_t v)
{
    char tmp[24];
    cb_put(b, tmp, fmt_i64(tmp, v));
}

/* orjson's float format (shortest round-trip digits, "null" for NaN and infinities). */
static void json_f64(cbuf_t *b, double v)
{
    char tmp[EXR_F64_TEXT_MAX];
    cb_put(b, tmp, internal_exr_format_f64(v, tmp));
}

static double f32_at(const uint8_t *p)
{
    uint32_t u = internal_exr_u32(p);
    float f;
    memcpy(&f, &u, 4);
    return (double) f;
}

static double f64_at(const uint8_t *p)
{
    uint64_t u = internal_exr_u64(p);
    double f;
    memcpy(&f, &u, 8);
    return f;
}

static void base64(cbuf_t *b, const uint8_t *p, size_t n)
{
    static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = ((uint32_t) p[i] << 16) | ((uint32_t) p[i + 1] << 8) | p[i + 2];
        char o[4] = {A[(v >> 18) & 63], A[(v >> 12) & 63], A[(v >> 6) & 63], A[v & 63]};
        cb_put(b, o, 4);
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t) p[i] << 16;
        char o[4] = {A[(v >> 18) & 63], A[(v >> 12) & 63], '=', '='};
        cb_put(b, o, 4);
    } else if (n - i == 2) {
        uint32_t v = ((uint32_t) p[i] << 16) | ((uint32_t) p[i + 1] << 8);
        char o[4] = {A[(v >> 18) & 63], A[(v >> 12) & 63], A[(v >> 6) & 63], '='};
        cb_put(b, o, 4);
    }
}

static void json_b64_obj(cbuf_t *b, const uint8_t *p, size_t n)
{
    cb_str(b, "{\"base64\":\"");
    base64(b, p, n);
    cb_str(b, "\"}");
}

static const char *enum_at(const exr_enum_t *e, int v, char tmp[24])
{
    if (v >= 0 && v < e->count) return e->names[v];
    snprintf(tmp, 24, "UNKNOWN_%d", v);
    return tmp;
}

/* ---- XXH64 -------------------------------------------------------------- */

#define P1 11400714785074694791ULL
#define P2 14029467366897019727ULL
#define P3 1609587929392839161ULL
#define P4 9650029242287828579ULL
#define P5 2870177450012600261ULL

static uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
static uint64_t round64(uint64_t acc, uint64_t in) { return rotl(acc + in * P2, 31) * P1; }
static uint64_t merge64(uint64_t acc, uint64_t v) { return (acc ^ round64(0, v)) * P1 + P4; }

/* The four lanes of a long input folded into one, as XXH64 does. */
static uint64_t fold_lanes(const uint64_t v[4])
{
    uint64_t h = rotl(v[0], 1) + rotl(v[1], 7) + rotl(v[2], 12) + rotl(v[3], 18);
    for (int k = 0; k < 4; k++) h = merge64(h, v[k]);
    return h;
}

/* XXH64's last bytes (fewer than 32, p..end) and its avalanche. */
static uint64_t finish64(uint64_t h, const uint8_t *p, const uint8_t *end)
{
    for (; p + 8 <= end; p += 8) h = rotl(h ^ round64(0, internal_exr_u64(p)), 27) * P1 + P4;
    if (p + 4 <= end) {
        h = rotl(h ^ ((uint64_t) internal_exr_u32(p) * P1), 23) * P2 + P3;
        p += 4;
    }
    for (; p < end; p++) h = rotl(h ^ (*p * P5), 11) * P1;
    h ^= h >> 33;
    h *= P2;
    h ^= h >> 29;
    h *= P3;
    h ^= h >> 32;
    return h;
}

static uint64_t xxh64(const uint8_t *p, size_t n, uint64_t seed)
{
    const uint8_t *end = p + n;
    uint64_t h;
    if (n >= 32) {
        uint64_t v[4] = {seed + P1 + P2, seed + P2, seed, seed - P1};
        const uint8_t *limit = end - 32;
        do {
            for (int k = 0; k < 4; k++) v[k] = round64(v[k], internal_exr_u64(p + 8 * k));
            p += 32;
        } while (p <= limit);
        h = fold_lanes(v);
    } else {
        h = seed + P5;
    }
    return finish64(h + (uint64_t) n, p, end);
}


/* xxh64 with seeds 0 and 1 at once (the 128 bits of a header hash): one pass over the
 * bytes, and two independent dependency chains for the CPU to overlap. */
static void xxh64_pair(const uint8_t *p, size_t n, uint64_t out[2])
{
    const uint8_t *end = p + n;
    uint64_t h[2] = {P5, 1 + P5};
    if (n >= 32) {
        uint64_t v[2][4] = {{P1 + P2, P2, 0, -P1}, {1 + P1 + P2, 1 + P2, 1, 1 - P1}};
        const uint8_t *limit = end - 32;
        do {
            for (int k = 0; k < 4; k++) {
                uint64_t in = internal_exr_u64(p + 8 * k);
                v[0][k] = round64(v[0][k], in);
                v[1][k] = round64(v[1][k], in);
            }
            p += 32;
        } while (p <= limit);
        h[0] = fold_lanes(v[0]);
        h[1] = fold_lanes(v[1]);
    }
    out[0] = finish64(h[0] + (uint64_t) n, p, end);
    out[1] = finish64(h[1] + (uint64_t) n, p, end);
}

/* ---- exact interning ----------------------------------------------------- */

static int intern_grow(intern_t *t)
{
    size_t ncap = t->cap ? t->cap * 2 : 1024;
    islot_t *ns = malloc(ncap * sizeof(*ns));
    if (!ns) return -1;
    for (size_t i = 0; i < ncap; i++) ns[i].index = -1;
    for (size_t i = 0; i < t->cap; i++) {
        size_t j;
        if (t->slots[i].index < 0) continue;
        for (j = t->slots[i].hash & (ncap - 1); ns[j].index >= 0; j = (j + 1) & (ncap - 1)) {}
        ns[j] = t->slots[i];
    }
    free(t->slots);
    t->slots = ns;
    t->cap = ncap;
    return 0;
}

/* The index of the bytes p[0..n), added as the next one if new (*added set). -1 when out
 * of memory. */
static int32_t intern(intern_t *t, const uint8_t *p, size_t n, int *added)
{
    uint64_t h = xxh64(p, n, 0);
    const int32_t *off;
    size_t j;
    *added = 0;
    if (((size_t) t->count + 1) * 2 > t->cap && intern_grow(t) < 0) return -1;
    off = (const int32_t *) t->keys.values.p;
    for (j = h & (t->cap - 1); t->slots[j].index >= 0; j = (j + 1) & (t->cap - 1)) {
        const islot_t *s = &t->slots[j];
        if (s->hash == h && (size_t) (off[s->index + 1] - off[s->index]) == n
            && !memcmp(t->keys.data.p + off[s->index], p, n))
            return s->index;
    }
    col_str(&t->keys, p, n);
    if (col_failed(&t->keys)) return -1;
    t->slots[j].hash = h;
    t->slots[j].index = t->count;
    *added = 1;
    return t->count++;
}

static void intern_free(intern_t *t)
{
    free(t->slots);
    col_free(&t->keys);
}

/* ---- one attribute value ------------------------------------------------ */

typedef struct {
    int has_text, has_int, has_float;
    const uint8_t *text; /* into the file buffer, or a static enum name */
    size_t text_len;
    char enum_tmp[24];
    int64_t ival;
    double fval;
} scalars_t;

static void vec_json(cbuf_t *b, const uint8_t *p, int n, int kind)
{
    cb_char(b, '[');
    for (int i = 0; i < n; i++) {
        if (i) cb_char(b, ',');
        if (kind == 'i')
            json_i64(b, internal_exr_i32(p + 4 * i));
        else if (kind == 'f')
            json_f64(b, f32_at(p + 4 * i));
        else
            json_f64(b, f64_at(p + 8 * i));
    }
    cb_char(b, ']');
}

static void enum_json(cbuf_t *b, const exr_enum_t *e, int v, scalars_t *s)
{
    const char *name = enum_at(e, v, s->enum_tmp); /* UNKNOWN_<n> lives in s, which outlives the row */
    json_cstr(b, name);
    s->has_text = 1;
    s->text = (const uint8_t *) name;
    s->text_len = strlen(name);
}

/* The next complete channel of a chlist value at *p: sets its name length (the 16
 * bytes of fields follow the name's NUL). 0 at the end of the list or at a malformed
 * entry, where the reference decoder stops too. */
static int next_channel(const uint8_t *raw, size_t n, size_t p, size_t *name_len)
{
    const uint8_t *nul;
    size_t window, end;
    if (p >= n) return 0;
    window = n - p > EXR_MAX_NAME_BYTES + 1 ? EXR_MAX_NAME_BYTES + 1 : n - p;
    nul = memchr(raw + p, 0, window);
    if (!nul) return 0;
    end = (size_t) (nul - raw);
    if (end == p || end + 1 + 16 > n) return 0;
    *name_len = end - p;
    return 1;
}

static void chlist_json(cbuf_t *b, const uint8_t *raw, size_t n)
{
    size_t p = 0, len;
    char tmp[24];
    cb_char(b, '[');
    for (; next_channel(raw, n, p, &len); p += len + 17) {
        const uint8_t *f = raw + p + len + 1;
        if (p) cb_char(b, ',');
        cb_str(b, "{\"name\":");
        json_text(b, raw + p, len);
        cb_str(b, ",\"p_linear\":");
        cb_str(b, f[4] ? "true" : "false");
        cb_str(b, ",\"type\":");
        json_cstr(b, enum_at(&EXR_ENUM_PIXEL_TYPE, internal_exr_i32(f), tmp));
        cb_str(b, ",\"x_sampling\":");
        json_i64(b, internal_exr_i32(f + 8));
        cb_str(b, ",\"y_sampling\":");
        json_i64(b, internal_exr_i32(f + 12));
        cb_char(b, '}');
    }
    cb_char(b, ']');
}

/* Canonical JSON of one attribute value (orjson, sorted keys), plus its typed scalars.
 * Returns 1 when the attribute is dropped (a fixed-size type of the wrong size). */
static int value_json(cbuf_t *b, const exr_type_info_t *info, const uint8_t *type_raw, size_t type_len,
                      const uint8_t *p, size_t n, scalars_t *s)
{
    const char *t = info ? info->name : NULL;
    memset(s, 0, sizeof(*s));
    if (!info) {
        cb_str(b, "{\"base64\":\"");
        base64(b, p, n);
        cb_str(b, "\",\"type\":");
        json_text(b, type_raw, type_len);
        cb_char(b, '}');
        return 0;
    }
    if (info->size >= 0 && n != (size_t) info->size) return 1;
    switch (info->id) {
    case EXR_T_BOX2I:
    case EXR_T_BOX2F: {
        int k = info->id == EXR_T_BOX2I ? 'i' : 'f';
        cb_str(b, "{\"max\":");
        vec_json(b, p + 8, 2, k);
        cb_str(b, ",\"min\":");
        vec_json(b, p, 2, k);
        cb_char(b, '}');
        break;
    }
    case EXR_T_CHROMATICITIES:
        cb_str(b, "{\"blue\":");
        vec_json(b, p + 16, 2, 'f');
        cb_str(b, ",\"green\":");
        vec_json(b, p + 8, 2, 'f');
        cb_str(b, ",\"red\":");
        vec_json(b, p, 2, 'f');
        cb_str(b, ",\"white\":");
        vec_json(b, p + 24, 2, 'f');
        cb_char(b, '}');
        break;
    case EXR_T_COMPRESSION: enum_json(b, &EXR_ENUM_COMPRESSION, p[0], s); break;
    case EXR_T_LINE_ORDER: enum_json(b, &EXR_ENUM_LINE_ORDER, p[0], s); break;
    case EXR_T_ENVMAP: enum_json(b, &EXR_ENUM_ENVMAP, p[0], s); break;
    case EXR_T_DEEP_IMAGE_STATE: enum_json(b, &EXR_ENUM_DEEP_IMAGE_STATE, p[0], s); break;
    case EXR_T_DOUBLE:
        s->has_float = 1;
        s->fval = f64_at(p);
        json_f64(b, s->fval);
        break;
    case EXR_T_FLOAT:
        s->has_float = 1;
        s->fval = f32_at(p);
        json_f64(b, s->fval);
        break;
    case EXR_T_INT:
        s->has_int = 1;
        s->ival = internal_exr_i32(p);
        json_i64(b, s->ival);
        break;
    case EXR_T_KEYCODE: {
        /* sorted keys: count, film_mfc_code, film_type, perf_offset, perfs_per_count, perfs_per_frame, prefix */
        static const char *const K[] = {"count", "film_mfc_code", "film_type", "perf_offset", "perfs_per_count",
                                        "perfs_per_frame", "prefix"};
        static const int IDX[] = {3, 0, 1, 4, 6, 5, 2};
        cb_char(b, '{');
        for (int i = 0; i < 7; i++) {
            if (i) cb_char(b, ',');
            json_cstr(b, K[i]);
            cb_char(b, ':');
            json_i64(b, internal_exr_i32(p + 4 * IDX[i]));
        }
        cb_char(b, '}');
        break;
    }
    case EXR_T_M33F:
    case EXR_T_M33D:
    case EXR_T_M44F:
    case EXR_T_M44D: {
        int dim = t[1] - '0', dbl = t[3] == 'd', w = dbl ? 8 : 4;
        cb_char(b, '[');
        for (int r = 0; r < dim; r++) {
            if (r) cb_char(b, ',');
            vec_json(b, p + (size_t) r * dim * w, dim, dbl ? 'd' : 'f');
        }
        cb_char(b, ']');
        break;
    }
    case EXR_T_RATIONAL: {
        int32_t num = internal_exr_i32(p);
        uint32_t den = internal_exr_u32(p + 4);
        cb_char(b, '[');
        json_i64(b, num);
        cb_char(b, ',');
        json_i64(b, den);
        cb_char(b, ']');
        if (den) {
            s->has_float = 1;
            s->fval = (double) num / (double) den;
        }
        break;
    }
    case EXR_T_TILEDESC: {
        char tmp[24];
        cb_str(b, "{\"level_mode\":");
        json_cstr(b, enum_at(&EXR_ENUM_LEVEL_MODE, p[8] & 0x0F, tmp));
        cb_str(b, ",\"rounding_mode\":");
        json_cstr(b, enum_at(&EXR_ENUM_ROUNDING_MODE, p[8] >> 4, tmp));
        cb_str(b, ",\"x_size\":");
        json_i64(b, internal_exr_u32(p));
        cb_str(b, ",\"y_size\":");
        json_i64(b, internal_exr_u32(p + 4));
        cb_char(b, '}');
        break;
    }
    case EXR_T_TIMECODE:
        cb_str(b, "{\"time_and_flags\":");
        json_i64(b, internal_exr_u32(p));
        cb_str(b, ",\"user_data\":");
        json_i64(b, internal_exr_u32(p + 4));
        cb_char(b, '}');
        break;
    case EXR_T_V2I:
    case EXR_T_V2F:
    case EXR_T_V2D:
    case EXR_T_V3I:
    case EXR_T_V3F:
    case EXR_T_V3D: vec_json(b, p, t[1] - '0', t[2]); break;
    case EXR_T_CHLIST: chlist_json(b, p, n); break;
    case EXR_T_STRINGVECTOR: {
        size_t q = 0;
        int firsts = 1;
        cb_char(b, '[');
        while (q < n) {
            int32_t len;
            if (q + 4 > n) break;
            len = internal_exr_i32(p + q);
            q += 4;
            if (len < 0 || (size_t) len > n - q) break;
            if (!firsts) cb_char(b, ',');
            firsts = 0;
            if (utf8_valid(p + q, (size_t) len))
                json_text(b, p + q, (size_t) len);
            else
                json_b64_obj(b, p + q, (size_t) len);
            q += (size_t) len;
        }
        cb_char(b, ']');
        break;
    }
    case EXR_T_FLOATVECTOR:
        if (n % 4) return 1;
        vec_json(b, p, (int) (n / 4), 'f');
        break;
    case EXR_T_PREVIEW:
        if (n < 8) return 1;
        cb_str(b, "{\"height\":");
        json_i64(b, internal_exr_u32(p + 4));
        cb_str(b, ",\"width\":");
        json_i64(b, internal_exr_u32(p));
        cb_char(b, '}');
        break;
    case EXR_T_BYTES: {
        uint32_t hl;
        if (n < 4) return 1;
        hl = internal_exr_u32(p);
        cb_str(b, "{\"base64\":\"");
        if ((uint64_t) hl > n - 4) {
            base64(b, p, n);
            cb_str(b, "\",\"type\":\"bytes\"}");
        } else {
            base64(b, p + 4 + hl, n - 4 - hl);
            cb_str(b, "\",\"type\":\"bytes\",\"type_hint\":");
            json_text(b, p + 4, hl);
            cb_char(b, '}');
        }
        break;
    }
    case EXR_T_STRING:
        if (utf8_valid(p, n)) {
            json_text(b, p, n);
            s->has_text = 1;
            s->text = p;
            s->text_len = n;
        } else {
            json_b64_obj(b, p, n);
        }
        break;
    }
    return 0;
}

/* ---- the item budget, counted exactly as the decoder counts it ---------- */

/* Offset of the attribute where the budget runs out, or -1. */
static int64_t over_budget(const exr_scan_t *c)
{
    uint64_t items = 0;
    for (size_t i = 0; i < c->nrecs; i++) {
        const exr_attr_rec_t *r = &c->recs[i];
        const exr_type_info_t *info = internal_exr_find_type(c->buf + r->type_off, r->type_len);
        const uint8_t *p = c->buf + r->value_off;
        size_t n = r->value_len;
        if (++items > c->max_items) return (int64_t) r->attr_off;
        if (!info) continue;
        if (info->id == EXR_T_CHLIST) {
            size_t len;
            for (size_t q = 0; next_channel(p, n, q, &len); q += len + 17)
                if (++items > c->max_items) return (int64_t) r->attr_off;
        } else if (info->id == EXR_T_STRINGVECTOR) {
            size_t q = 0;
            while (q < n) {
                int32_t len;
                if (q + 4 > n) break;
                len = internal_exr_i32(p + q);
                q += 4;
                if (len < 0 || (size_t) len > n - q) break;
                if (++items > c->max_items) return (int64_t) r->attr_off;
                q += (size_t) len;
            }
        } else if (info->id == EXR_T_FLOATVECTOR && n % 4 == 0) {
            items += n / 4;
            if (items > c->max_items) return (int64_t) r->attr_off;
        }
    }
    return -1;
}

/* ---- per part: the first usable attribute by name and type -------------- */

typedef struct {
    const exr_scan_t *c;
    size_t lo, hi; /* record range of the part */
} part_view_t;

/* Expected value size of the types looked up by name below (-1: variable, never dropped). */
static int fixed_size(const char *type)
{
    if (!strcmp(type, "box2i")) return 16;
    if (!strcmp(type, "float") || !strcmp(type, "int")) return 4;
    if (!strcmp(type, "tiledesc")) return 9;
    if (!strcmp(type, "lineOrder") || !strcmp(type, "compression")) return 1;
    return -1;
}

static const exr_attr_rec_t *find(const part_view_t *pv, const char *name, const char *type)
{
    size_t nl = strlen(name), tl = strlen(type);
    int size = fixed_size(type);
    for (size_t i = pv->lo; i < pv->hi; i++) {
        const exr_attr_rec_t *r = &pv->c->recs[i];
        if (r->name_len != nl || r->type_len != tl) continue;
        if (memcmp(pv->c->buf + r->attr_off, name, nl) || memcmp(pv->c->buf + r->type_off, type, tl)) continue;
        if (size >= 0 && r->value_len != (size_t) size) continue; /* dropped by the decoder */
        return r;
    }
    return NULL;
}

/* A string attribute's text, if the first such attribute is valid UTF-8. */
static int find_text(const part_view_t *pv, const char *name, const uint8_t **p, size_t *n)
{
    const exr_attr_rec_t *r = find(pv, name, "string");
    if (!r || !utf8_valid(pv->c->buf + r->value_off, r->value_len)) return 0;
    *p = pv->c->buf + r->value_off;
    *n = r->value_len;
    return 1;
}

static const char *const PART_TYPES[] = {"scanlineimage", "tiledimage", "deepscanline", "deeptile"};

static const char *part_type(const part_view_t *pv, uint32_t flags)
{
    const uint8_t *t;
    size_t n;
    if (find_text(pv, "type", &t, &n))
        for (int i = 0; i < 4; i++)
            if (strlen(PART_TYPES[i]) == n && !memcmp(PART_TYPES[i], t, n)) return PART_TYPES[i];
    if (flags & EXR_FLAG_MULTIPART) return "scanlineimage";
    if (flags & EXR_FLAG_NON_IMAGE) return find(pv, "tiles", "tiledesc") ? "deeptile" : "deepscanline";
    return (flags & EXR_FLAG_TILED) ? "tiledimage" : "scanlineimage";
}

static void col_text_or_null(col_t *c, const part_view_t *pv, const char *const *names, int count)
{
    for (int i = 0; i < count; i++) {
        const uint8_t *p;
        size_t n;
        if (find_text(pv, names[i], &p, &n)) {
            col_str(c, p, n);
            return;
        }
    }
    col_null(c);
}

static void window_cols(chunk_t *ck, int base, const uint8_t *box)
{
    for (int i = 0; i < 4; i++) {
        if (box)
            col_i32(&ck->parts[base + i], internal_exr_i32(box + 4 * i));
        else
            col_null(&ck->parts[base + i]);
    }
}

static void emit_part(chunk_t *ck, const part_view_t *pv, int32_t fi, int32_t pi, const char *ptype)
{
    static const char *const COLOR[] = {"colorSpace", "colorInteropID", "oiio:ColorSpace", "ocio:colorspace"};
    static const char *const SOFTWARE[] = {"software", "renderSoftware", "renderer", "creator", "hostApp"};
    const exr_attr_rec_t *r;
    const uint8_t *dw = NULL, *disp = NULL, *tiles = NULL;
    col_t *P = ck->parts;
    const uint8_t *t;
    size_t n;
    char tmp[24];
    int tiled = !strcmp(ptype, "tiledimage") || !strcmp(ptype, "deeptile");
    int deep = !strcmp(ptype, "deepscanline") || !strcmp(ptype, "deeptile");

    if ((r = find(pv, "dataWindow", "box2i"))) dw = pv->c->buf + r->value_off;
    if ((r = find(pv, "displayWindow", "box2i"))) disp = pv->c->buf + r->value_off;
    if ((r = find(pv, "tiles", "tiledesc"))) tiles = pv->c->buf + r->value_off;

    col_i32(&P[P_FILE_INDEX], fi);
    col_i32(&P[P_PART_INDEX], pi);
    if (find_text(pv, "name", &t, &n)) col_str(&P[P_NAME], t, n); else col_null(&P[P_NAME]);
    if (find_text(pv, "view", &t, &n)) col_str(&P[P_VIEW], t, n); else col_null(&P[P_VIEW]);
    col_str(&P[P_TYPE], ptype, strlen(ptype));
    if (dw) {
        int64_t x0 = internal_exr_i32(dw), y0 = internal_exr_i32(dw + 4);
        col_i64(&P[P_WIDTH], (int64_t) internal_exr_i32(dw + 8) - x0 + 1);
        col_i64(&P[P_HEIGHT], (int64_t) internal_exr_i32(dw + 12) - y0 + 1);
    } else {
        col_null(&P[P_WIDTH]);
        col_null(&P[P_HEIGHT]);
    }
    if (disp) {
        col_i64(&P[P_DWIDTH], (int64_t) internal_exr_i32(disp + 8) - internal_exr_i32(disp) + 1);
        col_i64(&P[P_DHEIGHT], (int64_t) internal_exr_i32(disp + 12) - internal_exr_i32(disp + 4) + 1);
    } else {
        col_null(&P[P_DWIDTH]);
        col_null(&P[P_DHEIGHT]);
    }
    if (dw) {
        col_i64(&P[P_XOFF], internal_exr_i32(dw));
        col_i64(&P[P_YOFF], internal_exr_i32(dw + 4));
    } else {
        col_null(&P[P_XOFF]);
        col_null(&P[P_YOFF]);
    }
    window_cols(ck, P_DW_MINX, dw);
    window_cols(ck, P_DISP_MINX, disp);
    if ((r = find(pv, "pixelAspectRatio", "float"))) col_f64(&P[P_PAR], f32_at(pv->c->buf + r->value_off));
    else col_null(&P[P_PAR]);
    if ((r = find(pv, "lineOrder", "lineOrder"))) {
        const char *s = enum_at(&EXR_ENUM_LINE_ORDER, pv->c->buf[r->value_off], tmp);
        col_str(&P[P_LINE_ORDER], s, strlen(s));
    } else
        col_null(&P[P_LINE_ORDER]);
    if ((r = find(pv, "compression", "compression"))) {
        const char *s = enum_at(&EXR_ENUM_COMPRESSION, pv->c->buf[r->value_off], tmp);
        col_str(&P[P_COMPRESSION], s, strlen(s));
    } else
        col_null(&P[P_COMPRESSION]);
    col_bool(&P[P_TILED], tiled);
    if (tiles) {
        const char *lm = enum_at(&EXR_ENUM_LEVEL_MODE, tiles[8] & 0x0F, tmp), *rm;
        col_i64(&P[P_TILE_W], internal_exr_u32(tiles));
        col_i64(&P[P_TILE_H], internal_exr_u32(tiles + 4));
        col_str(&P[P_LEVEL], lm, strlen(lm));
        rm = enum_at(&EXR_ENUM_ROUNDING_MODE, tiles[8] >> 4, tmp);
        col_str(&P[P_ROUNDING], rm, strlen(rm));
    } else {
        col_null(&P[P_TILE_W]);
        col_null(&P[P_TILE_H]);
        col_null(&P[P_LEVEL]);
        col_null(&P[P_ROUNDING]);
    }
    col_bool(&P[P_DEEP], deep);
    if ((r = find(pv, "chunkCount", "int"))) col_i64(&P[P_CHUNKS], internal_exr_i32(pv->c->buf + r->value_off));
    else col_null(&P[P_CHUNKS]);
    col_text_or_null(&P[P_COLOR], pv, COLOR, 4);
    col_text_or_null(&P[P_SOFTWARE], pv, SOFTWARE, 5);
}

/* Signature bytes are length-prefixed fields, so two different inputs never meet. */
static void sig_u32(cbuf_t *b, uint32_t v) { cb_put(b, &v, 4); }

static void sig_bytes(cbuf_t *b, const void *p, size_t n)
{
    sig_u32(b, (uint32_t) n);
    cb_put(b, p, n);
}

/* The channel rows of one part. A channel's signature: its name and chlist fields, its
 * part's type and compression byte (every input of its fingerprint tokens). -1: no memory. */
static int emit_channels(chunk_t *ck, const part_view_t *pv, int32_t fi, int32_t pi, const char *ptype)
{
    const exr_attr_rec_t *r = find(pv, "channels", "chlist"), *comp = find(pv, "compression", "compression");
    const uint8_t *raw;
    size_t n, p = 0, ctx_len;
    col_t *C = ck->channels;
    char tmp[24];
    if (!r) return 0;
    raw = pv->c->buf + r->value_off;
    n = r->value_len;
    ck->csig.len = 0;
    sig_bytes(&ck->csig, ptype, strlen(ptype));
    cb_char(&ck->csig, comp ? 1 : 0);
    cb_char(&ck->csig, comp ? (char) pv->c->buf[comp->value_off] : 0);
    ctx_len = ck->csig.len;
    for (size_t len; next_channel(raw, n, p, &len); p += len + 17) {
        const uint8_t *f = raw + p + len + 1;
        size_t dot;
        const char *ty;
        int32_t k;
        int added;
        col_i32(&C[C_FILE_INDEX], fi);
        col_i32(&C[C_PART_INDEX], pi);
        put_text(col_str_begin(&C[C_NAME]), raw + p, len, 0);
        col_str_end(&C[C_NAME]);
        /* layer = everything before the last '.', component = after ("" layer if no dot) */
        for (dot = len; dot > 0 && raw[p + dot - 1] != '.'; dot--) {}
        if (dot) put_text(col_str_begin(&C[C_LAYER]), raw + p, dot - 1, 0);
        col_str_end(&C[C_LAYER]);
        put_text(col_str_begin(&C[C_COMPONENT]), raw + p + dot, len - dot, 0);
        col_str_end(&C[C_COMPONENT]);
        ty = enum_at(&EXR_ENUM_PIXEL_TYPE, internal_exr_i32(f), tmp);
        col_str(&C[C_TYPE], ty, strlen(ty));
        col_i32(&C[C_XS], internal_exr_i32(f + 8));
        col_i32(&C[C_YS], internal_exr_i32(f + 12));
        col_bool(&C[C_PLINEAR], f[4] != 0);
        ck->csig.len = ctx_len;
        sig_bytes(&ck->csig, raw + p, len);
        cb_put(&ck->csig, f, 16);
        if (ck->csig.failed || (k = intern(&ck->csigs, ck->csig.p, ck->csig.len, &added)) < 0) return -1;
        col_i32(&C[C_SIG], k);
    }
    return 0;
}

/* ---- the chunk's distinct attributes ------------------------------------- */

/* Room for item `index` in the array *items of *cap items of `size` bytes (growing by
 * doubling). -1 when out of memory, the array left as it was. */
static int reserve_items(void **items, size_t *cap, size_t index, size_t size)
{
    size_t ncap = *cap ? *cap : 1024;
    void *grown;
    if (index < *cap) return 0;
    while (ncap <= index) ncap *= 2;
    grown = realloc(*items, ncap * size);
    if (!grown) return -1;
    *items = grown;
    *cap = ncap;
    return 0;
}

/* Whether the attribute named name[0..n) is one whose value makes file tokens. */
static int in_signature(const names_t *names, const uint8_t *name, size_t n)
{
    for (Py_ssize_t i = 0; i < names->n; i++)
        if ((size_t) names->len[i] == n && !memcmp(names->name[i], name, n)) return 1;
    return 0;
}

/* The distinct value of attribute r: found by its (name, type, value bytes), or added, which
 * formats its value once into the values columns and its JSON fragment. NULL when out of
 * memory. *key_index: its index in ck->vkeys (the key is needed again for the signature). */
static const vinfo_t *value_of(chunk_t *ck, const exr_scan_t *c, const exr_attr_rec_t *r, int32_t *key_index)
{
    const uint8_t *name = c->buf + r->attr_off, *type = c->buf + r->type_off, *val = c->buf + r->value_off;
    col_t *V = ck->values;
    vinfo_t *v;
    scalars_t s;
    int added;
    int32_t k, j;
    void *items;
    ck->key.len = 0;
    cb_put(&ck->key, name, r->name_len); /* names and types end at a NUL, so \0 separates them */
    cb_char(&ck->key, 0);
    cb_put(&ck->key, type, r->type_len);
    cb_char(&ck->key, 0);
    cb_put(&ck->key, val, r->value_len);
    if (ck->key.failed) return NULL;
    k = intern(&ck->vkeys, ck->key.p, ck->key.len, &added);
    if (k < 0) return NULL;
    *key_index = k;
    if (!added) return &ck->vinfo[k];
    items = ck->vinfo;
    if (reserve_items(&items, &ck->vinfo_cap, (size_t) k, sizeof(vinfo_t)) < 0) return NULL;
    ck->vinfo = items;
    v = &ck->vinfo[k];
    v->in_sig = in_signature(&ck->signames, name, r->name_len);
    ck->tmp.len = 0;
    if (value_json(&ck->tmp, internal_exr_find_type(type, r->type_len), type, r->type_len, val, r->value_len, &s)) {
        v->index = -1;
        return v;
    }
    if (ck->tmp.failed) return NULL;
    ck->key.len = 0; /* now the text key: name and type as the columns hold them, then the JSON */
    put_text(&ck->key, name, r->name_len, 0);
    cb_char(&ck->key, 0);
    put_text(&ck->key, type, r->type_len, 0);
    cb_char(&ck->key, 0);
    cb_put(&ck->key, ck->tmp.p, ck->tmp.len);
    if (ck->key.failed || (j = intern(&ck->jkeys, ck->key.p, ck->key.len, &added)) < 0) return NULL;
    if (!added) { /* formats like an earlier value: the same row, the same fragment */
        const vinfo_t *first = &ck->vinfo[ck->vfirst[j]];
        v->index = j;
        v->frag_off = first->frag_off;
        v->frag_len = first->frag_len;
        return v;
    }
    items = ck->vfirst;
    if (reserve_items(&items, &ck->vfirst_cap, (size_t) j, sizeof(int32_t)) < 0) return NULL;
    ck->vfirst = items;
    ck->vfirst[j] = k;
    v->index = ck->nvalues++;
    put_text(col_str_begin(&V[V_NAME]), name, r->name_len, 0);
    col_str_end(&V[V_NAME]);
    put_text(col_str_begin(&V[V_TYPE]), type, r->type_len, 0);
    col_str_end(&V[V_TYPE]);
    col_str(&V[V_JSON], ck->tmp.p, ck->tmp.len);
    if (s.has_text) col_str(&V[V_TEXT], s.text, s.text_len); else col_null(&V[V_TEXT]);
    if (s.has_int) col_i64(&V[V_INT], s.ival); else col_null(&V[V_INT]);
    if (s.has_float) col_f64(&V[V_FLOAT], s.fval); else col_null(&V[V_FLOAT]);
    v->frag_off = ck->frags.len;
    cb_str(&ck->frags, "{\"name\":");
    json_text(&ck->frags, name, r->name_len);
    cb_str(&ck->frags, ",\"type\":");
    json_text(&ck->frags, type, r->type_len);
    cb_str(&ck->frags, ",\"value\":");
    cb_put(&ck->frags, ck->tmp.p, ck->tmp.len);
    cb_char(&ck->frags, '}');
    v->frag_len = ck->frags.len - v->frag_off;
    return ck->frags.failed ? NULL : v;
}

static int emit_file(chunk_t *ck, const exr_scan_t *c, const file_read_t *f, PyObject *path, int32_t fi)
{
    col_t *A = ck->attrs, *F = ck->files;
    size_t rec = 0;
    int any_deep = 0, any_tiled = 0;
    char hex[33], hhex[33];
    uint64_t hh[2];
    int32_t k, sig;
    int added;
    Py_ssize_t plen;
    const char *pstr = PyUnicode_AsUTF8AndSize(path, &plen);
    if (!pstr) return -1;

    ck->hjson.len = 0;
    cb_char(&ck->hjson, '[');
    /* The file's signature: flags, part count, then every attribute's name, and the whole
     * (name, type, value) of those whose value makes tokens (the chlist, compression, type,
     * tiles, displayWindow, view and the named production attributes). */
    ck->sig.len = 0;
    sig_u32(&ck->sig, c->flags);
    sig_u32(&ck->sig, c->nparts);
    for (uint32_t part = 0; part < c->nparts; part++) {
        part_view_t pv = {c, rec, rec};
        const char *ptype;
        int firsta = 1;
        while (pv.hi < c->nrecs && c->recs[pv.hi].part == part) pv.hi++;
        if (part) cb_char(&ck->hjson, ',');
        cb_char(&ck->hjson, '[');
        sig_u32(&ck->sig, (uint32_t) (pv.hi - pv.lo));
        for (size_t i = pv.lo; i < pv.hi; i++) {
            const exr_attr_rec_t *r = &c->recs[i];
            const vinfo_t *v = value_of(ck, c, r, &k);
            if (!v) return -1;
            if (v->in_sig) {
                const int32_t *off = (const int32_t *) ck->vkeys.keys.values.p;
                cb_char(&ck->sig, 'V');
                sig_bytes(&ck->sig, ck->vkeys.keys.data.p + off[k], (size_t) (off[k + 1] - off[k]));
            } else {
                cb_char(&ck->sig, v->index < 0 ? 'D' : 'N');
                sig_bytes(&ck->sig, c->buf + r->attr_off, r->name_len);
            }
            if (v->index < 0) continue; /* dropped */
            col_i32(&A[A_FILE_INDEX], fi);
            col_i32(&A[A_PART_INDEX], (int32_t) part);
            col_i32(&A[A_VALUE], v->index);
            if (!firsta) cb_char(&ck->hjson, ',');
            firsta = 0;
            cb_put(&ck->hjson, ck->frags.p + v->frag_off, v->frag_len);
        }
        cb_char(&ck->hjson, ']');
        ptype = part_type(&pv, c->flags);
        any_tiled |= !strcmp(ptype, "tiledimage") || !strcmp(ptype, "deeptile");
        any_deep |= !strcmp(ptype, "deepscanline") || !strcmp(ptype, "deeptile");
        emit_part(ck, &pv, fi, (int32_t) part, ptype);
        if (emit_channels(ck, &pv, fi, (int32_t) part, ptype) < 0) return -1;
        rec = pv.hi;
    }
    cb_char(&ck->hjson, ']');
    if (ck->hjson.failed || ck->sig.failed) return -1;
    if ((sig = intern(&ck->fsigs, ck->sig.p, ck->sig.len, &added)) < 0) return -1;
    xxh64_pair(ck->hjson.p, ck->hjson.len, hh);
    snprintf(hhex, sizeof(hhex), "%016llx%016llx", (unsigned long long) hh[0], (unsigned long long) hh[1]);

    col_i32(&F[F_FILE_INDEX], fi);
    xxh64_pair((const uint8_t *) pstr, (size_t) plen, hh);
    snprintf(hex, sizeof(hex), "%016llx%016llx", (unsigned long long) hh[0], (unsigned long long) hh[1]);
    col_str(&F[F_ID], hex, 32);
    col_str(&F[F_PATH], pstr, (size_t) plen);
    col_i64(&F[F_SIZE], (int64_t) f->size);
    col_i64(&F[F_MTIME], f->mtime_ns);
    col_i64(&F[F_INODE], (int64_t) f->inode);
    col_i32(&F[F_FLAGS], (int32_t) c->flags);
    col_i32(&F[F_NPARTS], (int32_t) c->nparts);
    col_bool(&F[F_DEEP], any_deep);
    col_bool(&F[F_TILED], any_tiled);
    col_str(&F[F_HASH], hhex, 32);
    col_i32(&F[F_SIG], sig);
    return 0;
}

/* ---- errors -------------------------------------------------------------- */

static int add_error(chunk_t *ck, PyObject *path, const char *code, PyObject *message, PyObject *offset,
                     const file_read_t *f, int with_stat)
{
    PyObject *full, *row;
    int rc;
    if (!message) return -1;
    if (offset && offset != Py_None)
        full = PyUnicode_FromFormat("%U: %U (at byte %S)", path, message, offset);
    else
        full = PyUnicode_FromFormat("%U: %U", path, message);
    Py_DECREF(message);
    if (!full) return -1;
    if (with_stat)
        row = Py_BuildValue("(OsNKL)", path, code, full, (unsigned long long) f->size, (long long) f->mtime_ns);
    else
        row = Py_BuildValue("(OsNOO)", path, code, full, Py_None, Py_None);
    if (!row) return -1;
    rc = PyList_Append(ck->errors, row);
    Py_DECREF(row);
    return rc;
}

/* ---- export -------------------------------------------------------------- */

/* A column buffer handed to Python without a copy: the object owns the malloc'd block and
 * exports it through the buffer protocol (pyarrow wraps it as is); freed with the object.
 * Copying every column into a bytes object was 8% of a chunk scan (memmove and fresh pages). */
typedef struct {
    PyObject_HEAD
    uint8_t *p;
    Py_ssize_t len;
} owned_t;

static void owned_dealloc(PyObject *self)
{
    free(((owned_t *) self)->p);
    Py_TYPE(self)->tp_free(self);
}

static int owned_getbuffer(PyObject *self, Py_buffer *view, int flags)
{
    owned_t *o = (owned_t *) self;
    return PyBuffer_FillInfo(view, self, o->p, o->len, 1, flags);
}

static PyBufferProcs owned_as_buffer = {owned_getbuffer, NULL};

static PyTypeObject owned_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "exr_inspector._core.ColumnBuffer",
    .tp_basicsize = sizeof(owned_t),
    .tp_dealloc = owned_dealloc,
    .tp_as_buffer = &owned_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A read-only column buffer produced by scan_chunk.",
};

int internal_exr_columns_init(void) { return PyType_Ready(&owned_type); }

/* Move the buffer into a Python object (b is left empty); an empty buffer becomes b"". */
static PyObject *bytes_of(cbuf_t *b)
{
    owned_t *o;
    uint8_t *p;
    if (b->len == 0) return PyBytes_FromStringAndSize("", 0);
    o = PyObject_New(owned_t, &owned_type);
    if (!o) return NULL;
    p = b->cap > b->len + 4096 ? realloc(b->p, b->len) : NULL; /* give back the doubling's slack */
    o->p = p ? p : b->p;
    o->len = (Py_ssize_t) b->len;
    b->p = NULL;
    b->len = b->cap = 0;
    return (PyObject *) o;
}

static int export_cols(PyObject *out, const char *table, col_t *cols, int ncols)
{
    PyObject *d = PyDict_New();
    int rc;
    if (!d) return -1;
    for (int i = 0; i < ncols; i++) {
        col_t *c = &cols[i];
        PyObject *t;
        if (c->kind == COL_STR && c->values.len == 0) {
            int32_t zero = 0;
            cb_put(&c->values, &zero, 4);
        }
        if (col_failed(c)) {
            Py_DECREF(d);
            PyErr_NoMemory();
            return -1;
        }
        t = Py_BuildValue("(LLNNN)", (long long) c->n, (long long) c->nulls,
                          c->nulls ? bytes_of(&c->validity) : (Py_INCREF(Py_None), Py_None), bytes_of(&c->values),
                          c->kind == COL_STR ? bytes_of(&c->data) : (Py_INCREF(Py_None), Py_None));
        if (!t || PyDict_SetItemString(d, c->name, t) < 0) {
            Py_XDECREF(t);
            Py_DECREF(d);
            return -1;
        }
        Py_DECREF(t);
    }
    rc = PyDict_SetItemString(out, table, d);
    Py_DECREF(d);
    return rc;
}

static void init_cols(col_t *cols, int n, const void *spec_v)
{
    const struct {
        const char *name;
        col_kind_t kind;
    } *spec = spec_v;
    for (int i = 0; i < n; i++) {
        memset(&cols[i], 0, sizeof(cols[i]));
        cols[i].name = spec[i].name;
        cols[i].kind = spec[i].kind;
    }
}

static void free_chunk(chunk_t *ck)
{
    for (int i = 0; i < F_N; i++) col_free(&ck->files[i]);
    for (int i = 0; i < P_N; i++) col_free(&ck->parts[i]);
    for (int i = 0; i < C_N; i++) col_free(&ck->channels[i]);
    for (int i = 0; i < A_N; i++) col_free(&ck->attrs[i]);
    for (int i = 0; i < V_N; i++) col_free(&ck->values[i]);
    free(ck->hjson.p);
    free(ck->tmp.p);
    free(ck->key.p);
    free(ck->frags.p);
    free(ck->sig.p);
    free(ck->csig.p);
    free(ck->vinfo);
    free(ck->vfirst);
    intern_free(&ck->vkeys);
    intern_free(&ck->jkeys);
    intern_free(&ck->fsigs);
    intern_free(&ck->csigs);
    free(ck->signames.name);
    free(ck->signames.len);
    Py_XDECREF(ck->signames.owner);
    Py_XDECREF(ck->errors);
}

/* Cold storage (NFS, parallel file systems, evicted pages) serves one read at a time per
 * reader unless told what comes next: before scanning file i, ask the kernel to read ahead
 * the first 64 KiB of file i + PREFETCH, so that many reads are in flight. A hint only:
 * every failure is ignored. It costs ~10 us a file when the pages are cached anyway, so a
 * chunk turns it on only when each of its first PROBE files took over COLD_NS to read: the
 * fastest of them, not their sum, so that a reader preempted during one read (readers run
 * niced, below the writer) is not taken for cold storage. */
#define PREFETCH 8
#define PREFETCH_BYTES 65536
#define PROBE 4
#define COLD_NS 60000

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t) t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void prefetch(PyObject *path)
{
    PyObject *fs = NULL;
    if (!PyUnicode_Check(path) || !PyUnicode_FSConverter(path, &fs)) {
        PyErr_Clear();
        return;
    }
    Py_BEGIN_ALLOW_THREADS
    (void) internal_exr_advise(PyBytes_AS_STRING(fs), PREFETCH_BYTES);
    Py_END_ALLOW_THREADS
    Py_DECREF(fs);
}

/* Borrow the UTF-8 of each name in the sequence (alive as long as the caller's tuple). */
static int borrow_names(PyObject *names, names_t *out)
{
    Py_ssize_t n;
    out->owner = PySequence_Fast(names, "signature names must be a sequence of str");
    if (!out->owner) return -1;
    n = PySequence_Fast_GET_SIZE(out->owner);
    out->name = calloc((size_t) n + 1, sizeof(*out->name));
    out->len = calloc((size_t) n + 1, sizeof(*out->len));
    if (!out->name || !out->len) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *o = PySequence_Fast_GET_ITEM(out->owner, i);
        if (!PyUnicode_Check(o)) {
            PyErr_SetString(PyExc_TypeError, "signature names must be str");
            return -1;
        }
        if (!(out->name[i] = PyUnicode_AsUTF8AndSize(o, &out->len[i]))) return -1;
    }
    out->n = n;
    return 0;
}

static int set_consumed(PyObject *out, Py_ssize_t consumed)
{
    PyObject *v = PyLong_FromSsize_t(consumed);
    int rc = v ? PyDict_SetItemString(out, "consumed", v) : -1;
    Py_XDECREF(v);
    return rc;
}

static int export_interned(PyObject *out, const char *table, intern_t *t)
{
    t->keys.name = "bytes";
    return export_cols(out, table, &t->keys, 1);
}

static size_t cols_bytes(const col_t *cols, int n)
{
    size_t total = 0;
    for (int i = 0; i < n; i++) total += cols[i].values.cap + cols[i].data.cap + cols[i].validity.cap;
    return total;
}

/* Memory the chunk holds so far: its columns and the distinct values' keys and fragments. */
static size_t chunk_bytes(const chunk_t *ck)
{
    return cols_bytes(ck->files, F_N) + cols_bytes(ck->parts, P_N) + cols_bytes(ck->channels, C_N)
           + cols_bytes(ck->attrs, A_N) + cols_bytes(ck->values, V_N) + cols_bytes(&ck->vkeys.keys, 1)
           + cols_bytes(&ck->fsigs.keys, 1) + cols_bytes(&ck->csigs.keys, 1) + ck->frags.cap + ck->sig.cap + ck->csig.cap
           + ck->hjson.cap + ck->tmp.cap + ck->key.cap + ck->vinfo_cap * sizeof(vinfo_t)
           + cols_bytes(&ck->jkeys.keys, 1) + ck->vfirst_cap * sizeof(int32_t)
           + (ck->vkeys.cap + ck->jkeys.cap + ck->fsigs.cap + ck->csigs.cap) * sizeof(islot_t);
}

PyObject *internal_exr_scan_chunk(PyObject *paths, uint64_t max_header, uint64_t max_items, PyObject *signames,
                                  size_t max_bytes)
{
    chunk_t ck;
    PyObject *out = NULL, *seq;
    Py_ssize_t n, consumed;
    int32_t fi = 0;
    int cold = 0;
    int64_t probe_min = INT64_MAX, t0;

    memset(&ck, 0, sizeof(ck));
    init_cols(ck.files, F_N, FILE_COLS);
    init_cols(ck.parts, P_N, PART_COLS);
    init_cols(ck.channels, C_N, CHANNEL_COLS);
    init_cols(ck.attrs, A_N, ATTR_COLS);
    init_cols(ck.values, V_N, VALUE_COLS);
    if (borrow_names(signames, &ck.signames) < 0) {
        free_chunk(&ck);
        return NULL;
    }
    seq = PySequence_Fast(paths, "scan_chunk expects a sequence of paths");
    if (!seq) {
        free_chunk(&ck);
        return NULL;
    }
    ck.errors = PyList_New(0);
    if (!ck.errors) goto done;
    n = consumed = PySequence_Fast_GET_SIZE(seq);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *path = PySequence_Fast_GET_ITEM(seq, i), *fs = NULL;
        exr_scan_t ctx;
        file_read_t f;
        exr_scan_result_t rv;
        int64_t budget_at;
        if (i > 0 && chunk_bytes(&ck) >= max_bytes) { /* the caller scans the rest in another call */
            consumed = i;
            break;
        }
        if (!PyUnicode_Check(path)) {
            PyErr_SetString(PyExc_TypeError, "scan_chunk paths must be str");
            goto done;
        }
        if (!PyUnicode_FSConverter(path, &fs)) goto done;
        memset(&ctx, 0, sizeof(ctx));
        memset(&f, 0, sizeof(f));
        ctx.max_header = max_header;
        ctx.max_items = max_items;
        if (cold && i + PREFETCH < n) prefetch(PySequence_Fast_GET_ITEM(seq, i + PREFETCH));
        t0 = i < PROBE ? now_ns() : 0;
        Py_BEGIN_ALLOW_THREADS
        rv = internal_exr_scan_file(PyBytes_AS_STRING(fs), &f, &ctx);
        Py_END_ALLOW_THREADS
        if (i < PROBE) {
            int64_t took = now_ns() - t0;
            if (took < probe_min) probe_min = took;
            if (i == PROBE - 1 && probe_min > COLD_NS) { /* cold: start the files after this one */
                cold = 1;
                for (Py_ssize_t k = i + 1; k < i + 1 + PREFETCH && k < n; k++) prefetch(PySequence_Fast_GET_ITEM(seq, k));
            }
        }
        Py_DECREF(fs);
        if (f.stage != IO_OK) {
            int rc;
            if (f.stage == IO_NOMEM) {
                PyErr_NoMemory();
                rc = -1;
            } else {
                char msg[256];
                internal_exr_io_message(&f, msg, sizeof(msg));
                rc = add_error(&ck, path, "io_error", PyUnicode_FromString(msg), Py_None, &f, 0);
            }
            internal_exr_scan_free(&ctx);
            internal_exr_file_free(&f);
            if (rc < 0) goto done;
            continue;
        }
        budget_at = over_budget(&ctx);
        if (budget_at >= 0 || rv != EXR_SCAN_OK) {
            int rc;
            PyObject *off;
            if (budget_at >= 0) {
                off = PyLong_FromLongLong(budget_at);
                rc = off ? add_error(&ck, path, "header_too_large",
                                     PyUnicode_FromFormat("header has more than %llu attributes and values",
                                                          (unsigned long long) max_items),
                                     off, &f, 1)
                         : -1;
            } else {
                off = PyLong_FromSize_t(ctx.err_off);
                rc = off ? add_error(&ck, path, internal_exr_scan_code(rv), internal_exr_scan_error_message(&ctx, rv),
                                     off, &f, 1)
                         : -1;
            }
            Py_XDECREF(off);
            internal_exr_scan_free(&ctx);
            internal_exr_file_free(&f);
            if (rc < 0) goto done;
            continue;
        }
        if (emit_file(&ck, &ctx, &f, path, fi) < 0) {
            internal_exr_scan_free(&ctx);
            internal_exr_file_free(&f);
            if (!PyErr_Occurred()) PyErr_NoMemory();
            goto done;
        }
        fi++;
        internal_exr_scan_free(&ctx);
        internal_exr_file_free(&f);
    }
    out = PyDict_New();
    if (!out) goto done;
    if (export_cols(out, "files", ck.files, F_N) < 0 || export_cols(out, "parts", ck.parts, P_N) < 0
        || export_cols(out, "channels", ck.channels, C_N) < 0 || export_cols(out, "attributes", ck.attrs, A_N) < 0
        || export_cols(out, "values", ck.values, V_N) < 0
        || export_interned(out, "file_signatures", &ck.fsigs) < 0
        || export_interned(out, "channel_signatures", &ck.csigs) < 0 || set_consumed(out, consumed) < 0
        || PyDict_SetItemString(out, "errors", ck.errors) < 0) {
        Py_CLEAR(out);
    }
done:
    Py_DECREF(seq);
    free_chunk(&ck);
    return out;
}
