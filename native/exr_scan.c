/*
 * Header scanner: bounds-checked walk of every part's attribute list.
 * No Python, no exceptions: every exit is an exr_scan_result_t.
 * Mirrors src/exr_inspector/exr/header.py check for check.
 */
#include "internal_scan.h"

#include <stdlib.h>
#include <string.h>

const char *internal_exr_scan_code(exr_scan_result_t r)
{
    switch (r) {
    case EXR_ERR_SHORT:
    case EXR_ERR_MAGIC: return "not_exr";
    case EXR_ERR_VERSION_FIELD:
    case EXR_ERR_NAME_EOF:
    case EXR_ERR_TYPE_EOF:
    case EXR_ERR_SIZE_EOF:
    case EXR_ERR_VALUE_EOF: return "truncated";
    case EXR_ERR_VERSION:
    case EXR_ERR_FLAGS_UNKNOWN:
    case EXR_ERR_FLAGS_COMBO: return "unsupported_version";
    case EXR_ERR_NAME_LONG:
    case EXR_ERR_TYPE_LONG:
    case EXR_ERR_TYPE_EMPTY:
    case EXR_ERR_SIZE_NEGATIVE: return "bad_attribute";
    case EXR_ERR_HEADER_LARGE: return "header_too_large";
    case EXR_ERR_NOMEM: return "io_error";
    default: return "ok";
    }
}

void internal_exr_scan_free(exr_scan_t *ctx)
{
    free(ctx->recs);
    ctx->recs = NULL;
    ctx->nrecs = ctx->cap = 0;
}

/* The buffer is too short at `end`; the caller has ruled out end of file. */
static exr_scan_result_t need_bytes(exr_scan_t *ctx, uint64_t end, size_t offset)
{
    if (end > ctx->max_header) {
        ctx->err_off = offset;
        return EXR_ERR_HEADER_LARGE;
    }
    ctx->need = end;
    return EXR_SCAN_NEED_MORE;
}

/* A NUL-terminated name of at most 255 bytes at pos: sets *len and *next. */
static exr_scan_result_t read_name(
    exr_scan_t *ctx, size_t pos, size_t *len, size_t *next, exr_scan_result_t too_long, exr_scan_result_t ends)
{
    size_t window = ctx->len;
    const uint8_t *nul;
    if (pos > ctx->len) pos = ctx->len; /* cannot happen; keeps memchr in bounds */
    if (window - pos > EXR_MAX_NAME_BYTES + 1) window = pos + EXR_MAX_NAME_BYTES + 1;
    nul = memchr(ctx->buf + pos, 0, window - pos);
    if (nul) {
        *len = (size_t) (nul - (ctx->buf + pos));
        *next = pos + *len + 1;
        return EXR_SCAN_OK;
    }
    ctx->err_off = pos;
    if ((uint64_t) pos + EXR_MAX_NAME_BYTES + 1 <= ctx->len) return too_long;
    if ((uint64_t) ctx->len >= ctx->total) return ends;
    {
        uint64_t end = (uint64_t) pos + EXR_MAX_NAME_BYTES + 1;
        if (end > ctx->total) end = ctx->total;
        return need_bytes(ctx, end, pos);
    }
}

static exr_scan_result_t push_rec(exr_scan_t *ctx, const exr_attr_rec_t *rec)
{
    if (ctx->nrecs == ctx->cap) {
        /* Growth is bounded: at most max_items + 1 records, each >= 8 header bytes. */
        size_t ncap = ctx->cap ? ctx->cap * 2 : 64;
        exr_attr_rec_t *n = realloc(ctx->recs, ncap * sizeof(*n));
        if (!n) return EXR_ERR_NOMEM;
        ctx->recs = n;
        ctx->cap = ncap;
    }
    ctx->recs[ctx->nrecs++] = *rec;
    return EXR_SCAN_OK;
}

