/* mp_safetensors: reading and writing safetensors files (one file or a sharded model).
 *
 * Format: 8-byte little-endian header length N; N bytes of UTF-8 JSON, an object whose keys
 * are tensor names mapping to {"dtype", "shape", "data_offsets": [begin, end]} plus an optional
 * "__metadata__" object of string values; then the data section. Offsets are relative to the
 * first byte after the header.
 *
 * The reader opens each file (refusing anything but a regular file) and validates the header strictly before any tensor is
 * used: N inside the file, well-formed JSON, every entry with a known dtype, a shape of
 * non-negative integers whose product × dtype size equals end − begin (overflow checked),
 * ranges inside the data section, not overlapping and covering it without holes (as the
 * reference implementation requires). Any failure is one message naming the file and the
 * tensor or field. Tensor data is read (pread, converted) only when asked for; a file that
 * shrinks under a run is reported as a read error, not a crash.
 *
 * A sharded model is a directory with model.safetensors.index.json ({"weight_map":
 * {name: file}}); every file it names is opened, and every tensor must be in the file the map
 * says.
 */
#ifndef MP_SAFETENSORS_H
#define MP_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mp_dtype.h"
#include "mp_model.h"
#include "mp_status.h"

#define MP_ST_MAX_DIMS 8

typedef struct {
    const char *name;
    mp_dtype dtype;
    int ndim;
    int64_t shape[MP_ST_MAX_DIMS];
    int64_t numel;
    size_t nbytes;
    int file;          /* index into the model's files */
    int64_t file_offset; /* byte offset of data from the start of that file (8 + N + begin) */
} mp_st_tensor;

typedef struct mp_st_model mp_st_model;

/* Opens `path`: a .safetensors file, or a directory holding model.safetensors.index.json
 * (sharded) or model.safetensors. */
MP_NODISCARD mp_status mp_st_open(const char *path, mp_st_model **out);
void mp_st_close(mp_st_model **m);

/* Tensors in file order (files in index order, tensors by offset within a file). */
size_t mp_st_count(const mp_st_model *m);
const mp_st_tensor *mp_st_at(const mp_st_model *m, size_t i);
/* NULL if absent. */
const mp_st_tensor *mp_st_find(const mp_st_model *m, const char *name);

/* Files: count, path and base name (e.g. "model-00001-of-00002.safetensors"), and each file's
 * "__metadata__" object as JSON text ("{}" if none), in the order of the header. */
int mp_st_file_count(const mp_st_model *m);
const char *mp_st_file_path(const mp_st_model *m, int file);
const char *mp_st_file_name(const mp_st_model *m, int file);
const char *mp_st_file_metadata(const mp_st_model *m, int file);
/* True when opened through model.safetensors.index.json. */
bool mp_st_is_sharded(const mp_st_model *m);

/* Reads tensor `name` as float32 into out[numel]; checks the expected shape when ndim > 0
 * (MP_ERR_FORMAT naming the file, the tensor, both shapes); MP_ERR_NOT_FOUND naming the
 * model path when absent; MP_ERR_NUMERIC when a value is NaN or infinite. */
MP_NODISCARD mp_status mp_st_read_f32(const mp_st_model *m, const char *name, int ndim,
                                      const int64_t *shape, float *out);

/* A weight source (mp_model.h) that reads from m; m must outlive it. */
void mp_st_weight_source(mp_st_model *m, mp_weight_source *src);

/* Writing. The entries are written in the order given; data is in the entry's dtype,
 * little-endian. metadata_json is the "__metadata__" object as JSON text, or NULL for none.
 * The file is written as "<path>.tmp.<pid>", flushed with fsync and renamed to path only when
 * complete; on failure nothing is left at path or at the temporary name. The header is padded
 * with spaces so that 8 + N is a multiple of 8. */
typedef struct {
    const char *name;
    mp_dtype dtype;
    int ndim;
    int64_t shape[MP_ST_MAX_DIMS];
    const void *data;
} mp_st_entry;

MP_NODISCARD mp_status mp_st_write(const char *path, const mp_st_entry *entries, size_t n,
                                   const char *metadata_json);

#endif
