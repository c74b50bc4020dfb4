-- hello.lua — three tasks sleep concurrently; the whole run takes about
-- 0.3 s, not 0.6 s, because each sleep suspends only its own task.
local started = skein.now()
local tasks = {}
for i, delay in ipairs({0.3, 0.1, 0.2}) do
  tasks[i] = skein.spawn(function()
    skein.sleep(delay)
    return ("task %d slept %.1f s"):format(i, delay)
  end)
end
for t in skein.as_completed(tasks) do print(t:join()) end
print(("all done in %.1f s"):format(skein.now() - started))
