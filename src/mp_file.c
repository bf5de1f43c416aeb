#define _POSIX_C_SOURCE 200809L

#include "mp_file.h"

#include "mp_alloc.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *file_kind(mode_t m)
{
    if (S_ISFIFO(m))
        return "a FIFO";
    if (S_ISDIR(m))
        return "a directory";
    if (S_ISCHR(m))
        return "a character device";
    if (S_ISBLK(m))
        return "a block device";
    if (S_ISSOCK(m))
        return "a socket";
    return "not a file";
}

mp_status mp_file_open_regular(const char *path, int *fd, int64_t *size)
{
    *fd = -1;
    int d = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (d < 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return mp_error(MP_ERR_NOT_FOUND, "%s: no such file", path);
        return mp_error(MP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    struct stat sb;
    if (fstat(d, &sb) != 0) {
        int e = errno;
        close(d);
        return mp_error(MP_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(d);
        return mp_error(MP_ERR_FORMAT, "%s: not a regular file (%s)", path, file_kind(sb.st_mode));
    }
    *fd = d;
    if (size)
        *size = (int64_t)sb.st_size;
    return MP_OK;
}

mp_status mp_file_fopen_regular(const char *path, FILE **f, int64_t *size)
{
    int fd = -1;
    *f = NULL;
    mp_status st = mp_file_open_regular(path, &fd, size);
    if (st != MP_OK)
        return st;
    *f = fdopen(fd, "rb");
    if (*f == NULL) {
        int e = errno;
        close(fd);
        return mp_error(e == ENOMEM ? MP_ERR_NOMEM : MP_ERR_IO, "%s: cannot open: %s", path,
                        strerror(e));
    }
    return MP_OK;
}

void mp_file_sync_dir_of(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    size_t n = slash ? (size_t)(slash - path) : 0;
    if (n >= sizeof dir)
        return;
    memcpy(dir, path, n);
    dir[n] = '\0';
    const char *d = !slash ? "." : n == 0 ? "/" : dir;
    int fd = open(d, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

char *mp_file_join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = mp_malloc(a + b + 2);
    if (!p)
        return NULL;
    memcpy(p, dir, a);
    size_t k = a;
    if (a > 0 && dir[a - 1] != '/')
        p[k++] = '/';
    memcpy(p + k, name, b + 1);
    return p;
}
