/* mp_gguf: reading and writing GGUF (llama.cpp / ggml) model files.
 *
 * Format (GGUF v3, all little-endian; a "string" is a uint64 byte length and that many bytes,
 * no terminator):
 *
 *   uint32 magic "GGUF" (bytes 47 47 55 46)     uint32 version (2 or 3: the same layout)
 *   uint64 tensor_count                          uint64 kv_count
 *   kv_count × { string key; uint32 value_type; value }
 *       value types: 0 u8, 1 i8, 2 u16, 3 i16, 4 u32, 5 i32, 6 f32, 7 bool (1 byte),
 *       8 string, 9 array { uint32 elem_type; uint64 n; n values }, 10 u64, 11 i64, 12 f64
 *   tensor_count × { string name; uint32 n_dims (1..4); uint64 ne[n_dims]; uint32 ggml_type;
 *                    uint64 offset }
 *   padding to a multiple of ALIGN (the u32 key general.alignment, default 32)
 *   data section: each tensor at data_start + offset (offset a multiple of ALIGN).
 *
 * ne[0] is the fastest-varying dimension: a matrix stored as ne = [in, out] is, in memory, the
 * row-major [out, in] of nn.Linear, so the Hugging Face shape is ne reversed. A quantised type
 * stores blocks of B consecutive elements along ne[0] (ne[0] % B == 0):
 *   F32 (0), F16 (1), BF16 (30): one element each.
 *   Q4_0 (2): {f16 d; u8 qs[16]}, 32 elements: x[j] = ((qs[j] & 15) - 8)·d,
 *             x[j+16] = ((qs[j] >> 4) - 8)·d.
 *   Q4_1 (3): {f16 d; f16 m; u8 qs[16]}: x[j] = (qs[j] & 15)·d + m, x[j+16] = (qs[j] >> 4)·d + m.
 *   Q8_0 (8): {f16 d; i8 qs[32]}: x[j] = qs[j]·d.
 * (products and sums in float32, as ggml's reference dequantisers compute them). Other ggml
 * types are known by name and size, and refused.
 *
 * The reader reads with pread (no mmap: a file truncated while it is read gives an error, not
 * SIGBUS), refuses anything but a regular file before reading, and validates everything before
 * a tensor is used: every count, length and size from the file checked for 64-bit overflow and
 * against the bytes left in the file; known value and tensor types; no duplicate keys or tensor
 * names; alignment a power of two; each tensor's byte range aligned, inside the data section
 * and overlapping no other. Each failure is one message naming the file and the problem.
 *
 * Models: general.architecture `llama` or `deci` (llama.cpp's Nemotron-NAS architecture, whose
 * head counts and FFN widths may be per-layer arrays; 0 heads = no attention sub-block, 0 FFN
 * = no FFN sub-block; `llama` accepts arrays the same way). llama.cpp's converter permutes the
 * rows of each Q and K head for its RoPE layout, reshape(n_head, 2, hd/2, in).swapaxes(1, 2);
 * the weight source undoes it, so the model sees the Hugging Face rotate_half layout, and the
 * writer applies it again.
 */
#ifndef MP_GGUF_H
#define MP_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mp_dtype.h"
#include "mp_model.h"
#include "mp_status.h"

#define MP_GGUF_MAX_DIMS 4

/* Value types of the metadata. */
typedef enum {
    MP_GGUF_U8 = 0, MP_GGUF_I8 = 1, MP_GGUF_U16 = 2, MP_GGUF_I16 = 3, MP_GGUF_U32 = 4,
    MP_GGUF_I32 = 5, MP_GGUF_F32 = 6, MP_GGUF_BOOL = 7, MP_GGUF_STRING = 8, MP_GGUF_ARRAY = 9,
    MP_GGUF_U64 = 10, MP_GGUF_I64 = 11, MP_GGUF_F64 = 12, MP_GGUF_VTYPE_COUNT
} mp_gguf_vtype;

/* The ggml tensor types mpiprune reads (the others are refused by name). */
enum { MP_GGML_F32 = 0, MP_GGML_F16 = 1, MP_GGML_Q4_0 = 2, MP_GGML_Q4_1 = 3, MP_GGML_Q8_0 = 8,
       MP_GGML_BF16 = 30 };

/* One metadata entry. raw holds the value's bytes exactly as in the file (after the value type;
 * for an array: element type, count and elements), so that it can be copied to another file. */
typedef struct {
    char *key;
    uint32_t type;
    uint32_t arr_type; /* element type when type == MP_GGUF_ARRAY */
    uint64_t arr_n;    /* element count when type == MP_GGUF_ARRAY */
    unsigned char *raw;
    size_t raw_len;
    char *str;         /* MP_GGUF_STRING: the value, NUL-terminated (may hold NULs inside) */
} mp_gguf_kv;

typedef struct {
    char *name;
    uint32_t type;     /* ggml type */
    int ndim;
    int64_t ne[MP_GGUF_MAX_DIMS];
    int64_t numel;
    uint64_t offset;   /* from the start of the data section */
    uint64_t nbytes;
} mp_gguf_tensor;

typedef struct mp_gguf mp_gguf;

/* Opens and validates `path` (see above). Not collective. */
MP_NODISCARD mp_status mp_gguf_open(const char *path, mp_gguf **out);
void mp_gguf_close(mp_gguf **g);

