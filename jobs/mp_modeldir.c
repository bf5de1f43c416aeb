#include "mp_modeldir.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "mp_hfconfig.h"

/* A tensor's shape against the sizes config.json gives it (when the tensor exists; a missing
 * one is reported where it is loaded). */
static mp_status modeldir_check_tensor(const mp_modeldir *m, const char *name, int64_t rows,
                                       const char *rows_field, int64_t cols,
                                       const char *cols_field)
{
    const mp_st_tensor *t = mp_st_find(m->st, name);
    if (!t || (t->ndim == 2 && t->shape[0] == rows && t->shape[1] == cols))
        return MP_OK;
    char sh[64] = "[]";
    if (t->ndim >= 1)
        snprintf(sh, sizeof sh, "[%lld%s]", (long long)t->shape[0], t->ndim >= 2 ? ", ..." : "");
    if (t->ndim == 2)
        snprintf(sh, sizeof sh, "[%lld, %lld]", (long long)t->shape[0], (long long)t->shape[1]);
    return mp_error(MP_ERR_FORMAT, "%s: tensor '%s' has shape %s but %s gives [%s %lld, %s "
                    "%lld]", mp_st_file_path(m->st, t->file), name, sh, m->config_path,
                    rows_field, (long long)rows, cols_field, (long long)cols);
}

/* The sizes of config.json against the embeddings, before anything is allocated from them: a
 * config whose sizes (each within its limit) disagree with the weights would otherwise have
 * the model ask for terabytes before the first shape check. */
static mp_status modeldir_check_shapes(const mp_modeldir *m)
{
    const mp_model_config *c = &m->cfg;
    if (c->arch == MP_ARCH_OPT) {
        mp_status st = modeldir_check_tensor(m, "model.decoder.embed_tokens.weight", c->vocab,
                                             "vocab_size", c->word_embed_proj_dim,
                                             "word_embed_proj_dim");
        if (st != MP_OK)
            return st;
        return modeldir_check_tensor(m, "model.decoder.embed_positions.weight", c->max_pos + 2,
                                     "max_position_embeddings + 2", c->d, "hidden_size");
    }
    return modeldir_check_tensor(m, "model.embed_tokens.weight", c->vocab, "vocab_size", c->d,
                                 "hidden_size");
}

mp_status mp_modeldir_open(const char *dir, mp_modeldir *m)
{
    mp_status st = MP_OK;
    struct stat sb;
    memset(m, 0, sizeof *m);
    if (stat(dir, &sb) != 0)
        return mp_error(MP_ERR_NOT_FOUND, "%s: %s", dir, strerror(errno));
    if (S_ISREG(sb.st_mode) && mp_gguf_is_gguf(dir)) {
        if (snprintf(m->dir, sizeof m->dir, "%s", dir) >= (int)sizeof m->dir ||
            snprintf(m->config_path, sizeof m->config_path, "%s", dir) >=
                (int)sizeof m->config_path)
            return mp_error(MP_ERR_RANGE, "%s: path too long", dir);
        m->gguf = true;
        MP_TRY(mp_gguf_open(dir, &m->gg));
        MP_TRY(mp_gguf_model_config(m->gg, &m->cfg));
        mp_gguf_weight_source(m->gg, &m->src);
        goto done;
    }
    if (!S_ISDIR(sb.st_mode))
        return mp_error(MP_ERR_FORMAT, "%s: %s (--model takes a Hugging Face model directory "
                        "or a GGUF file)", dir,
                        S_ISREG(sb.st_mode) ? "not a GGUF file (no GGUF magic) and not a "
                                              "directory"
                                            : "not a directory or a regular file");
    if (snprintf(m->dir, sizeof m->dir, "%s", dir) >= (int)sizeof m->dir ||
        snprintf(m->config_path, sizeof m->config_path, "%s/config.json", dir) >=
            (int)sizeof m->config_path)
        return mp_error(MP_ERR_RANGE, "%s: path too long", dir);
    MP_TRY(mp_hfconfig_load(m->config_path, &m->cfg));
    MP_TRY(mp_st_open(dir, &m->st));
    MP_TRY(modeldir_check_shapes(m));
    mp_st_weight_source(m->st, &m->src);
done:
    if (st != MP_OK)
        mp_modeldir_close(m);
    return st;
}

void mp_modeldir_close(mp_modeldir *m)
{
    mp_st_close(&m->st);
    mp_gguf_close(&m->gg);
}

mp_status mp_modeldir_check_seqlen(const mp_modeldir *m, int64_t seqlen)
{
    if (seqlen > m->cfg.max_pos)
        return mp_error(MP_ERR_RANGE, "%s: --seqlen %lld exceeds %s %lld", m->config_path,
                        (long long)seqlen, m->gguf ? "the context length" :
                        "max_position_embeddings", (long long)m->cfg.max_pos);
    if (m->cfg.sliding_window > 0 && seqlen > m->cfg.sliding_window)
        return mp_error(MP_ERR_UNSUPPORTED, "%s: --seqlen %lld exceeds sliding_window %lld, "
                        "which mpiprune does not implement", m->config_path, (long long)seqlen,
                        (long long)m->cfg.sliding_window);
    return MP_OK;
}
