#!/usr/bin/env bash
# check-layers.sh — checks the folder rules of docs/ARCHITECTURE.md
# ("Layers") on the #include lines of runtime/ and lua/. Each quoted
# include is resolved against the including file's folder; a header found
# there belongs to the folder it sits in, which must be one the including
# folder may use. A quoted header found nowhere in the tree must be one of
# Lua's own (on the compiler's include path), which runtime/core may not
# use. It then checks calls the same way: a function defined (with external
# linkage) in one folder may be called only from folders that may include
# that folder's headers, so a hand-written declaration cannot hide an
# upward call. Prints each violation and exits 1 if there is any, else
# prints one summary line and exits 0. `./run test` runs it as one test.
set -u
cd "$(dirname "$0")/.."

# The folders each layer may include from (its own first). The order is
# the layering, bottom up: include, core, host, lua, embed, cli.
declare -A MAY=(
  [runtime/include]="runtime/include"
  [runtime/core]="runtime/core"
  [runtime/host]="runtime/host runtime/core runtime/include"
  [lua]="lua runtime/host runtime/core runtime/include"
  [runtime/embed]="runtime/embed lua runtime/host runtime/core runtime/include"
  # The command uses the public API and the embed layer's few extras; Lua's
  # own headers are allowed to it (below) because skein.h hands it a
  # lua_State.
  [runtime/cli]="runtime/cli runtime/embed runtime/include"
)

# Lua's headers: every layer but runtime/core may include them.
LUA_HEADERS=" lua.h lauxlib.h lualib.h luaconf.h "

# Known exceptions, one "file -> header" (or "file -> function() of
# folder/") per entry, each with the reason in a comment. None today: the
# host and the bindings reach what is above them only through what
# runtime/embed registers at start-up (sk_worker_set_hooks,
# sk_marshal_set_proxy).
EXCEPTIONS=(
)

violations=0
checked=0

is_exception() {
  local e
  for e in "${EXCEPTIONS[@]+"${EXCEPTIONS[@]}"}"; do
    [ "$e" = "$1 -> $2" ] && return 0
  done
  return 1
}

report() {
  if is_exception "$1" "$2"; then return; fi
  echo "check-layers: $1 includes $2: $3"
  violations=$((violations + 1))
}

for layer in "${!MAY[@]}"; do
  for f in "$layer"/*.[ch]; do
    [ -e "$f" ] || continue
    checked=$((checked + 1))
    # Lua's headers by angle brackets count as Lua's headers too.
    if [ "$layer" = runtime/core ]; then
      while IFS= read -r name; do
        report "$f" "<$name>" "runtime/core never uses Lua"
      done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*<\(lua\.h\|lauxlib\.h\|lualib\.h\|luaconf\.h\)>.*/\1/p' "$f")
    fi
    while IFS= read -r name; do
      target=$(realpath -m --relative-to=. "$(dirname "$f")/$name")
      if [ -e "$target" ]; then
        dir=$(dirname "$target")
        case " ${MAY[$layer]} " in
          *" $dir "*) ;;
          *) report "$f" "$name" "$layer may include only from: ${MAY[$layer]}" ;;
        esac
      elif [[ "$LUA_HEADERS" == *" $name "* ]]; then
        [ "$layer" = runtime/core ] && report "$f" "$name" "runtime/core never uses Lua"
      else
        report "$f" "$name" "no such header in the tree, and not one of Lua's"
      fi
    done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f")
  done
done

# Calls, not only includes: a function may be declared by hand in the
# calling file, which the include check above cannot see. Every function a
# layer's .c files define with external linkage belongs to that layer; a
# call to it from a folder that may not include that layer's headers is a
# violation too (e.g. lua/ calling into runtime/embed/). So is a binding
# calling a function another binding (another lua/*.c) defines. Comments
# and strings are left out before looking.
while IFS= read -r line; do
  [ -n "$line" ] || continue
  rest=${line#* -> }
  is_exception "${line%% -> *}" "${rest%, a folder it may not use}" && continue
  echo "check-layers: ${line%% -> *} calls ${line#* -> }"
  violations=$((violations + 1))
done < <(
  for layer in "${!MAY[@]}"; do printf '%s=%s\n' "$layer" "${MAY[$layer]}"; done |
  perl -e '
    my %may;
    while (<STDIN>) { chomp; my ($l, $m) = split /=/, $_, 2; $may{$l} = { map { $_ => 1 } split " ", $m }; }
    my (%text, %owner, %file);
    for my $layer (keys %may) {
      for my $f (glob("$layer/*.c $layer/*.h")) {
        local $/; open(my $fh, "<", $f) or next; my $s = <$fh>; close $fh;
        $s =~ s{/\*.*?\*/}{ }gs; $s =~ s{//[^\n]*}{}g;
        $s =~ s{"(?:\\.|[^"\\\n])*"}{""}g; $s =~ s{\x27(?:\\.|[^\x27\\\n])*\x27}{0}g;
        $text{$f} = [$layer, $s];
        next unless $f =~ /\.c$/;
        while ($s =~ /^(?!static\b|typedef\b|extern\b)[A-Za-z_][\w \t*]*?\b([A-Za-z_]\w*)\s*\(((?:[^()]|\([^()]*\))*)\)\s*\{/mg) {
          next if $1 eq "main";
          $owner{$1} = $layer;
          $file{$1} = $f;
        }
      }
    }
    for my $f (sort grep { /\.c$/ } keys %text) {
      my ($layer, $s) = @{$text{$f}};
      my %seen;
      while ($s =~ /\b([A-Za-z_]\w*)\s*\(/g) {
        my $o = $owner{$1};
        next unless defined $o && !$seen{$1}++;
        if (!$may{$layer}{$o}) {
          print "$f -> $1() of $o/, a folder it may not use\n";
        } elsif ($layer eq "lua" && $o eq "lua" && $file{$1} ne $f) {
          # A binding never calls another binding: what two families
          # share is an engine, and engines live in host/ or core/.
          print "$f -> $1() of $file{$1} (another binding)\n";
        }
      }
    }
  '
)

if [ "$violations" -ne 0 ]; then
  echo "check-layers: $violations violation(s) of the folder rules (docs/ARCHITECTURE.md, Layers)"
  exit 1
fi
echo "check-layers: $checked files keep the folder rules"
