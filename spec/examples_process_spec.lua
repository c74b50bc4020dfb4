-- Runs the process examples (examples/processes/) as a user would and checks
-- exactly what they print and that they exit with status 0. Their output
-- does not depend on timing (results that arrive in any order are sorted),
-- so the same text is expected from release and sanitizer builds.
local SKEIN = os.getenv("SKEIN_BIN") or arg[-1]

local function run(name)
  local p = io.popen(("timeout 60 %s examples/processes/%s 2>&1; echo \"exit=$?\""):format(SKEIN, name))
  local out = require("spec.support.cli").unsanitized(p:read("a"))
  p:close()
  local body, status = out:match("^(.-)exit=(%d+)%s*$")
  return body, tonumber(status)
end

describe("examples/processes", function()
  it("pool_everywhere.lua: children and a grandchild submit to the parent's pool; a thread selects the futures", function()
    local out, status = run("pool_everywhere.lua")
    assert.equal([[
children submitted 6 jobs; the helper said "helper done"
fetched 7000 bytes: a.example/1 a.example/22 a.example/333 b.example/q g.example/x g.example/yy
]], out)
    assert.equal(0, status)
  end)

  it("pool_manager_list.lua: a process pool appends 40 results to a shared list", function()
    local out, status = run("pool_manager_list.lua")
    assert.equal([[
[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40]
40 results from a pool of 5 processes; every task ran in a worker process: true
]], out)
    assert.equal(0, status)
  end)

  it("queue_writers_reader.lua: writer processes and a reader process share a queue; a bounded queue passes ten items", function()
    local out, status = run("queue_writers_reader.lua")
    assert.equal([[
writer-1 put 3 items
writer-2 put 3 items
get a from queue
get aa from queue
get b from queue
get bb from queue
get c from queue
get cc from queue
reader: joined=false, worker_died (SIGTERM)
10 items through a queue of 3: item 01 (put) .. item 10 (put)
]], out)
    assert.equal(0, status)
  end)

  it("pipes.lua: pipes carry items one way, both ways, and from a child to its parent", function()
    local out, status = run("pipes.lua")
    assert.equal([[
sent 10, received: aa0 aa1 aa2 aa3 aa4 aa5 aa6 aa7 aa8 aa9
proc2 rec: hello
proc1 rec: hello, too
[42, nil, 'hello']
]], out)
    assert.equal(0, status)
  end)

  it("value_array.lua: a child's changes to a shared value and array reach the parent; concurrent adds are exact", function()
    local out, status = run("value_array.lua")
    assert.equal([[
3.1415927
[0, -1, -2, -3, -4, -5, -6, -7, -8, -9]
hits = 800, per slot = [200, 200, 200, 200]
]], out)
    assert.equal(0, status)
  end)

  it("manager.lua: value, array, list and a dict updated by four processes", function()
    local out, status = run("manager.lua")
    assert.equal([[
3.14
[5, 1, 2, 3, 4, 5, 6, 7, 8, 9]
['Hello']
brown=1 dog=2 fox=2 jumps=1 lazy=1 over=1 quick=1 runs=1 sleeps=1 the=4
4 workers reported
]], out)
    assert.equal(0, status)
  end)

  it("consumers.lua: consumer processes, a joinable queue and poison pills", function()
    local out, status = run("consumers.lua")
    assert.equal([[
creating 4 consumers
result ---> 0 * 0 = 0
result ---> 1 * 1 = 1
result ---> 2 * 2 = 4
result ---> 3 * 3 = 9
result ---> 4 * 4 = 16
result ---> 5 * 5 = 25
result ---> 6 * 6 = 36
result ---> 7 * 7 = 49
result ---> 8 * 8 = 64
result ---> 9 * 9 = 81
4 consumers exited after 10 jobs
]], out)
    assert.equal(0, status)
  end)

  it("process_thread.lua: process-pool tasks square their sub-lists on thread pools", function()
    local out, status = run("process_thread.lua")
    assert.equal([=[
[[1, 4, 9], [9, 16, 25], [25, 36, 49], [49, 64, 81], [81, 100, 121]]
5 sub-lists, each squared by a pool of 3 threads in a process worker
]=], out)
    assert.equal(0, status)
  end)

  it("process_coroutine.lua: process-pool tasks fetch their sub-lists on coroutine pools from a local server, three requests at once", function()
    local out, status = run("process_coroutine.lua")
    assert.equal([=[
[[1, 4, 9], [9, 16, 25], [25, 36, 49], [49, 64, 81], [81, 100, 121]]
coroutines waiting on the server at once in each task: 3 3 3 3 3
]=], out)
    assert.equal(0, status)
  end)

  it("exit_codes.lua: workers that return, raise, exit, are terminated or killed report how they ended", function()
    local out, status = run("exit_codes.lua")
    assert.equal([[
Starting process for exit_error
Starting process for exit_ok
Starting process for return_value
Starting process for raises
Starting process for terminated
Starting process for killed
     exit_error.exit_code = 1    exit_signal = nil  died: exit code 1
        exit_ok.exit_code = 0    exit_signal = nil  returned nil
   return_value.exit_code = 0    exit_signal = nil  returned 1
         raises.exit_code = 1    exit_signal = nil  raised: There was an error!
     terminated.exit_code = nil  exit_signal = 15   died: SIGTERM
         killed.exit_code = nil  exit_signal = 9    died: SIGKILL
]], out)
    assert.equal(0, status)
  end)

  it("crawler_callbacks.lua: pages fetched from a local server in worker processes are parsed after all, in the workers, and by callbacks in the main process", function()
    local out, status = run("crawler_callbacks.lua")
    assert.equal([[
version 1: 10 titles parsed after every page was in, 2036 bytes
version 2: 10 titles parsed in the worker processes (true), 2036 bytes
parsed /site/atlasnq.github.io/     200  title atlasnq.github.io   241 bytes
parsed /site/atlasnq.github.io/     200  title atlasnq.github.io   241 bytes
parsed /site/www.JD.com/            200  title www.JD.com          164 bytes
parsed /site/www.baidu.com/         200  title www.baidu.com       197 bytes
parsed /site/www.baidu.com/         200  title www.baidu.com       197 bytes
parsed /site/www.cnblogs.com/       200  title www.cnblogs.com     219 bytes
parsed /site/www.sina.com/          200  title www.sina.com        186 bytes
parsed /site/www.sohu.com/          200  title www.sohu.com        186 bytes
parsed /site/www.taobao.com/        200  title www.taobao.com      208 bytes
parsed /site/www.youku.com/         200  title www.youku.com       197 bytes
version 3: 10 pages; fetched in worker processes: true; parsed in the main process: true
]], out)
    assert.equal(0, status)
  end)

  it("aiomultiprocess.lua: coroutine functions in worker processes, and a process pool whose tasks fetch four things at once", function()
    local out, status = run("aiomultiprocess.lua")
    assert.equal([[
result_1: result from process 1 (a process worker)
result_2: result from process 2 (a process worker)
/a-example/: "a-example", 2372 bytes in 4 files (4 with status 200), 4 requests at once
/b-example/: "b-example", 2372 bytes in 4 files (4 with status 200), 4 requests at once
/c-example/: "c-example", 2372 bytes in 4 files (4 with status 200), 4 requests at once
/d-example/: "d-example", 2372 bytes in 4 files (4 with status 200), 4 requests at once
]], out)
    assert.equal(0, status)
  end)

  it("process_tree.lua: children, their threads and grandchildren share queues, a lock, a value and an event", function()
    local out, status = run("process_tree.lua")
    assert.equal([[
even: child 1's thread
even: child 2
even: child 2's thread
odd:  child 1
odd:  child 1's grandchild
odd:  child 2's grandchild
counter = 6 (six increments under one lock, from four processes and two threads)
]], out)
    assert.equal(0, status)
  end)
end)
