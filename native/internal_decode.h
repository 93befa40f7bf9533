/*
 * Turns the scanner's records into the parse result that
 * src/exr_inspector/exr/header.py returns: decoded canonical values and warnings,
 * or an error tuple (code, message, offset). Needs the GIL.
 */
#ifndef EXR_INSPECTOR_INTERNAL_DECODE_H
#define EXR_INSPECTOR_INTERNAL_DECODE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "internal_scan.h"

typedef enum {
    EXR_T_BOX2I, EXR_T_BOX2F, EXR_T_CHROMATICITIES, EXR_T_COMPRESSION, EXR_T_DEEP_IMAGE_STATE, EXR_T_DOUBLE,
    EXR_T_ENVMAP, EXR_T_FLOAT, EXR_T_INT, EXR_T_KEYCODE, EXR_T_LINE_ORDER, EXR_T_M33F, EXR_T_M33D, EXR_T_M44F,
    EXR_T_M44D, EXR_T_RATIONAL, EXR_T_TILEDESC, EXR_T_TIMECODE, EXR_T_V2I, EXR_T_V2F, EXR_T_V2D, EXR_T_V3I,
    EXR_T_V3F, EXR_T_V3D, EXR_T_CHLIST, EXR_T_STRINGVECTOR, EXR_T_FLOATVECTOR, EXR_T_PREVIEW, EXR_T_BYTES,
    EXR_T_STRING,
} exr_type_id_t;

/* Attribute type table entry: expected value size, or -1 when variable. */
typedef struct {
    const char *name;
    int size;
    size_t len; /* strlen(name) */
    exr_type_id_t id;
} exr_type_info_t;

/* Upper-case names of an enum's values; out-of-range values print as UNKNOWN_<n>. */
typedef struct {
    const char *const *names;
    int count;
} exr_enum_t;

extern const exr_enum_t EXR_ENUM_COMPRESSION, EXR_ENUM_LINE_ORDER, EXR_ENUM_ENVMAP, EXR_ENUM_DEEP_IMAGE_STATE,
    EXR_ENUM_LEVEL_MODE, EXR_ENUM_ROUNDING_MODE, EXR_ENUM_PIXEL_TYPE;

/* The known type named by raw bytes, or NULL (an opaque type). */
const exr_type_info_t *internal_exr_find_type(const uint8_t *raw, size_t len);

int internal_exr_decode_init(void);
PyObject *internal_exr_scan_error_message(const exr_scan_t *c, exr_scan_result_t rv);
PyObject *internal_exr_build(const exr_scan_t *ctx, exr_scan_result_t rv);
PyObject *internal_exr_error_tuple(const char *code, PyObject *message, PyObject *offset);

#endif
