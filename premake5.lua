-- premake5.lua — skein's build. Works with premake5 and with Debian 12's
-- premake4 (`premake4 --file=premake5.lua gmake`); where the two differ we
-- branch on _PREMAKE_VERSION. The top-level Makefile runs this for you.
--
-- Outputs: build/bin/<cfg>/skein, build/lib/<cfg>/libskein.a and
-- build/lib/shared/<cfg>/libskein.so (a directory of its own, so that the
-- executable's -lskein picks the static library).
--
-- Configurations: release (optimised), debug (-O0 -g), asan (ASan + UBSan,
-- what the test suite also runs under).

local is_premake5 = _PREMAKE_VERSION and _PREMAKE_VERSION:match("^5") ~= nil

-- `configuration` is the premake4 spelling; premake5 prefers `filter`.
local function when(cfg)
  if is_premake5 then filter("configurations:" .. cfg) else configuration(cfg) end
end
local function always()
  if is_premake5 then filter({}) else configuration({}) end
end
local function debug_symbols()
  if is_premake5 then symbols("On") else flags({ "Symbols" }) end
end

-- llhttp (the HTTP/1.1 parser Node uses; the server's, runtime/core/httpd_proto.c)
-- is compiled into the library from Debian's node-llhttp sources, copied
-- into build/llhttp/ (the Makefile does it too; here it is done when
-- premake runs alone, since files() globs what exists now).
local LLHTTP_SRC, LLHTTP_H = "/usr/share/llhttp", "/usr/share/include/llhttp/llhttp.h"
if not os.isfile("build/llhttp/llhttp.h") then
  os.mkdir("build/llhttp")
  for _, f in ipairs({ "llhttp.c", "api.c", "http.c" }) do
    assert(os.copyfile(LLHTTP_SRC .. "/" .. f, "build/llhttp/" .. f), "cannot copy llhttp's " .. f .. " (is node-llhttp installed?)")
  end
  assert(os.copyfile(LLHTTP_H, "build/llhttp/llhttp.h"), "cannot copy llhttp.h")
end

-- The library: every layer but the command (docs/ARCHITECTURE.md, "Layers").
local core_files = {
  "runtime/core/*.c", "runtime/host/*.c", "lua/*.c", "runtime/embed/*.c",
  "build/gen/sk_stdlib.c", "build/llhttp/*.c",
}

local warn = { "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter" }
local san = { "-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=undefined" }

local function common()
  language "C"
  includedirs { "/usr/include/lua5.4", "runtime/include", "build/llhttp" }
  -- llhttp's strict variant: header names must be tokens, lines end in
  -- CRLF (the loose one lets "Transfer-Encoding : chunked" and the like
  -- through, which is how requests are smuggled past proxies).
  defines { "LLHTTP_STRICT_MODE=1" }
  buildoptions(warn)
  when "release"
    defines { "NDEBUG" }
    buildoptions { "-O2" }
    debug_symbols()
  when "debug"
    buildoptions { "-O0" }
    debug_symbols()
  when "asan"
    buildoptions { "-O1" }
    buildoptions(san)
    linkoptions(san)
    debug_symbols()
  always()
end

local function dirs(kind)
  targetdir("build/" .. kind)
  when "release" targetdir("build/" .. kind .. "/release")
  when "debug" targetdir("build/" .. kind .. "/debug")
  when "asan" targetdir("build/" .. kind .. "/asan")
  always()
end

if is_premake5 then workspace "skein" else solution "skein" end
  configurations { "release", "debug", "asan" }
  location "build"

project "skein_static"
  kind "StaticLib"
  targetname "skein"
  files(core_files)
  objdir "build/obj/static"
  -- llhttp's global names become sk_llhttp_* in the archive, so that a
  -- program with a llhttp of its own links with it (tools/hide-llhttp.sh).
  postbuildcommands { "sh ../tools/hide-llhttp.sh $(TARGET)" }
  common()
  dirs("lib")

project "skein_shared"
  kind "SharedLib"
  targetname "skein"
  files(core_files)
  objdir "build/obj/shared"
  buildoptions { "-fPIC", "-fvisibility=hidden" }
  links { "lua5.4", "uv", "hiredis", "m", "dl" }
  common()
  dirs("lib/shared")

project "skein"
  kind "ConsoleApp"
  files { "runtime/cli/*.c" }
  objdir "build/obj/exe"
  links { "skein_static", "lua5.4", "uv", "hiredis", "readline", "m", "dl", "pthread" }
  common()
  dirs("bin")
