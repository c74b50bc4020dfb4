-- ppool_heap.lua — skein: a program that has already run 100 000 tasks
-- (its Lua heap has grown and holds their results) starts a 2-process pool
-- and maps N trivial items. The timed region is what the program pays from
-- there: pool start-up, the map, shutdown, and the collection that follows.
-- Starting a process after the heap grew must not make that collection
-- slow (fork write-protects the parent's private pages; see runtime/host/alloc.c).
-- Usage: skein ppool_heap.lua [N]
local N = tonumber(arg[1]) or 200000
local kept = {}
for i = 1, 100000 do kept[i] = skein.spawn(function() return { i } end) end
for i = 1, #kept do kept[i] = kept[i]:join()[1] end
local items = {}
for i = 1, N do items[i] = i end
local t0 = skein.now()
local r
do
  local pool <close> = skein.pool{kind = "process", size = 2}
  r = pool:map(function(x) return x + 1 end, items)
end
collectgarbage()
local elapsed = skein.now() - t0
assert(r.n == N and r[N] == N + 1 and #kept == 100000)
print(("BENCH time=%.6f n=%d"):format(elapsed, N))
