-- hosttype.lua — run by hosttype.c. `demo` is the host's module: demo.vec
-- (a userdata sent by clone) and demo.tally (one sent by reference).

-- By clone, to worker processes (which run the host's own program, so they
-- have the type) and back.
local procs = skein.pool{kind = "process", size = 2}
local v = demo.vec(1, 2, 2)
local len, doubled = procs:submit(function(v) return v:len(), v:scale(2) end, v):get()
print(("clone: |%s| = %g in a worker process, which sent back %s"):format(tostring(v), len,
                                                                          tostring(doubled)))

-- By reference, to thread workers: they all add to the same C object.
local threads = skein.pool{kind = "thread", size = 4}
local t = demo.tally()
local futures = {}
for i = 1, 100 do futures[i] = threads:submit(function(t, n) t:add(n) end, t, i) end
for _, f in ipairs(futures) do f:get() end
print(("reference: 100 jobs on 4 threads added up to %d in the host's tally"):format(t:value()))

-- A tally cannot go to another process.
local ok, err = pcall(procs.submit, procs, function(t) return t:value() end, t)
print(("reference to a process: %s (%s)"):format(ok and "sent?" or "refused", err.kind))

threads:close() threads:join()
procs:close() procs:join()
futures = nil
collectgarbage() collectgarbage()
print(("the tally's references once the workers are gone: %d"):format(t:refs()))
