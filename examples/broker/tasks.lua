-- tasks.lua — the tasks that `skein worker` serves for taskmaster.lua: the
-- work loop of the seeds' task_worker.py (seed 004), whose body was
--
--   n = task.get(timeout=1)
--   r = '%d * %d = %d' % (n, n, n * n)
--   time.sleep(1)
--   result.put(r)
--
-- A worker runs only the functions this file returns, by name; the master
-- sends the name and the data, never code.
--
--   skein worker --broker redis://127.0.0.1:6379 --queue squares --tasks examples/broker/tasks.lua

return {
  -- Returns n * n and the pid of the process that ran it, so the master can
  -- show which worker did what. The short sleep stands for the seed's
  -- `time.sleep(1)`: real work, long enough for tasks to spread over workers.
  square = function(n)
    skein.sleep(0.1)
    return n * n, skein.self().pid
  end,
}
