#define _POSIX_C_SOURCE 200809L

#include "mp_alloc.h"
#include "mp_outdir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Files besides the weights and config.json (written by mp_export) that a Hugging Face model
 * directory carries along. */
static bool is_companion(const char *name)
{
    static const char *const prefixes[] = {"generation_config.json", "tokenizer", "tok",
                                           "special_tokens_map", "added_tokens", "vocab",
                                           "merges", "README", "LICENSE", NULL};
    for (int i = 0; prefixes[i]; i++)
        if (strncmp(name, prefixes[i], strlen(prefixes[i])) == 0)
            return true;
    return false;
}

static mp_status copy_file(const char *src, const char *dst)
{
    mp_status st = MP_OK;
    char buf[1 << 16];
    int in = open(src, O_RDONLY), out = -1;
    if (in < 0)
        return mp_error(MP_ERR_IO, "%s: %s", src, strerror(errno));
    out = open(dst, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (out < 0)
        MP_FAIL(MP_ERR_IO, "%s: %s", dst, strerror(errno));
    for (;;) {
        ssize_t n = read(in, buf, sizeof buf);
        if (n < 0)
            MP_FAIL(MP_ERR_IO, "%s: read failed: %s", src, strerror(errno));
        if (n == 0)
            break;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w < 0)
                MP_FAIL(MP_ERR_IO, "%s: write failed: %s", dst, strerror(errno));
            off += w;
        }
    }
    if (fsync(out) != 0)
        MP_FAIL(MP_ERR_IO, "%s: fsync failed: %s", dst, strerror(errno));
done:
    if (out >= 0 && close(out) != 0 && st == MP_OK)
        st = mp_error(MP_ERR_IO, "%s: close failed: %s", dst, strerror(errno));
    close(in);
    return st;
}

static mp_status join(char *buf, size_t len, const char *a, const char *b)
{
    if (snprintf(buf, len, "%s/%s", a, b) >= (int)len)
        return mp_error(MP_ERR_RANGE, "%s/%s: path too long", a, b);
    return MP_OK;
}

static void remove_tree_files(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    char path[8192];
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (join(path, sizeof path, dir, e->d_name) == MP_OK)
            unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

/* Whether a process of this host still runs (a zombie does not: its parent was killed with it). */
static bool pid_alive(long pid)
{
    if (kill((pid_t)pid, 0) != 0 && errno == ESRCH)
        return false;
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return true;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *rp = strrchr(buf, ')');
    return !(rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X'));
}

/* This host's name reduced to characters safe in a file name (as io/mp_st_stream does). */
static void host_tag(char *buf, size_t len)
{
    char host[65] = "host";
    if (gethostname(host, sizeof host - 1) != 0)
        snprintf(host, sizeof host, "host");
    host[sizeof host - 1] = '\0';
    for (char *c = host; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '-' || *c == '.' || *c == '_'))
            *c = '_';
    snprintf(buf, len, "%s", host);
}

/* A run killed before it finished leaves OUT.tmp-<host>-<pid>; removes those of this host
 * whose process is gone. Another node's (a concurrent run on a shared file system) and names
 * of any other form are left alone: their owner cannot be checked from here. */
static void remove_stale(const char *out)
{
    char parent[4096], prefix[4300], host[80];
    host_tag(host, sizeof host);
    const char *slash = strrchr(out, '/');
    if (slash) {
        snprintf(parent, sizeof parent, "%.*s", (int)(slash - out), out);
        if (parent[0] == '\0')
            snprintf(parent, sizeof parent, "/");
        snprintf(prefix, sizeof prefix, "%s.tmp-%s-", slash + 1, host);
    } else {
        snprintf(parent, sizeof parent, ".");
        snprintf(prefix, sizeof prefix, "%s.tmp-%s-", out, host);
    }
    DIR *d = opendir(parent);
    if (!d)
        return;
    size_t n = strlen(prefix);
    char path[8192];
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        char *end = NULL;
        if (strncmp(e->d_name, prefix, n) != 0)
            continue;
        long pid = strtol(e->d_name + n, &end, 10);
        if (pid <= 0 || *end != '\0' || pid_alive(pid))
            continue;
        if (join(path, sizeof path, parent, e->d_name) == MP_OK)
            remove_tree_files(path);
    }
    closedir(d);
}

