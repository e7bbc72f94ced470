#!/usr/bin/env bash
# The consumer test (ctest label `consumer`): install a vmspace build to a
# temporary prefix, then build and run, as a third-party project would,
#   (a) a C++ program with find_package(vmspace CONFIG): vmspace::vmspace
#       (the shared library), vmspace::vmspace_static, and the C API
#       through CMake;
#   (b) a C program with pkg-config: linked dynamically (`--libs`), and
#       statically against libvmspace.a (`--static --libs`, which must carry
#       liburcu and the C++ runtime);
#   (c) a C program linked against libvmspace.so alone (-lvmspace, nothing
#       else: the shared library records its own dependencies), and one
#       that loads it with dlopen (its static TLS must fit glibc's reserve).
# Each maps memory, writes and reads it, mprotects, handles a fault result
# and prints maps.  Also checks what was installed: public headers only,
# the SONAME, the exported symbols, and that a consumer's compile lines
# carry none of vmspace's private settings.
#
# Usage: tests/consumer/run.sh BUILD_DIR [WORK_DIR]
#   BUILD_DIR  a configured and built vmspace build tree (build/debug)
#   WORK_DIR   where to install and build (default: a new temporary
#              directory, removed afterwards)
set -euo pipefail

build=$(cd "$1" && pwd)
src=$(cd "$(dirname "$0")" && pwd)
if [ $# -ge 2 ]; then
  work=$2
  rm -rf "$work" && mkdir -p "$work"
else
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
fi
prefix=$work/prefix
cc=${CC:-cc}

step() { echo "=== consumer: $*"; }
die() { echo "consumer: FAIL: $*" >&2; exit 1; }

step "install to $prefix"
cmake --install "$build" --prefix "$prefix" >/dev/null
libdir=$(dirname "$(find "$prefix" -name vmspace.pc -path '*/pkgconfig/*')")
libdir=${libdir%/pkgconfig}
[ -f "$libdir/libvmspace.a" ] || die "no libvmspace.a in $libdir"
[ -L "$libdir/libvmspace.so" ] || die "no libvmspace.so link in $libdir"
soname=$(readelf -d "$libdir/libvmspace.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = libvmspace.so.0 ] || die "SONAME '$soname', want libvmspace.so.0"
[ -f "$prefix/include/vmspace/vmspace.h" ] && [ -f "$prefix/include/vmspace/version.h" ] ||
  die "public headers missing"
extra=$(find "$prefix/include" -type f ! -path '*/include/vmspace/*.h')
[ -z "$extra" ] || die "installed headers that are not include/vmspace/*.h: $extra"
[ -f "$(find "$prefix" -name vmspaceConfigVersion.cmake)" ] || die "no vmspaceConfigVersion.cmake"
# Hidden by default: the internals (vmspace::mm, ::mem, ::tree, ::sync,
# ::fault, ::rcu) are not exported; the API is.
exported=$(nm -D --defined-only "$libdir/libvmspace.so" | c++filt)
internal=$(grep -E ' [A-Za-z] vmspace::(mm|mem|tree|sync|fault|rcu|lockdep)::' <<<"$exported" || true)
[ -z "$internal" ] || die "internal symbols exported: $(head -3 <<<"$internal")"
grep -q 'vmspace::AddressSpace::mmap' <<<"$exported" || die "AddressSpace::mmap not exported"
grep -q ' T vmspace_mmap$' <<<"$exported" || die "vmspace_mmap not exported"
echo "libvmspace.so: SONAME $soname, $(wc -l <<<"$exported") exported symbols"

step "(a) C++ and C with find_package(vmspace CONFIG)"
cmake -S "$src" -B "$work/cmake-build" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/cmake-build" -j2 >/dev/null
# None of vmspace's private settings reach the consumer.
[ -f "$work/cmake-build/compile_commands.json" ] || die "no compile_commands.json"
if grep -E -- '-DVMSPACE_DEBUG_CHECKS|-Wshadow=local|-Wno-interference-size|/src( |")' \
     "$work/cmake-build/compile_commands.json"; then
  die "the consumer's compile lines carry vmspace's private settings"
fi
for exe in consumer_cpp_shared consumer_cpp_static consumer_c_cmake; do
  echo "--- $exe"
  "$work/cmake-build/$exe"
done
readelf -d "$work/cmake-build/consumer_cpp_shared" | grep -q 'NEEDED.*\[libvmspace.so.0\]' ||
  die "consumer_cpp_shared does not use libvmspace.so.0"
if readelf -d "$work/cmake-build/consumer_cpp_static" | grep -q 'NEEDED.*libvmspace'; then
  die "consumer_cpp_static uses the shared library"
fi

step "(b) C with pkg-config"
export PKG_CONFIG_PATH=$libdir/pkgconfig
[ "$(pkg-config --modversion vmspace)" = "$(sed -n 's/^#define VMSPACE_VERSION_STRING "\(.*\)"/\1/p' "$prefix/include/vmspace/version.h")" ] ||
  die "vmspace.pc and version.h disagree"
# shellcheck disable=SC2046 # pkg-config's output is a list of words
"$cc" -std=c99 -Wall -Wextra -pedantic -Werror $(pkg-config --cflags vmspace) "$src/consumer.c" \
  -o "$work/consumer_c_pkgconfig" $(pkg-config --libs vmspace) -Wl,-rpath,"$libdir"
echo "--- consumer_c_pkgconfig (shared)"
"$work/consumer_c_pkgconfig"
# -l:libvmspace.a picks the archive where -lvmspace would pick the .so.
# shellcheck disable=SC2046
"$cc" -std=c99 $(pkg-config --cflags vmspace) "$src/consumer.c" -o "$work/consumer_c_pkgconfig_static" \
  $(pkg-config --static --libs vmspace | sed 's/-lvmspace\b/-l:libvmspace.a/')
echo "--- consumer_c_pkgconfig_static"
"$work/consumer_c_pkgconfig_static"

step "(c) C against the shared library alone"
"$cc" -std=c99 -I"$prefix/include" "$src/consumer.c" -o "$work/consumer_c_shared" -L"$libdir" -lvmspace
readelf -d "$work/consumer_c_shared" | grep -q 'NEEDED.*\[libvmspace.so.0\]' || die "not linked to libvmspace.so.0"
echo "--- consumer_c_shared"
LD_LIBRARY_PATH=$libdir "$work/consumer_c_shared"

step "(c) libvmspace.so loaded with dlopen"
"$cc" -std=gnu99 -Wall -Wextra -Werror -I"$prefix/include" "$src/dlopen.c" -o "$work/consumer_dlopen" -ldl
LD_LIBRARY_PATH=$libdir "$work/consumer_dlopen"

step "passed"
