/* mp_json: cJSON allocating through mp_alloc, and parsing that tells "out of memory" from
 * "malformed".
 *
 * mp_json_init() points cJSON's allocator at mp_malloc (so MPIPRUNE_FAIL_ALLOC reaches cJSON
 * too); main calls it once at program start, before any thread; it is idempotent. cJSON
 * returns NULL alike for a syntax error and for a failed allocation, so the readers parse with
 * mp_json_parse, which says which one it was. */
#ifndef MP_JSON_H
#define MP_JSON_H

#include <stdbool.h>
#include <stdint.h>

struct cJSON;

void mp_json_init(void);

/* cJSON_ParseWithOpts(text, end, require_null_terminated = true). On NULL, *oom says whether
 * an allocation failed during the parse (then the input may well be valid JSON). */
struct cJSON *mp_json_parse(const char *text, const char **end, bool *oom);

/* Doubles that must come back bit for bit (state a resumed run computes with): cJSON prints a
 * number with 15 significant digits whenever that reads back within one ulp or so of it, which
 * loses the last bits. mp_json_f64_bits makes a string of 16 hex digits per value (the IEEE
 * bits, most significant first), NULL when out of memory; mp_json_f64_unbits reads exactly n
 * values back from such a string (false if it is not one). */
struct cJSON *mp_json_f64_bits(const double *v, int64_t n);
bool mp_json_f64_unbits(const struct cJSON *s, double *v, int64_t n);

#endif
