#!/bin/sh
# hide-llhttp.sh — renames llhttp's symbols inside libskein.a.
#   tools/hide-llhttp.sh path/to/libskein.a
#
# Why: llhttp (the HTTP/1.1 parser Node uses, compiled into skein from
# Debian's node-llhttp sources) defines some hundred global functions named
# llhttp_*. In the shared library they are hidden (-fvisibility=hidden), but
# a static archive's members must see each other's symbols, so libskein.a
# exported them as they are: a program that links libskein.a and a llhttp
# of its own (or Node's) failed with "multiple definition of llhttp_init".
# Every llhttp_* symbol the archive defines becomes sk_llhttp_* in every
# member, definitions and references alike (objcopy --redefine-syms), so the
# archive links as before and its names stay in skein's own namespace. Run
# after each `ar` of the archive (premake5.lua's postbuild); running it twice
# changes nothing.
set -eu
lib=$1
map=$(mktemp)
trap 'rm -f "$map"' EXIT
nm --defined-only "$lib" 2>/dev/null |
  awk '$2 ~ /^[A-Z]$/ && $3 ~ /^llhttp_/ { print $3 " sk_" $3 }' | sort -u > "$map"
if [ -s "$map" ]; then
  objcopy --redefine-syms="$map" "$lib"
  ranlib "$lib"
fi
