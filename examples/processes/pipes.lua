-- pipes.lua — replaces the Pipe templates of seeds 002 and 004: a sender
-- process and a receiver process on the two ends of one pipe; a duplex
-- ping-pong between two processes; a child that sends one message to its
-- parent.
--
--   def proc_send(pipe, args): for arg in args: pipe.send(arg)
--   def proc_recv(pipe): while True: print(pipe.recv())
--   pipe = Pipe(); Process(proc_send, (pipe[0], ['aa0'..'aa9'])), Process(proc_recv, (pipe[1],))
--
--   def proc1(pipe): pipe.send('hello'); print('proc1 rec:', pipe.recv())
--   def proc2(pipe): print('proc2 rec:', pipe.recv()); pipe.send('hello, too')
--
--   def f(conn): conn.send([42, None, 'hello']); conn.close()
--   parent_conn, child_conn = Pipe(); Process(f, (child_conn,)); print(parent_conn.recv())
--
-- Pipe ends cross to processes by reference; sends and receives run in the
-- parent, which owns the pipe. The sender closes its end when it is done, so
-- the receiver's loop ends with kind "closed" (Python's EOFError) instead of
-- being killed.

-- 1. One-way traffic: aa0 .. aa9, received in order.
local function proc_send(pipe, args)
  for _, arg in ipairs(args) do pipe:send(arg) end
  pipe:close()
  return #args
end

local function proc_recv(pipe)
  local got = {}
  while true do
    local ok, item = pcall(pipe.recv, pipe)
    if not ok then
      assert(skein.is_error(item, "closed"), item)
      return got
    end
    got[#got + 1] = item
  end
end

local args = {}
for i = 0, 9 do args[#args + 1] = "aa" .. i end
local a, b = skein.pipe()
local sender = skein.process(proc_send, a, args)
local receiver = skein.process(proc_recv, b)
print(("sent %d, received: %s"):format(sender:join(), table.concat(receiver:join(), " ")))

-- 2. Duplex: each end both sends and receives. The children print; proc2
-- prints before it answers and proc1 only after the answer, so the two
-- lines always come in this order (print flushes at once).
local function proc1(pipe)
  pipe:send("hello")
  print("proc1 rec: " .. pipe:recv())
end

local function proc2(pipe)
  print("proc2 rec: " .. pipe:recv())
  pipe:send("hello, too")
end

local left, right = skein.pipe()
local p1, p2 = skein.process(proc1, left), skein.process(proc2, right)
p1:join()
p2:join()

-- 3. A child sends to its parent.
local parent_conn, child_conn = skein.pipe()
local p = skein.process(function(conn)
  conn:send({42, nil, "hello", n = 3})
  conn:close()
end, child_conn)
local msg = parent_conn:recv()
p:join()
print(("[%s, %s, '%s']"):format(tostring(msg[1]), tostring(msg[2]), msg[3]))
