#include "mp_modeldir.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "mp_hfconfig.h"

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
