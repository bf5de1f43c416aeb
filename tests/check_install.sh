#!/usr/bin/env bash
# `cmake --install` into a temporary prefix gives the binary, the library, its headers and a
# pkg-config file with which a program builds and runs.
# usage: check_install.sh BUILD_DIR WORK_DIR
set -euo pipefail
build=$1; work=$2
rm -rf "$work"; mkdir -p "$work"
cmake --install "$build" --prefix "$work/prefix" >/dev/null
test -x "$work/prefix/bin/mpiprune"
"$work/prefix/bin/mpiprune" version | grep -q '^mpiprune '
cat > "$work/use.c" <<'C'
#include <stdio.h>
#include <string.h>
#include "mp_dtype.h"
#include "mp_status.h"
int main(void)
{
    /* bf16 0x3f80 is 1.0; the status table is reachable. */
    if (mp_bf16_to_f32(0x3f80) != 1.0f || strcmp(mp_status_str(MP_ERR_FORMAT), "format error"))
        return 1;
    puts("ok");
    return 0;
}
C
export PKG_CONFIG_PATH="$work/prefix/lib/pkgconfig:$work/prefix/lib/$(gcc -print-multiarch)/pkgconfig"
# shellcheck disable=SC2046
cc -std=c11 -o "$work/use" "$work/use.c" $(pkg-config --cflags --libs mpiprune)
libdir=$(pkg-config --variable=libdir mpiprune)
LD_LIBRARY_PATH="$libdir" "$work/use" | grep -q '^ok$'
echo "install ok: $(ls "$work/prefix")"
