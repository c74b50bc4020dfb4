-- pipes.lua — Pipe templates: a duplex pipe between two threads that
-- greet each other, and a one-way pipe (duplex=false gives a receiving
-- and a sending end) from a sender thread to the main worker.
local function proc1(pipe)
  pipe:send("hello")
  return "proc1 rec: " .. pipe:recv()
end

local function proc2(pipe)
  local got = pipe:recv()
  pipe:send("hello, too")
  return "proc2 rec: " .. got
end

local a, b = skein.pipe()
local t1, t2 = skein.thread(proc1, a), skein.thread(proc2, b)
print(t2:join())
print(t1:join())

local reader, writer = skein.pipe(false)
local sender = skein.thread(function(w)
  for i = 0, 4 do w:send("aa" .. i) end
  w:close()                           -- the reader sees the end of data
end, writer)
writer = nil      -- only the sender's handle is needed (close() would close
                  -- the end for every worker holding it)
while true do
  local ok, msg = pcall(reader.recv, reader)
  if not ok then
    print("reader: " .. tostring(msg.kind))
    break
  end
  print("rev: " .. msg)
end
sender:join()
