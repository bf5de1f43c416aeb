/* mp_file: opening an input file without ever blocking on it.
 *
 * open() of a FIFO for reading waits for a writer, forever if none comes; so every reader of
 * an input file opens it with O_NONBLOCK, checks with fstat that it is a regular file, and only
 * then reads (for a regular file O_NONBLOCK changes nothing). */
#ifndef MP_FILE_H
#define MP_FILE_H

#include <stdint.h>
#include <stdio.h>

#include "mp_status.h"

/* Opens path read-only. On success *fd is the descriptor and *size the file's size (size may
 * be NULL). Errors, each one line naming path: MP_ERR_NOT_FOUND "no such file"; MP_ERR_IO
 * "cannot open: <strerror>"; MP_ERR_FORMAT "not a regular file (a FIFO)" (or a directory,
 * device, socket). Not collective. */
MP_NODISCARD mp_status mp_file_open_regular(const char *path, int *fd, int64_t *size);

/* "dir/name" (one slash between them), allocated (free); NULL when out of memory. */
char *mp_file_join(const char *dir, const char *name);

/* fsyncs the folder that holds path, so that a rename into it survives a crash. Best effort:
 * some file systems refuse fsync on a directory, which only weakens durability. */
void mp_file_sync_dir_of(const char *path);

/* The same as a stdio stream opened "rb" (*f is NULL on failure). */
MP_NODISCARD mp_status mp_file_fopen_regular(const char *path, FILE **f, int64_t *size);

#endif
