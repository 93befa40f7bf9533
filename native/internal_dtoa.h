/*
 * Shortest round-trip float formatting, spelled as orjson spells it (see exr_dtoa.c).
 */
#ifndef EXR_INSPECTOR_INTERNAL_DTOA_H
#define EXR_INSPECTOR_INTERNAL_DTOA_H

#include <stddef.h>

/* The output buffer size. The longest output is 24 bytes ("-0.000012345678901234567",
 * "-1.2345678901234567e-308"); bytes past the returned length are scratch (up to 26). */
#define EXR_F64_TEXT_MAX 32

/* Writes exactly what orjson.dumps(v) writes (no NUL) and returns its length:
 * the shortest digits that read back as v, "1e-7" / "1e+16" / "0.00001234" / "1.0" / "-0.0",
 * and "null" for NaN and infinities. Pure: no allocation, no global state, no GIL. */
size_t internal_exr_format_f64(double v, char out[EXR_F64_TEXT_MAX]);

#endif