static exr_scan_result_t check_start(exr_scan_t *ctx)
{
    if (ctx->total < 4) {
        ctx->err_off = 0;
        ctx->err_num = (int64_t) ctx->total;
        return EXR_ERR_SHORT;
    }
    if (ctx->len < 4 || internal_exr_u32(ctx->buf) != EXR_MAGIC) {
        ctx->err_off = 0;
        return EXR_ERR_MAGIC;
    }
    if (ctx->total < 8) {
        ctx->err_off = 4;
        return EXR_ERR_VERSION_FIELD;
    }
    if (ctx->len < 8) return need_bytes(ctx, 8, 4);
    {
        uint32_t vfield = internal_exr_u32(ctx->buf + 4);
        ctx->version = vfield & 0xFFu;
        ctx->flags = vfield & ~0xFFu;
    }
    ctx->err_off = 4;
    if (ctx->version != 2) {
        ctx->err_num = ctx->version;
        return EXR_ERR_VERSION;
    }
    if (ctx->flags & ~EXR_KNOWN_FLAGS) {
        ctx->err_num = ctx->flags & ~EXR_KNOWN_FLAGS;
        return EXR_ERR_FLAGS_UNKNOWN;
    }
    if ((ctx->flags & EXR_FLAG_TILED) && (ctx->flags & (EXR_FLAG_NON_IMAGE | EXR_FLAG_MULTIPART))) {
        ctx->err_num = ctx->flags;
        return EXR_ERR_FLAGS_COMBO;
    }
    return EXR_SCAN_OK;
}

exr_scan_result_t internal_exr_scan(exr_scan_t *ctx)
{
    exr_scan_result_t rv;
    size_t pos = 8;
    int multipart;

    ctx->version = ctx->flags = 0;
    ctx->header_size = 0;
    ctx->nparts = 0;
    ctx->nrecs = 0;
    ctx->need = 0;
    ctx->err_off = ctx->err_name_off = ctx->err_name_len = ctx->err_type_off = ctx->err_type_len = 0;
    ctx->err_num = 0;

    rv = check_start(ctx);
    if (rv != EXR_SCAN_OK) return rv;
    multipart = (ctx->flags & EXR_FLAG_MULTIPART) != 0;

    for (;;) {
        size_t seen = 0;
        for (;;) {
            exr_attr_rec_t rec;
            size_t next;
            int32_t size;
            uint64_t end;

            rec.part = ctx->nparts;
            rec.attr_off = pos;
            rv = read_name(ctx, pos, &rec.name_len, &next, EXR_ERR_NAME_LONG, EXR_ERR_NAME_EOF);
            if (rv != EXR_SCAN_OK) return rv;
            if (rec.name_len == 0) {
                pos = next;
                break;
            }
            ctx->err_name_off = pos;
            ctx->err_name_len = rec.name_len;
            rec.type_off = next;
            rv = read_name(ctx, next, &rec.type_len, &next, EXR_ERR_TYPE_LONG, EXR_ERR_TYPE_EOF);
            if (rv != EXR_SCAN_OK) return rv;
            if (rec.type_len == 0) {
                ctx->err_off = rec.type_off;
                return EXR_ERR_TYPE_EMPTY;
            }
            ctx->err_type_off = rec.type_off;
            ctx->err_type_len = rec.type_len;
            pos = next;
            if ((uint64_t) pos + 4 > ctx->total) {
                ctx->err_off = pos;
                return EXR_ERR_SIZE_EOF;
            }
            if ((uint64_t) pos + 4 > ctx->len) return need_bytes(ctx, (uint64_t) pos + 4, pos);
            size = internal_exr_i32(ctx->buf + pos);
            ctx->err_num = size;
            ctx->err_off = pos;
            if (size < 0) return EXR_ERR_SIZE_NEGATIVE;
            end = (uint64_t) pos + 4 + (uint64_t) size;
            if (end > ctx->total) return EXR_ERR_VALUE_EOF;
            if (end > ctx->len) return need_bytes(ctx, end, pos);
            rec.value_off = pos + 4;
            rec.value_len = (size_t) size;
            rv = push_rec(ctx, &rec);
            if (rv != EXR_SCAN_OK) return rv;
            seen++;
            pos = (size_t) end;
            /* Each record costs the decoder one item; past the budget it must fail,
             * so scanning further would only spend memory. */
            if (ctx->nrecs > ctx->max_items) {
                ctx->header_size = pos;
                return EXR_SCAN_BUDGET_STOP;
            }
        }
        if (multipart && seen == 0) break;
        ctx->nparts++;
        if (!multipart) break;
    }
    ctx->header_size = pos;
    return EXR_SCAN_OK;
}
