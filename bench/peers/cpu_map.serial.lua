-- cpu_map.serial.lua — the same fib work done serially by the same Lua VM
-- (lua5.4): the baseline for the two-thread speedup.
local N = tonumber(arg[1]) or 16
local function fib(n) return n < 2 and n or fib(n - 1) + fib(n - 2) end
local t0 = os.clock()
local r = {}
for i = 1, N do r[i] = fib(27) end
local elapsed = os.clock() - t0
assert(#r == N and r[1] == 196418)
print(("BENCH time=%.6f n=%d"):format(elapsed, N))
