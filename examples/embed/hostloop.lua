-- hostloop.lua — run by hostloop.c, whose own uv_timer calls on_tick(n)
-- and spawns worker(n) as a task on every tick.
local done = 0

-- Called by the host from its timer callback with skein_call: it runs inside
-- the host's uv_run, so it must not block. It spawns a task instead.
function on_tick(n)
  skein.spawn(function()
    skein.sleep(0.005)
    host.record("tick task " .. n)
  end)
  return n < 3  -- the host stops its timer after tick 3
end

-- Spawned by the host with skein_spawn: a task, so it may sleep.
function worker(n)
  skein.sleep(0.02)
  done = done + 1
  host.record(("worker %d done (%d so far)"):format(n, done))
end

-- A task started by the script itself, before the host runs its loop.
skein.spawn(function()
  skein.sleep(0.001)
  host.record("script task")
end)
print("hostloop.lua: loaded")
