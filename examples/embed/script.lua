-- script.lua — run by host.c. `host` is the C host's own module, installed
-- by its init hook. The main chunk only spawns tasks and returns; the host
-- then drives the loop, and the tasks call back into C between sleeps.
local names = { "ada", "grace", "barbara" }
local tasks = {}
for i, name in ipairs(names) do
  tasks[i] = skein.spawn(function()
    skein.sleep(0.02 * i)
    print("task: " .. host.greet(name))
    skein.sleep(0.01)
    return host.add(i, 10)
  end)
end

skein.spawn(function()
  local sum = 0
  for _, t in ipairs(tasks) do sum = sum + t:join() end
  print(("task: results add up to %d"):format(sum))
end)

print("script: main chunk done, " .. #tasks + 1 .. " tasks spawned")
