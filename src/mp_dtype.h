/* mp_dtype: the element types of safetensors files and exact conversions to/from float32.
 *
 * F16 and BF16 widen to float32 exactly (subnormals, infinities and NaN included; a NaN keeps
 * its sign and payload bits where float32 can hold them). Narrowing rounds to nearest, ties to
 * even, overflows to infinity, and keeps NaN a (quiet) NaN.
 */
#ifndef MP_DTYPE_H
#define MP_DTYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mp_status.h"

typedef enum {
    MP_DT_BOOL,
    MP_DT_U8,
    MP_DT_I8,
    MP_DT_F8_E5M2,
    MP_DT_F8_E4M3,
    MP_DT_I16,
    MP_DT_U16,
    MP_DT_F16,
    MP_DT_BF16,
    MP_DT_I32,
    MP_DT_U32,
    MP_DT_F32,
    MP_DT_F64,
    MP_DT_I64,
    MP_DT_U64,
    MP_DT_COUNT
} mp_dtype;

/* Bytes per element. */
size_t mp_dtype_size(mp_dtype dt);
/* The safetensors spelling ("F32", "BF16", ...). */
const char *mp_dtype_name(mp_dtype dt);
/* Parses a safetensors dtype string; false if unknown. */
bool mp_dtype_parse(const char *name, mp_dtype *out);
/* True for the types mpiprune converts to and from float32: F32, F16, BF16, F64. */
bool mp_dtype_is_float(mp_dtype dt);

float mp_f16_to_f32(uint16_t h);
uint16_t mp_f32_to_f16(float f);
float mp_bf16_to_f32(uint16_t h);
uint16_t mp_f32_to_bf16(float f);

/* Converts n little-endian elements at src (any alignment) to float32.
 * MP_ERR_UNSUPPORTED when dt is not a float type. */
MP_NODISCARD mp_status mp_dtype_to_f32(mp_dtype dt, const void *src, size_t n, float *dst);
/* Converts n float32 values to n little-endian elements of dt at dst (any alignment). */
MP_NODISCARD mp_status mp_dtype_from_f32(mp_dtype dt, const float *src, size_t n, void *dst);

#endif
