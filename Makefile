# Makefile — convenience front end: generates the embedded stdlib, runs
# premake (premake5 when installed, else Debian's premake4) and builds.
#   make [CONFIG=release|debug|asan]   build
#   make test                          the whole suite (release + asan)
#   make bench                         benchmarks against the peers
#   make install [PREFIX=/usr/local]   binary, libraries, header, skein.pc
CONFIG ?= release
PREFIX ?= /usr/local
PREMAKE ?= $(shell command -v premake5 || command -v premake4)
STDLIB := $(shell find stdlib -name '*.lua' | sort)
BIN := build/bin/$(CONFIG)/skein

.PHONY: all build gen test bench install clean example FORCE

all: build

build/gen/sk_stdlib.c: $(STDLIB) tools/embed.lua
	@mkdir -p build/gen
	lua5.4 tools/embed.lua $@ $(STDLIB)

gen: build/gen/sk_stdlib.c

# llhttp, the server's HTTP/1.1 parser, is compiled from Debian's
# node-llhttp sources (not kept in this tree): copied into build/llhttp/,
# which premake's project lists and puts on the include path.
LLHTTP_FILES := build/llhttp/llhttp.c build/llhttp/api.c build/llhttp/http.c build/llhttp/llhttp.h

build/llhttp/%.c: /usr/share/llhttp/%.c
	@mkdir -p build/llhttp
	cp $< $@

build/llhttp/llhttp.h: /usr/share/include/llhttp/llhttp.h
	@mkdir -p build/llhttp
	cp $< $@

# premake globs the sources, so its makefiles are made again when the list
# of sources changes (build/sources.txt is rewritten only then). The old
# objects go too: their dependency files may name sources that moved, which
# make would otherwise refuse to find; and so do the static libraries, since
# `ar` only adds and replaces members: a moved file's old object would stay
# in libskein.a and could be the one the linker picks.
SOURCES := $(sort $(wildcard runtime/*/*.c lua/*.c))

build/sources.txt: FORCE
	@mkdir -p build
	@echo '$(SOURCES)' | cmp -s - $@ || echo '$(SOURCES)' > $@

build/Makefile: premake5.lua build/sources.txt $(LLHTTP_FILES)
	rm -rf build/obj build/lib
	$(PREMAKE) --file=premake5.lua gmake

build: gen $(LLHTTP_FILES) build/Makefile
	$(MAKE) -C build config=$(CONFIG)

example: build
	$(BIN) examples/hello.lua

test:
	./run test

bench: build
	bench/run

# The version comes from skein.h, the one place that states it.
VERSION := $(shell sed -n 's/^\#define SKEIN_VERSION "\(.*\)"/\1/p' runtime/include/skein.h)
LIBDIR := $(DESTDIR)$(PREFIX)/lib

install: build
	install -d $(DESTDIR)$(PREFIX)/bin $(LIBDIR)/pkgconfig $(DESTDIR)$(PREFIX)/include
	install -m 755 $(BIN) $(DESTDIR)$(PREFIX)/bin/skein
	install -m 644 build/lib/$(CONFIG)/libskein.a $(LIBDIR)/
	install -m 755 build/lib/shared/$(CONFIG)/libskein.so $(LIBDIR)/
	install -m 644 runtime/include/skein.h $(DESTDIR)$(PREFIX)/include/
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' skein.pc.in > $(LIBDIR)/pkgconfig/skein.pc
	chmod 644 $(LIBDIR)/pkgconfig/skein.pc

clean:
	rm -rf build
