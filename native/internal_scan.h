/*
 * exr-inspector native scanner: walks the attribute lists of every part of an
 * OpenEXR header held in a byte prefix of a file. It never touches Python, so it
 * runs with the GIL released; decoding values into Python objects happens later
 * (exr_decode.c) from the records it leaves.
 *
 * The scanner mirrors src/exr_inspector/exr/header.py, the reference parser:
 * same checks, in the same order, at the same offsets.
 */
#ifndef EXR_INSPECTOR_INTERNAL_SCAN_H
#define EXR_INSPECTOR_INTERNAL_SCAN_H

#include <stddef.h>
#include <stdint.h>

#define EXR_MAGIC 20000630u
#define EXR_FLAG_TILED 0x200u
#define EXR_FLAG_LONG_NAMES 0x400u
#define EXR_FLAG_NON_IMAGE 0x800u
#define EXR_FLAG_MULTIPART 0x1000u
#define EXR_KNOWN_FLAGS 0x1E00u
#define EXR_MAX_NAME_BYTES 255u
#define EXR_FIRST_READ_BYTES (64u * 1024u)

/* Flat result enum, one value per outcome; see exr_scan_result_code(). */
typedef enum {
    EXR_SCAN_OK = 0,
    EXR_SCAN_NEED_MORE,      /* header runs past the buffer; grow to ctx->need */
    EXR_SCAN_BUDGET_STOP,    /* more attributes than max_items: decoding will reject */
    EXR_ERR_SHORT,           /* not_exr: fewer than 4 bytes */
    EXR_ERR_MAGIC,           /* not_exr */
    EXR_ERR_VERSION_FIELD,   /* truncated inside the version field */
    EXR_ERR_VERSION,         /* unsupported_version: version byte */
    EXR_ERR_FLAGS_UNKNOWN,   /* unsupported_version: unknown flag bits */
    EXR_ERR_FLAGS_COMBO,     /* unsupported_version: tiled + deep/multipart */
    EXR_ERR_NAME_LONG,       /* bad_attribute */
    EXR_ERR_TYPE_LONG,       /* bad_attribute */
    EXR_ERR_NAME_EOF,        /* truncated */
    EXR_ERR_TYPE_EOF,        /* truncated */
    EXR_ERR_TYPE_EMPTY,      /* bad_attribute */
    EXR_ERR_SIZE_EOF,        /* truncated */
    EXR_ERR_SIZE_NEGATIVE,   /* bad_attribute */
    EXR_ERR_VALUE_EOF,       /* truncated */
    EXR_ERR_HEADER_LARGE,    /* header_too_large */
    EXR_ERR_NOMEM,           /* allocation failed (bounded, but can still fail) */
} exr_scan_result_t;

typedef struct {
    uint32_t part;
    size_t attr_off; /* the attribute's first byte, where its name starts */
    size_t name_len;
    size_t type_off;
    size_t type_len;
    size_t value_off;
    size_t value_len;
} exr_attr_rec_t;

typedef struct {
    /* inputs */
    const uint8_t *buf;
    size_t len;          /* bytes in buf */
    uint64_t total;      /* bytes in the whole file */
    uint64_t max_header; /* header_too_large past this */
    uint64_t max_items;  /* attributes + values budget */

    /* outputs */
    uint32_t version;
    uint32_t flags;
    size_t header_size;
    uint32_t nparts;
    exr_attr_rec_t *recs;
    size_t nrecs;
    size_t cap;

    /* NEED_MORE: grow the buffer to at least this many bytes */
    uint64_t need;

    /* error detail, for the message */
    size_t err_off;
    size_t err_name_off, err_name_len; /* the attribute's name, when known */
    size_t err_type_off, err_type_len; /* its type name, when known */
    int64_t err_num;                   /* version, flags, size, ... */
} exr_scan_t;

/* Scan ctx->buf; ctx outputs are reset first. Records are kept on NEED_MORE
 * only until the next call. */
exr_scan_result_t internal_exr_scan(exr_scan_t *ctx);
void internal_exr_scan_free(exr_scan_t *ctx);

/* Stable error code ("truncated", ...) of a scan result. */
const char *internal_exr_scan_code(exr_scan_result_t r);

static inline uint32_t internal_exr_u32(const uint8_t *p)
{
    return (uint32_t) p[0] | ((uint32_t) p[1] << 8) | ((uint32_t) p[2] << 16) | ((uint32_t) p[3] << 24);
}

static inline int32_t internal_exr_i32(const uint8_t *p)
{
    return (int32_t) internal_exr_u32(p);
}

static inline uint64_t internal_exr_u64(const uint8_t *p)
{
    return (uint64_t) internal_exr_u32(p) | ((uint64_t) internal_exr_u32(p + 4) << 32);
}

#endif