mp_status mp_outdir_create(mp_outdir *o, const char *out, const char *model_dir)
{
    mp_status st = MP_OK;
    struct stat sb;
    DIR *d = NULL;
    char src[8192], dst[8192], host[80];
    memset(o, 0, sizeof *o);
    host_tag(host, sizeof host);
    /* "OUT/" names the directory OUT. */
    size_t len = strlen(out);
    while (len > 1 && out[len - 1] == '/')
        len--;
    if (snprintf(o->final, sizeof o->final, "%.*s", (int)len, out) >= (int)sizeof o->final ||
        snprintf(o->tmp, sizeof o->tmp, "%s.tmp-%s-%ld", o->final, host, (long)getpid()) >=
            (int)sizeof o->tmp)
        return mp_error(MP_ERR_RANGE, "%s: path too long", out);
    remove_stale(o->final);
    if (stat(o->final, &sb) == 0)
        return mp_error(MP_ERR_ARG, "%s: already exists; mpiprune does not overwrite an output "
                        "(remove it or choose another --out)", o->final);
    if (mkdir(o->tmp, 0755) != 0)
        return mp_error(MP_ERR_IO, "%s: cannot create: %s", o->tmp, strerror(errno));
    o->created = true;
    if (!model_dir)
        goto done; /* a GGUF input: its tokenizer travels inside model.gguf */
    d = opendir(model_dir);
    if (!d)
        MP_FAIL(MP_ERR_IO, "%s: %s", model_dir, strerror(errno));
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (!is_companion(e->d_name))
            continue;
        MP_TRY(join(src, sizeof src, model_dir, e->d_name));
        if (stat(src, &sb) != 0 || !S_ISREG(sb.st_mode))
            continue;
        MP_TRY(join(dst, sizeof dst, o->tmp, e->d_name));
        MP_TRY(copy_file(src, dst));
    }
done:
    if (d)
        closedir(d);
    if (st != MP_OK)
        mp_outdir_abort(o);
    return st;
}

mp_status mp_outdir_write_file(mp_outdir *o, const char *name, const char *text)
{
    mp_status st = MP_OK;
    char path[8192];
    MP_TRY(join(path, sizeof path, o->tmp, name));
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        MP_FAIL(MP_ERR_IO, "%s: %s", path, strerror(errno));
    size_t n = strlen(text);
    for (size_t off = 0; off < n;) {
        ssize_t w = write(fd, text + off, n - off);
        if (w < 0) {
            st = mp_error(MP_ERR_IO, "%s: write failed: %s", path, strerror(errno));
            break;
        }
        off += (size_t)w;
    }
    if (st == MP_OK && fsync(fd) != 0)
        st = mp_error(MP_ERR_IO, "%s: fsync failed: %s", path, strerror(errno));
    if (close(fd) != 0 && st == MP_OK)
        st = mp_error(MP_ERR_IO, "%s: close failed: %s", path, strerror(errno));
done:
    return st;
}

static mp_status fsync_path(const char *path, int flags)
{
    int fd = open(path, flags);
    if (fd < 0)
        return mp_error(MP_ERR_IO, "%s: %s", path, strerror(errno));
    int rc = fsync(fd);
    close(fd);
    if (rc != 0 && errno != EINVAL)
        return mp_error(MP_ERR_IO, "%s: fsync failed: %s", path, strerror(errno));
    return MP_OK;
}

mp_status mp_outdir_commit(mp_outdir *o)
{
    mp_status st = fsync_path(o->tmp, O_RDONLY | O_DIRECTORY);
    if (st != MP_OK)
        return st;
    if (rename(o->tmp, o->final) != 0)
        return mp_error(MP_ERR_IO, "%s: cannot rename to %s: %s", o->tmp, o->final,
                        strerror(errno));
    o->created = false;
    /* The rename is durable once the parent directory is synced. */
    char parent[4096];
    snprintf(parent, sizeof parent, "%s", o->final);
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent)
        *slash = '\0';
    else
        snprintf(parent, sizeof parent, "%s", slash ? "/" : ".");
    return fsync_path(parent, O_RDONLY | O_DIRECTORY);
}

mp_status mp_outdir_read_existing(const char *out, const char *name, char **text)
{
    mp_status st = MP_OK;
    char path[8192];
    char *buf = NULL;
    FILE *f = NULL;
    *text = NULL;
    MP_TRY(join(path, sizeof path, out, name));
    f = fopen(path, "rb");
    if (!f)
        MP_FAIL(errno == ENOENT ? MP_ERR_NOT_FOUND : MP_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size > (64 << 20))
        MP_FAIL(MP_ERR_FORMAT, "%s: not a file of at most 64 MiB", path);
    buf = mp_malloc((size_t)sb.st_size + 1);
    if (!buf)
        MP_FAIL(MP_ERR_NOMEM, "%s: out of memory", path);
    if (fread(buf, 1, (size_t)sb.st_size, f) != (size_t)sb.st_size)
        MP_FAIL(MP_ERR_IO, "%s: read failed", path);
    buf[sb.st_size] = '\0';
    *text = buf;
    buf = NULL;
done:
    if (f)
        fclose(f);
    free(buf);
    return st;
}

void mp_outdir_abort(mp_outdir *o)
{
    if (!o->created)
        return;
    remove_tree_files(o->tmp);
    o->created = false;
}
