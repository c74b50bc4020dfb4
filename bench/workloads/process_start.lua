-- process_start.lua — skein: start N worker processes one after another,
-- each returning one value to the parent, and join each before the next
-- (what a script pays for every `skein.process`: exec of the worker
-- executable, its dynamic linking, a Lua state with the skein module, the
-- job's round trip, the exit and the reaping). The timed region ends with a
-- collection. Usage: skein process_start.lua [N]
local N = tonumber(arg[1]) or 50
local t0 = skein.now()
local sum = 0
for i = 1, N do
  sum = sum + skein.process(function(x) return x end, i):join(30)
end
collectgarbage()
local elapsed = skein.now() - t0
assert(sum == N * (N + 1) // 2)
print(("BENCH time=%.6f n=%d"):format(elapsed, N))
