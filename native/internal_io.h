/*
 * File I/O for the scanner: open, stat, read the first 64 KiB into a per-thread
 * buffer, scan, and grow only while the header runs on. Never reads pixels.
 * Runs without the GIL.
 */
#ifndef EXR_INSPECTOR_INTERNAL_IO_H
#define EXR_INSPECTOR_INTERNAL_IO_H

#include "internal_scan.h"

typedef enum { IO_OK = 0, IO_OPEN, IO_READ, IO_NOT_REGULAR, IO_NOMEM } io_stage_t;

typedef struct {
    uint8_t *buf; /* first_buf, or heap memory once grown past it */
    size_t len;
    io_stage_t stage;
    int err;
    uint64_t size;
    int64_t mtime_ns;
    uint64_t inode;
} file_read_t;

exr_scan_result_t internal_exr_scan_file(const char *path, file_read_t *f, exr_scan_t *ctx);
void internal_exr_file_free(file_read_t *f);

/* Read-ahead hint for cold storage: ask the kernel for the first `bytes` of a file
 * (posix_fadvise WILLNEED) without waiting for them. 1 if the file opened, else 0. */
int internal_exr_advise(const char *path, size_t bytes);

/* Is the first byte of `path` in the page cache? 1 yes, 0 no (or not knowable without
 * reading: no RWF_NOWAIT), -1 the file cannot be opened. Never waits for storage. */
int internal_exr_resident(const char *path);

/* The io_error message of a failed read ("cannot open file: No such file or directory"). */
void internal_exr_io_message(const file_read_t *f, char *out, size_t n);

#endif
