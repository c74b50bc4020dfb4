#!/bin/sh
# lua-testsuite.sh — runs the official Lua 5.4 test suite (lua/lua, tag
# v5.4.4, folder testes/) with skein as the interpreter, reached through a
# symlink named `lua`, in non-portable mode (every file, main.lua included).
# Not part of the suite: it needs the test sources, which the repository
# does not carry.
#
#   tools/lua-testsuite.sh TESTES_DIR [SKEIN_BINARY]
#
# TESTES_DIR is a copy of testes/ (it is written to: the C libraries in
# libs/ are built there, and the tests make temporary files). SKEIN_BINARY
# defaults to build/bin/release/skein. Prints each file as it starts and
# ends with the suite's "final OK !!!"; exits with the suite's status.
set -eu
testes=${1:?usage: tools/lua-testsuite.sh TESTES_DIR [SKEIN_BINARY]}
skein=${2:-build/bin/release/skein}
case $skein in /*) ;; *) skein=$(pwd)/$skein ;; esac
[ -x "$skein" ] || { echo "no skein binary at $skein" >&2; exit 2; }
[ -f "$testes/all.lua" ] || { echo "no all.lua in $testes" >&2; exit 2; }

# attrib.lua loads these C libraries with package.loadlib.
make -s -C "$testes/libs" LUA_DIR="$(pkg-config --variable=includedir lua5.4 2>/dev/null || echo /usr/include)/lua5.4" >/dev/null

bindir=$(mktemp -d)
trap 'rm -rf "$bindir"' EXIT
ln -s "$skein" "$bindir/lua"
# Standard input is an empty pipe: files.lua checks that seeking stdin fails.
cd "$testes"
true | PATH="$bindir:$PATH" lua all.lua
