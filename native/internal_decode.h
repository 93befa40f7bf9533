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

int internal_exr_decode_init(void);
PyObject *internal_exr_build(const exr_scan_t *ctx, exr_scan_result_t rv);
PyObject *internal_exr_error_tuple(const char *code, PyObject *message, PyObject *offset);

#endif
