#define _POSIX_C_SOURCE 200809L

#include "mp_convert.h"

#include <string.h>
#include <sys/stat.h>

#include "mp_dtype.h"
#include "mp_gguf.h"
#include "mp_modeldir.h"

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* The conversion itself, on one rank. */
static mp_status convert_local(const mp_convert_opts *o)
{
    mp_status st = MP_OK;
    mp_modeldir md = {0};
    struct stat sb;
    mp_dtype dt = strcmp(o->dtype, "f16") == 0    ? MP_DT_F16
                  : strcmp(o->dtype, "bf16") == 0 ? MP_DT_BF16
                                                  : MP_DT_F32;
    if (lstat(o->out, &sb) == 0)
        return mp_error(MP_ERR_ARG, "%s: exists; mpiprune does not overwrite", o->out);
    if (!ends_with(o->out, ".gguf"))
        return mp_error(MP_ERR_UNSUPPORTED, "%s: OUT must be a .gguf file (writing a Hugging "
                        "Face directory is not available yet)", o->out);
    MP_TRY(mp_modeldir_open(o->in, &md));
    MP_TRY(mp_gguf_write_model(o->out, &md.cfg, &md.src, dt, md.gguf ? md.gg : NULL));
done:
    mp_modeldir_close(&md);
    return st;
}

mp_status mp_convert_run(const mp_convert_opts *o, const mp_comm *comm)
{
    mp_status st = MP_OK, gst = MP_OK;
    int who = -1;
    if (mp_comm_rank(comm) == 0)
        st = convert_local(o);
    MP_TRY(mp_comm_agree(comm, st, &gst, &who));
    st = gst; /* the failing rank keeps its message, the others say who reports it */
done:
    return st;
}
