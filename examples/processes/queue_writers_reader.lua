-- queue_writers_reader.lua — replaces the Queue template of seeds 002 and
-- 004: two writer processes put items on one queue, a reader process gets
-- them in an endless loop, and the parent joins the writers and then
-- terminates the reader.
--
--   def proc_write(q, args): for a in args: q.put(a)
--   def proc_read(q): while True: a = q.get(True); print('get %s' % a)
--   q = Queue(); start writer1(q, ['a','b','c']), writer2(q, ['aa','bb','cc']),
--   reader(q); join the writers; reader.terminate()
--
-- The reader reports what it took on a second queue, so the parent knows
-- when everything has been read (Python terminates it at once, racing with
-- its last gets). Writers interleave at random: sort what is printed.

local function proc_write(q, items)
  for _, item in ipairs(items) do
    q:put(item)
    skein.sleep(0.01)
  end
  return #items
end

local function proc_read(q, seen)
  while true do
    local a = q:get()
    seen:put(("get %s from queue"):format(a))
  end
end

local q, seen = skein.queue(), skein.queue()
local writers = {
  skein.process{fn = proc_write, args = {q, {"a", "b", "c"}}, name = "writer-1"},
  skein.process{fn = proc_write, args = {q, {"aa", "bb", "cc"}}, name = "writer-2"},
}
local reader = skein.process{fn = proc_read, args = {q, seen}, name = "reader"}

local total = 0
for _, w in ipairs(writers) do
  local n = w:join()
  print(("%s put %d items"):format(w.name, n))
  total = total + n
end

local lines = {}
for i = 1, total do lines[i] = seen:get() end
table.sort(lines)
for _, line in ipairs(lines) do print(line) end

-- The reader never returns: stop it, as Python does, and say how it ended.
reader:terminate()
local ok, err = pcall(reader.join, reader)
print(("reader: joined=%s, %s (%s)"):format(ok, err.kind, err.signal_name))

-- Seed 004's variant: ten input processes and ten output processes share a
-- queue bounded to three items (a put waits while it is full), and the
-- queue is closed once every input process is done.
local bounded = skein.queue(3)
local inputs, outputs = {}, {}
for i = 1, 10 do
  inputs[i] = skein.process(function(queue, n) queue:put(("item %02d (put)"):format(n)) end, bounded, i)
end
for i = 1, 10 do
  outputs[i] = skein.process(function(queue) return queue:get() end, bounded)
end
for _, p in ipairs(inputs) do p:join() end
bounded:close()                   -- no more items will come
local got = {}
for i, p in ipairs(outputs) do got[i] = p:join() end
table.sort(got)
print(("%d items through a queue of 3: %s .. %s"):format(#got, got[1], got[#got]))
