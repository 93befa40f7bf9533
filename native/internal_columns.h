/*
 * The chunk scanner: paths -> Arrow-layout column buffers (see exr_columns.c).
 */
#ifndef EXR_INSPECTOR_INTERNAL_COLUMNS_H
#define EXR_INSPECTOR_INTERNAL_COLUMNS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>

/* {table: {column: (length, null_count, validity | None, values, data | None)}, "errors": [rows],
 * "consumed": n}. signames: the attribute names whose values count in a file's signature. Once
 * the chunk holds max_bytes it stops, after at least one path: "consumed" paths were scanned. */
PyObject *internal_exr_scan_chunk(PyObject *paths, uint64_t max_header, uint64_t max_items, PyObject *signames,
                                  size_t max_bytes);
int internal_exr_columns_init(void); /* readies the column buffer type; -1 with an exception set */

#endif
