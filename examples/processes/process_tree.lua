-- process_tree.lua — objects shared by a whole tree of processes: two
-- children, each with a thread and a grandchild of its own, feed two queues
-- that the parent watches with select; a lock guards a shared counter, an
-- event starts everyone at once. Every object lives in the tree's shared
-- memory, so all of them reach every process and thread directly.
local skein = require "skein"

local go = skein.event()
local lock = skein.lock()
local counter = skein.shared.value(0)
local evens, odds = skein.queue(), skein.queue()

-- Adds one to the counter under the lock, then reports `who` on a queue.
local function work(who, n, ev, lk, c, q_even, q_odd)
  ev:wait(30)
  lk:with(function() c:set(c:get() + 1) end)
  local q = n % 2 == 0 and q_even or q_odd
  q:put(who)
end

local children = {}
for i = 1, 2 do
  children[i] = skein.process(function(id, ev, lk, c, qe, qo)
    local t = skein.thread(work, "child " .. id .. "'s thread", 2 * id, ev, lk, c, qe, qo)
    local g = skein.process(work, "child " .. id .. "'s grandchild", 2 * id + 1, ev, lk, c, qe, qo)
    work("child " .. id, id, ev, lk, c, qe, qo)
    t:join(30)
    g:join(30)
  end, i, go, lock, counter, evens, odds)
end

go:set()
local seen = {}
for _ = 1, 6 do
  local which, who = skein.select({evens, odds}, 30)
  seen[#seen + 1] = (which == 1 and "even: " or "odd:  ") .. who
end
for i = 1, 2 do children[i]:join(30) end
table.sort(seen)
for _, line in ipairs(seen) do print(line) end
print(("counter = %d (six increments under one lock, from four processes and two threads)"):format(counter:get()))
