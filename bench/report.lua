-- report.lua — turns bench/run's raw.tsv into the table, the one-line
-- summaries, the PASS/MISS verdicts, and results.txt. Run with lua5.4:
--   lua5.4 bench/report.lua build/bench/raw.tsv build/bench/results.txt
-- Every figure is reported as the median of the runs next to the best (the
-- lowest); ratios, summaries and targets use the medians. Exit status: 0
-- when every target that could be checked passed, 3 when one missed, 1 on
-- bad input.
local raw_path, out_path = arg[1], arg[2]
if not raw_path or not out_path then
  io.stderr:write("usage: lua5.4 report.lua RAW.tsv RESULTS.txt\n")
  os.exit(1)
end

-- How each implementation is called in the report.
local DISPLAY = { skein = "skein", asyncio = "asyncio", gevent = "gevent", lua54 = "bare lua",
                  threading = "queue.Queue", node = "node" }
local function display(impl) return DISPLAY[impl] or impl end

local function split(line)
  local f = {}
  for field in (line .. "\t"):gmatch("([^\t]*)\t") do f[#f + 1] = field end
  return f
end

-- ------------------------------------------------------------- reading

local meta = { reps = "?", nproc = "?", cpu = "?", date = "?" }
local specs, by_name, borrows = {}, {}, {}
local fh = assert(io.open(raw_path))

local function impl_of(s, impl)
  local r = s.impls[impl]
  if not r then
    r = { times = {}, walls = {}, bytes = {}, heaps = {}, fails = 0,
          rates = {}, p50s = {}, p99s = {}, gen_cpus = {}, srv_cpus = {}, helds = {},
          srv_uss = {}, gen_uss = {} }
    s.impls[impl] = r
    s.order[#s.order + 1] = impl
  end
  return r
end

for line in fh:lines() do
  local f = split(line)
  if f[1] == "meta" then
    meta = { reps = f[2], nproc = f[3], cpu = f[4], date = f[5] }
  elseif f[1] == "spec" then
    local s = { name = f[2], kind = f[3], targets = f[4], label = f[5],
                file = f[6] ~= "" and f[6] or f[2], impls = {}, order = {} }
    specs[#specs + 1] = s
    by_name[s.name] = s
  elseif f[1] == "borrow" then
    -- Placed now to keep the column order; filled in once all is read.
    if by_name[f[2]] then
      impl_of(by_name[f[2]], f[3])
      borrows[#borrows + 1] = { name = f[2], impl = f[3], src = f[4] }
    end
  else
    local s = by_name[f[2]]
    if s then
      local r = impl_of(s, f[3])
      if f[1] == "run" then
        local t, n, t0, t1, rss = tonumber(f[5]), tonumber(f[6]),
                                  tonumber(f[7]), tonumber(f[8]), tonumber(f[9])
        r.times[#r.times + 1] = t
        r.walls[#r.walls + 1] = t1 - t0
        r.n = n
        if rss then r.rss = math.max(r.rss or 0, rss) end
        local extra = f[10] or ""
        local b, h = tonumber(extra:match("bytes=(%S+)")), tonumber(extra:match("heap=(%S+)"))
        if b then r.bytes[#r.bytes + 1] = b end
        if h then r.heaps[#r.heaps + 1] = h end
        -- The server workloads' fields (bench/tools/echo_load.c).
        if s.kind == "echo" and t and n and t > 0 then r.rates[#r.rates + 1] = n / t end
        for key, list in pairs({ p50 = r.p50s, p99 = r.p99s, gen_cpu = r.gen_cpus,
                                 srv_cpu = r.srv_cpus, rss_kb = r.helds }) do
          local v = tonumber(extra:match("%f[%w_]" .. key .. "=(%S+)"))
          if v and v >= 0 then list[#list + 1] = v end
        end
        -- CPU microseconds per round trip: what a round trip costs each
        -- side, whatever share of the machine the run got.
        if s.kind == "echo" and t and n and n > 0 then
          local sc, gc = tonumber(extra:match("srv_cpu=(%S+)")), tonumber(extra:match("gen_cpu=(%S+)"))
          if sc and sc >= 0 then r.srv_uss[#r.srv_uss + 1] = sc * t / n * 1e6 end
          if gc and gc >= 0 then r.gen_uss[#r.gen_uss + 1] = gc * t / n * 1e6 end
        end
      elseif f[1] == "skip" then
        r.skipped = f[4]
      elseif f[1] == "fail" then
        r.fails = r.fails + 1
        r.why = f[5]
      end
    end
  end
end
fh:close()

-- A borrowed column is the very runs of the same peer in another workload.
for _, b in ipairs(borrows) do
  local s, src = by_name[b.name], by_name[b.src]
  local from = src and src.impls[b.impl]
  if from then
    local copy = {}
    for k, v in pairs(from) do copy[k] = v end
    copy.borrowed = b.src
    s.impls[b.impl] = copy
  else
    s.impls[b.impl].skipped = ("no runs of %s to reuse"):format(b.src)
  end
end

-- skein's column comes first, whatever order the lines came in.
for _, s in ipairs(specs) do
  for i, impl in ipairs(s.order) do
    if impl == "skein" and i > 1 then
      table.remove(s.order, i)
      table.insert(s.order, 1, "skein")
      break
    end
  end
end

local function min(list)
  local m
  for _, v in ipairs(list) do if not m or v < m then m = v end end
  return m
end

local function max(list)
  local m
  for _, v in ipairs(list) do if not m or v > m then m = v end end
  return m
end

local function median(list)
  if #list == 0 then return nil end
  local sorted = {}
  for i, v in ipairs(list) do sorted[i] = v end
  table.sort(sorted)
  local k = #sorted
  if k % 2 == 1 then return sorted[(k + 1) // 2] end
  return (sorted[k // 2] + sorted[k // 2 + 1]) / 2
end

for _, s in ipairs(specs) do
  for _, r in pairs(s.impls) do
    r.time, r.time_best = median(r.times), min(r.times)
    r.wall, r.wall_best = median(r.walls), min(r.walls)
    r.byte, r.byte_best = median(r.bytes), min(r.bytes)
    r.heap = median(r.heaps)
    r.rss_mb = r.rss and r.rss / 1024
    r.rate, r.rate_best = median(r.rates), max(r.rates)
    r.p50, r.p99 = median(r.p50s), median(r.p99s)
    r.gen_cpu, r.srv_cpu = median(r.gen_cpus), median(r.srv_cpus)
    r.srv_us, r.gen_us = median(r.srv_uss), median(r.gen_uss)
    r.held = median(r.helds) and median(r.helds) / 1024
    r.held_best = min(r.helds) and min(r.helds) / 1024
  end
end

-- ---------------------------------------------------------- formatting

local function secs(v)
  if not v then return "-" end
  if v < 1 then return ("%.3fs"):format(v) end
  return ("%.2fs"):format(v)
end

local function rate(n, t)
  if not n or not t or t <= 0 then return "-" end
  local r = n / t
  if r >= 1e6 then return ("%.2fM/s"):format(r / 1e6) end
  if r >= 1e3 then return ("%.0fk/s"):format(r / 1e3) end
  return ("%.0f/s"):format(r)
end

local function mb(v) return v and ("%.1f MB"):format(v) or "-" end

local function bytes(v)
  if not v then return "-" end
  if math.abs(v) >= 10240 then return ("%.1f KB"):format(v / 1024) end
  return ("%.0f B"):format(v)
end

local function usecs(v)
  if not v then return "-" end
  if v >= 10000 then return ("%.1fms"):format(v / 1000) end
  return ("%.0fus"):format(v)
end

local function cores(v) return v and ("%.0f%%"):format(v * 100) or "-" end

-- The figure a workload is judged on (the median): the timed region for
-- "rate" workloads, the whole process's wall time for "wall" workloads, the
-- resident bytes per item for "mem" workloads, the time per round trip (the
-- inverse of the median rate) for "echo" workloads, the server's resident
-- set in MiB for "idle" workloads. Smaller is better for every one.
local function primary(s, r)
  if not r then return nil end
  if s.kind == "wall" then return r.wall end
  if s.kind == "mem" then return r.byte end
  if s.kind == "echo" then return r.rate and 1 / r.rate end
  if s.kind == "idle" then return r.held end
  return r.time
end

local function fmt_primary(s, v)
  if s.kind == "mem" then return bytes(v) end
  if s.kind == "echo" then return (rate(1, v):gsub("/s$", " rt/s")) end
  if s.kind == "idle" then return mb(v) end
  return secs(v)
end

-- ------------------------------------------------------------- targets

local OPS = {
  [">="] = function(a, b) return a >= b end, [">"] = function(a, b) return a > b end,
  ["<="] = function(a, b) return a <= b end, ["<"] = function(a, b) return a < b end,
}

-- Evaluates one target word against workload `s`; returns the verdict
-- ("PASS", "MISS" or "SKIP"), the measured value and a description.
local function check(s, word)
  local what, op, limit = word:match("^([%w:_]+)([<>]=?)([%d.]+)$")
  limit = tonumber(limit)
  if not what or not limit then return "SKIP", nil, "bad target " .. word end
  local sk = s.impls.skein
  local mine = primary(s, sk)
  local value, desc
  local kind, peer = what:match("^(%w+):([%w_]+)$")
  if kind == "vs" then
    local theirs = primary(s, s.impls[peer])
    value = mine and theirs and mine > 0 and theirs / mine
    if s.kind == "mem" or s.kind == "idle" then
      desc = ("skein %s %sx smaller than %s"):format(op, limit, display(peer))
    else
      desc = ("skein %s %sx faster than %s"):format(op, limit, display(peer))
    end
  elseif kind == "over" then
    local theirs = primary(s, s.impls[peer])
    value = mine and theirs and mine / theirs
    desc = ("skein time / %s time %s %s"):format(display(peer), op, limit)
  elseif kind == "scale" then
    local other = by_name[peer]
    local theirs = other and primary(other, other.impls.skein)
    value = mine and theirs and mine > 0 and theirs / mine
    desc = ("skein %s %sx faster than in %s"):format(op, limit, peer)
  elseif what == "wall" then
    value = sk and sk.wall
    desc = ("skein wall time %s %s s"):format(op, limit)
  elseif what == "time" then
    value = sk and sk.time
    desc = ("skein timed region %s %s s"):format(op, limit)
  elseif what == "rss" and s.kind == "idle" then
    value = sk and sk.held
    desc = ("skein server RSS holding %s connections %s %s MB"):format(sk and sk.n or "?", op, limit)
  elseif what == "rss" then
    value = sk and sk.rss_mb
    desc = ("skein peak RSS %s %s MB"):format(op, limit)
  else
    return "SKIP", nil, "unknown target " .. word
  end
  if not value then return "SKIP", nil, desc end
  return OPS[op](value, limit) and "PASS" or "MISS", value, desc
end

-- ---------------------------------------------------------------- output

local results = {}
local function result(fmt, ...) results[#results + 1] = fmt:format(...) end

result("# skein bench results; bench/README.md explains every field")
result("meta date=%s reps=%s cpus=%s cpu=%q", meta.date, meta.reps, meta.nproc, meta.cpu)

print(("\nskein bench: median and best of %s run(s), %s CPU(s), %s"):format(meta.reps, meta.nproc, meta.cpu))
print("(ratios and targets use the medians)\n")

-- "5.17x slower" / "1.20x faster" (time), "1.05x larger" (memory): the
-- peer's median over skein's, as seen from the peer.
local function ratio_text(s, ratio)
  if not ratio then return "-" end
  local up, down = "slower", "faster"
  if s.kind == "mem" or s.kind == "idle" then up, down = "larger", "smaller" end
  return ("%.2fx %s"):format(ratio >= 1 and ratio or 1 / ratio, ratio >= 1 and up or down)
end

local summaries, verdicts, missed = {}, {}, false
for _, s in ipairs(specs) do
  local sk = s.impls.skein
  local base = primary(s, sk)
  print(("%s  [%s]"):format(s.label, s.name))
  if s.kind == "mem" then
    print(("  %-12s %9s %9s %10s %10s  %s"):format("", "RSS/item", "best", "heap/item", "peak RSS", "vs skein"))
  elseif s.kind == "echo" then
    print(("  %-12s %9s %9s %8s %8s %8s %8s %7s %7s %9s  %s"):format("", "rt/s", "best", "p50", "p99",
      "srv CPU", "gen CPU", "srv/rt", "gen/rt", "peak RSS", "vs skein"))
  elseif s.kind == "idle" then
    print(("  %-12s %10s %10s %9s %7s %9s  %s"):format("", "srv RSS", "best", "per conn", "conns",
      "open", "vs skein"))
  else
    print(("  %-12s %9s %9s %9s %9s %9s %10s  %s"):format("", "timed", "best", "rate", "wall", "best",
      "peak RSS", "vs skein"))
  end
  for _, impl in ipairs(s.order) do
    local r = s.impls[impl]
    if r.skipped then
      print(("  %-12s skipped: %s"):format(display(impl), r.skipped))
      result("run workload=%s impl=%s status=skipped", s.name, impl)
    elseif not r.time then
      print(("  %-12s FAILED: %s"):format(display(impl), r.why or "?"))
      result("run workload=%s impl=%s status=failed", s.name, impl)
    else
      local p = primary(s, r)
      local ratio = base and p and base > 0 and p / base
      local rtxt = impl == "skein" and "1.00x" or ratio_text(s, ratio)
      local notes = {}
      if #r.times < tonumber(meta.reps or 0) then notes[#notes + 1] = ("%d run(s)"):format(#r.times) end
      if r.fails > 0 then notes[#notes + 1] = ("%d run(s) failed"):format(r.fails) end
      if r.borrowed then notes[#notes + 1] = ("the runs of %s"):format(r.borrowed) end
      local note = #notes > 0 and ("  (%s)"):format(table.concat(notes, ", ")) or ""
      if s.kind == "mem" then
        print(("  %-12s %9s %9s %10s %10s  %s%s"):format(display(impl), bytes(r.byte),
          bytes(r.byte_best), bytes(r.heap), mb(r.rss_mb), rtxt, note))
      elseif s.kind == "echo" then
        print(("  %-12s %9s %9s %8s %8s %8s %8s %7s %7s %9s  %s%s"):format(display(impl),
          rate(1, 1 / r.rate), rate(1, 1 / r.rate_best), usecs(r.p50), usecs(r.p99),
          cores(r.srv_cpu), cores(r.gen_cpu), r.srv_us and ("%.1fus"):format(r.srv_us) or "-",
          r.gen_us and ("%.1fus"):format(r.gen_us) or "-", mb(r.rss_mb), rtxt, note))
      elseif s.kind == "idle" then
        print(("  %-12s %10s %10s %9s %7d %9s  %s%s"):format(display(impl), mb(r.held),
          mb(r.held_best), bytes(r.byte), r.n or 0, secs(r.time), rtxt, note))
      else
        print(("  %-12s %9s %9s %9s %9s %9s %10s  %s%s"):format(display(impl), secs(r.time),
          secs(r.time_best), s.kind == "rate" and rate(r.n, r.time) or "-", secs(r.wall),
          secs(r.wall_best), mb(r.rss_mb), rtxt, note))
      end
      local memtxt = ""
      if s.kind == "echo" then
        memtxt = (" rt_rate=%.1f rt_rate_best=%.1f p50_us=%s p99_us=%s srv_cpu=%s gen_cpu=%s srv_us_rt=%s gen_us_rt=%s"):format(
          r.rate, r.rate_best, r.p50 or "-", r.p99 or "-",
          r.srv_cpu and ("%.3f"):format(r.srv_cpu) or "-",
          r.gen_cpu and ("%.3f"):format(r.gen_cpu) or "-",
          r.srv_us and ("%.2f"):format(r.srv_us) or "-",
          r.gen_us and ("%.2f"):format(r.gen_us) or "-")
      elseif s.kind == "idle" then
        memtxt = (" server_rss_mb=%s server_rss_mb_best=%s bytes=%s"):format(
          r.held and ("%.1f"):format(r.held) or "-",
          r.held_best and ("%.1f"):format(r.held_best) or "-",
          r.byte and ("%.1f"):format(r.byte) or "-")
      elseif s.kind == "mem" then
        memtxt = (" bytes=%s bytes_best=%s heap=%s"):format(
          r.byte and ("%.1f"):format(r.byte) or "-",
          r.byte_best and ("%.1f"):format(r.byte_best) or "-",
          r.heap and ("%.1f"):format(r.heap) or "-")
      end
      result("run workload=%s impl=%s status=ok n=%d time=%.6f time_best=%.6f rate=%.1f wall=%.6f wall_best=%.6f%s rss_mb=%s ratio=%s reps=%d fails=%d%s",
        s.name, impl, r.n or 0, r.time, r.time_best, (r.n or 0) / r.time, r.wall, r.wall_best,
        memtxt, r.rss_mb and ("%.1f"):format(r.rss_mb) or "-",
        ratio and ("%.3f"):format(ratio) or "-", #r.times, r.fails,
        r.borrowed and (" borrowed=" .. r.borrowed) or "")
    end
  end
  print()

  -- The one-line summary: "label: skein 0.045s, asyncio 0.61s (13.5x), ..."
  local over = {}
  for word in s.targets:gmatch("%S+") do
    local p = word:match("^over:([%w_]+)")
    if p then over[p] = true end
  end
  local parts = {}
  for _, impl in ipairs(s.order) do
    local r = s.impls[impl]
    local p = primary(s, r)
    if p then
      local txt = ("%s %s"):format(display(impl), fmt_primary(s, p))
      if s.kind == "wall" and r.rss_mb then txt = txt .. (" %.0f MB"):format(r.rss_mb) end
      if s.kind == "echo" and r.p99 then txt = txt .. (" p99 %s"):format(usecs(r.p99)) end
      if impl ~= "skein" and base and base > 0 then
        if over[impl] then
          txt = txt .. (" (skein/%s = %.2fx)"):format(display(impl), base / p)
        else
          txt = txt .. (" (%.1fx)"):format(p / base)
        end
      end
      parts[#parts + 1] = txt
    end
  end
  summaries[#summaries + 1] = ("%s: %s"):format(s.label, table.concat(parts, ", "))

  -- A floor (an over: peer) bounds what a vs: target can reach: skein
  -- cannot beat the bare VM doing the same coroutine work.
  local floor
  for word in s.targets:gmatch("%S+") do
    floor = floor or word:match("^over:([%w_]+)")
  end
  for word in s.targets:gmatch("%S+") do
    local verdict, value, desc = check(s, word)
    local peer = word:match("^vs:([%w_]+)")
    local fr, pr = floor and s.impls[floor], peer and s.impls[peer]
    if fr and pr and fr.time and pr.time then
      desc = desc .. (" (%s alone reaches %.1fx)"):format(display(floor),
        primary(s, pr) / primary(s, fr))
      result("floor workload=%s peer=%s floor=%s value=%.4f", s.name, peer, floor,
        primary(s, pr) / primary(s, fr))
    end
    if verdict == "MISS" then missed = true end
    verdicts[#verdicts + 1] = ("  %s  %-20s measured %-7s %s"):format(verdict, s.name,
      value and ("%.2f"):format(value) or "-", desc)
    result("target workload=%s check=%s verdict=%s value=%s", s.name, word, verdict,
      value and ("%.4f"):format(value) or "-")
  end
end

print("summary (medians; ratio = peer / skein: above 1 means skein is faster, or smaller)")
for _, line in ipairs(summaries) do print("  " .. line) end
print("\ntargets (on medians)")
for _, line in ipairs(verdicts) do print(line) end

local rf = assert(io.open(out_path, "w"))
rf:write(table.concat(results, "\n"), "\n")
rf:close()
print(("\nresults: %s (raw runs: %s)"):format(out_path, raw_path))
os.exit(missed and 3 or 0)
