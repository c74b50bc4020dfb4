-- as_completed_cancel.lua — handle results as they finish; Ctrl-C cancels
-- what is left. A port of the concurrent.futures template:
--
--     futures = {executor.submit(task) for task in get_task(tasks)}
--     try:
--         for future in concurrent.futures.as_completed(futures):
--             result = future.result()
--     except KeyboardInterrupt as e:
--         for future in futures: future.cancel()
--         print("Task has been canceled!")
--
-- Ctrl-C reaches the main chunk as an error of kind `interrupted`, once;
-- the handler may still wait (here: for the pool to stop), and the script
-- ends normally. Without a Ctrl-C every task finishes; results come in the
-- order the tasks finish.
-- Usage: skein as_completed_cancel.lua [N]   (N tasks, default 8)

local N = tonumber(arg and arg[1]) or 8

-- A "task": the i-th one takes i/10 s (the worker process really sleeps).
local function task(i)
  skein.sleep(i / 10)
  return i * i
end

local pool <close> = skein.pool{kind = "process", size = 4}
local futures = {}
for i = 1, N do futures[i] = pool:submit(task, i) end

local done = 0
local ok, err = pcall(function()
  for f in skein.as_completed(futures) do
    done = done + 1
    print(("result %d"):format(f:get()))
    io.stdout:flush()
  end
end)
if not ok then
  if not skein.is_error(err, "interrupted") then error(err, 0) end
  local cancelled = 0
  for _, f in ipairs(futures) do
    if f:cancel() then cancelled = cancelled + 1 end
  end
  pool:terminate()          -- running tasks stop too (their workers are killed)
  print(("Task has been canceled! %d finished, %d cancelled before they started"):format(done, cancelled))
else
  print(("all %d tasks finished"):format(done))
end