/* True when `path` is a regular file that starts with the GGUF magic (no error recorded). */
bool mp_gguf_is_gguf(const char *path);

const char *mp_gguf_path(const mp_gguf *g);
uint32_t mp_gguf_alignment(const mp_gguf *g);
size_t mp_gguf_kv_count(const mp_gguf *g);
const mp_gguf_kv *mp_gguf_kv_at(const mp_gguf *g, size_t i);
const mp_gguf_kv *mp_gguf_find_kv(const mp_gguf *g, const char *key); /* NULL if absent */
size_t mp_gguf_tensor_count(const mp_gguf *g);
const mp_gguf_tensor *mp_gguf_tensor_at(const mp_gguf *g, size_t i); /* file order */
const mp_gguf_tensor *mp_gguf_find_tensor(const mp_gguf *g, const char *name);

/* The name of a ggml tensor type ("Q4_K"), or NULL when unknown. */
const char *mp_gguf_type_name(uint32_t type);
/* Dequantises n elements (a multiple of the type's block size) of a supported type from src
 * to float32. MP_ERR_UNSUPPORTED for other types. */
MP_NODISCARD mp_status mp_gguf_dequantize(uint32_t type, const void *src, int64_t n, float *dst);

/* Reads tensor t as float32 in the file's layout (ne[0] fastest, no Q/K permutation undone)
 * into out[t->numel]. MP_ERR_NUMERIC naming the tensor when a value is NaN or infinite. */
MP_NODISCARD mp_status mp_gguf_read_f32(const mp_gguf *g, const mp_gguf_tensor *t, float *out);

/* The model config from the metadata (llama or deci; see above), checked. The config is also
 * kept in g for the weight source. */
MP_NODISCARD mp_status mp_gguf_model_config(mp_gguf *g, mp_model_config *cfg);

/* The GGUF name of a Hugging Face LLaMA tensor name ("model.layers.3.self_attn.q_proj.weight"
 * → "blk.3.attn_q.weight"); false when it has none. */
bool mp_gguf_name_from_hf(const char *hf, char *buf, size_t len);

/* A weight source serving the Hugging Face names and shapes ([out, in]) from g, with the Q/K
 * permutation undone. Needs mp_gguf_model_config(g) first; g must outlive it. */
void mp_gguf_weight_source(mp_gguf *g, mp_weight_source *src);

/* Writes a model as GGUF to `path`, streaming: the header and tensor infos (from cfg's widths)
 * first, then each tensor read from src, converted and written in file order; one tensor in
 * memory at a time. Architecture `llama` when every block has the same widths, else `deci`
 * with per-layer arrays and explicit key/value lengths. Matrices are written as `dtype` (F32,
 * F16 or BF16, rounded to nearest even), norms as F32; Q/K rows permuted to llama.cpp's layout.
 * When meta_from is not NULL its general.* and tokenizer.* entries are carried over (except
 * general.architecture, general.alignment, general.file_type and
 * general.quantization_version, which describe this file). The file is built as
 * "<path>.tmp-<pid>", fsync'ed and renamed; on failure nothing is left. An existing path is
 * refused (MP_ERR_ARG). LLaMA-family configs without OPT features only. Not collective. */
MP_NODISCARD mp_status mp_gguf_write_model(const char *path, const mp_model_config *cfg,
                                           const mp_weight_source *src, mp_dtype dtype,
                                           const mp_gguf *meta_from);

/* The same, tensor by tensor, for a producer that has the tensors in turn (prune writes each
 * block as it is pruned). The file's tensors, in order: model.embed_tokens, then each block's
 * (attention norm, q, k, v, o with biases; FFN norm, gate, up, down), model.norm, lm_head, all
 * by their Hugging Face names; absent sub-blocks have none. begin writes the header (the
 * metadata and tensor infos from cfg's widths) to the temporary file; put writes the next
 * tensor from values in Hugging Face layout (the name must be the next one: MP_ERR_INTERNAL
 * otherwise); put_from writes the next tensors from src while their names start with prefix
 * (all the rest when prefix is NULL); finish checks that every tensor was written, fsyncs and
 * renames, and frees the writer (also on failure); abort removes the temporary file and frees
 * the writer (NULL accepted). */
typedef struct mp_gguf_writer mp_gguf_writer;
MP_NODISCARD mp_status mp_gguf_writer_begin(const char *path, const mp_model_config *cfg,
                                            mp_dtype dtype, const mp_gguf *meta_from,
                                            mp_gguf_writer **out);
/* The Hugging Face name (and ndim, shape [out, in]) of the next tensor; NULL when done. */
const char *mp_gguf_writer_next(const mp_gguf_writer *w, int *ndim, int64_t shape[2]);
MP_NODISCARD mp_status mp_gguf_writer_put(mp_gguf_writer *w, const char *hf_name,
                                          const float *values);
MP_NODISCARD mp_status mp_gguf_writer_put_from(mp_gguf_writer *w, const mp_weight_source *src,
                                               const char *prefix);
MP_NODISCARD mp_status mp_gguf_writer_finish(mp_gguf_writer **w);
void mp_gguf_writer_abort(mp_gguf_writer **w);

#endif
