#!/bin/sh
# Builds one Lwan revision for `memdiet revisions` / `memdiet bisect` (make lwan): run in the
# revision's own worktree, with OUT naming the folder its products go to (the build cache's).
#
# What it changes in the sources, and why (nothing that touches a struct):
# - revisions without lwan.conf (before the config file, 2013) listen on a port written in main.c,
#   8080: it is read from LWAN_PORT instead (memdiet never uses a fixed port);
# - those serve "./files_root" relative to where they run: the worktree's own folder instead;
# - the 2013 sources need -D_GNU_SOURCE -fcommon -include signal.h on today's gcc, and zlib after
#   the static library on the link line (CMAKE_C_STANDARD_LIBRARIES); -g for the DWARF struct reader.
# Products: $OUT/lwan (the binary) and $OUT/lwan.conf.tmpl, the revision's own lwan.conf with its
# port as {port}, its file root as {src}/wwwroot; for a config in today's format (a `site` section),
# a minimal one instead: threads = 1 (today's Lwan crashed here with 0) and `response / { code = 200 }`,
# since today's serve_files aborts at start-up here ("Could not add Landlock rule": the sandbox has no
# Landlock) and straitjacket would chroot and drop privileges under the probes.
set -eu
: "${OUT:?OUT names the output folder}"
mkdir -p "$OUT"
for main in $(grep -rl --include=main.c '\.port = 8080' . || true); do
    sed -i 's/\.port = 8080/.port = (getenv("LWAN_PORT") ? atoi(getenv("LWAN_PORT")) : 8080)/' "$main"
done
for main in $(grep -rl --include=main.c 'SERVE_FILES("./files_root")' . || true); do
    sed -i "s|SERVE_FILES(\"./files_root\")|SERVE_FILES(\"$PWD/files_root\")|" "$main"
done
cmake -S . -B build -DCMAKE_BUILD_TYPE=Debug \
    -DCMAKE_C_FLAGS="-g -D_GNU_SOURCE -fcommon -include signal.h -include stdlib.h" \
    -DCMAKE_C_STANDARD_LIBRARIES="-lz -lpthread"
make -C build -j2 lwan
binary=$(find build -name lwan -type f -perm -u+x | head -n 1)
test -n "$binary" || { echo "no lwan binary under build/" >&2; exit 1; }
cp "$binary" "$OUT/lwan"
if [ -f lwan.conf ] && grep -q '^site' lwan.conf; then
    printf '%s\n' 'threads = 1' 'listener 127.0.0.1:{port}' 'site {' '    response / {' '        code = 200' \
        '    }' '}' > "$OUT/lwan.conf.tmpl"
elif [ -f lwan.conf ]; then
    sed -e 's/^listener 8080/listener {port}/' -e 's|path = \./wwwroot|path = {src}/wwwroot|' \
        lwan.conf > "$OUT/lwan.conf.tmpl"
else
    echo "# this revision reads no lwan.conf: its port comes from LWAN_PORT" > "$OUT/lwan.conf.tmpl"
fi
