-- The socket-server examples in examples/io/ (the seeds' gevent socket
-- server, the pool of 3 processes on one port, the rate-shaped load
-- generator): each runs its own server on a free loopback port and its
-- clients, with a bounded time, and the spec checks what it prints.
local skein = require "skein"
local cli = require "spec.support.cli"

-- Runs an example with arguments, bounded by `secs` (default 60); returns
-- its standard output, its exit status and its standard error.
local function run(name, args, secs)
  local argv = {"examples/io/" .. name}
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  local r = cli.run(argv, {timeout = secs or 60})
  return r.out or "", r.code, r.err or ""
end

local lines = cli.lines

-- Starts an example as a server on a free port (its argument "0") in the
-- background and waits (up to 10 s) for the line that names the port;
-- returns the port and a function that sends SIGINT and returns the exit
-- status, standard output and standard error once it ended (up to 10 s).
-- (`timeout --foreground`: plain `timeout` passes a SIGINT on twice, to the
-- server and to its process group, and the second one kills the server
-- before it reports the first, as a second Ctrl-C does.)
local function start_server(name)
  local d = cli.tmpdir()
  os.execute(("(timeout --foreground -k 2 30 %s %s 0 >%s 2>%s </dev/null & echo $! >%s; wait $!; echo $? >%s) &"):format(
    cli.q(cli.bin), cli.q("examples/io/" .. name), cli.q(d .. "/out"), cli.q(d .. "/err"),
    cli.q(d .. "/pid"), cli.q(d .. "/rc")))
  local port
  for _ = 1, 200 do
    port = tonumber((cli.read(d .. "/out") or ""):match("on 127%.0%.0%.1:(%d+)\n"))
    if port then break end
    skein.sleep(0.05)
  end
  assert(port, "the server never said where it listens: " .. (cli.read(d .. "/err") or ""))
  return port, function()
    os.execute("kill -INT " .. cli.read(d .. "/pid"))
    for _ = 1, 200 do
      local rc = tonumber(cli.read(d .. "/rc") or "")
      if rc then return rc, cli.read(d .. "/out"), cli.read(d .. "/err") end
      skein.sleep(0.05)
    end
    error("the server did not end on SIGINT")
  end
end

describe("examples/io", function()
  teardown(function() cli.cleanup() end)

  it("echo_server.lua --demo: five client threads get their messages back", function()
    local out, code, err = run("echo_server.lua", {"--demo"})
    assert.equal(0, code, out .. err)
    assert.equal("", err)
    local got = lines(out)
    assert.matches("^echo server on 127%.0%.0%.1:%d+$", got[1])
    local want = {got[1]}
    for id = 1, 5 do
      want[#want + 1] = ("client %d got back: client %d, message 1 | client %d, message 2 | " ..
                         "client %d, message 3"):format(id, id, id, id)
    end
    want[#want + 1] = "5 clients, 15 messages echoed"
    assert.same(want, got)
  end)

  it("echo_server.lua and line_server.lua serve clients of another process until Ctrl-C", function()
    local port, stop = start_server("echo_server.lua")
    local conns = {}
    for i = 1, 3 do conns[i] = skein.net.connect("127.0.0.1", port, {timeout = 5}) end
    for i = 3, 1, -1 do
      conns[i]:write(("binary\0%d\r\n"):format(i))
      assert.equal(("binary\0%d\r\n"):format(i), conns[i]:read(#"binary\0x\r\n", 5))
    end
    for _, c in ipairs(conns) do c:close() end
    local code, _, err = stop()
    assert.equal(130, code)
    assert.matches("interrupted", err)

    port, stop = start_server("line_server.lua")
    local c = skein.net.connect("127.0.0.1", port, {timeout = 5})
    c:write("PING\nECHO from outside\nQUIT\n")
    assert.equal("PONG", c:read("l", 5))
    assert.equal("from outside", c:read("l", 5))
    assert.equal("BYE", c:read("l", 5))
    assert.is_nil(c:read("l", 5))
    c:close()
    code, _, err = stop()
    assert.equal(130, code)
    assert.matches("interrupted", err)
  end)

  it("line_server.lua --demo: three clients speak the line protocol at once", function()
    local out, code, err = run("line_server.lua", {"--demo"})
    assert.equal(0, code, out .. err)
    assert.equal("", err)
    local got = lines(out)
    assert.matches("^line server on 127%.0%.0%.1:%d+$", got[1])
    assert.matches("^< %d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$", got[14])
    assert.same({
      got[1],
      "-- client 1",
      "> PING", "< PONG",
      "> ECHO hello, skein", "< hello, skein",
      "> COUNT", "< 3",
      "> QUIT", "< BYE",
      "(closed by the server)",
      "-- client 2",
      "> TIME", got[14],
      "> ECHO", "< ",
      "> bogus command", "< ERR unknown command 'BOGUS'",
      "> COUNT", "< 4",
      "> QUIT", "< BYE",
      "(closed by the server)",
      "-- client 3",
      "> ping", "< PONG",
      "> ECHO  two  spaces ", "<  two  spaces ",
      "> QUIT", "< BYE",
      "(closed by the server)",
      "3 clients served",
    }, got)
  end)

  it("reuseport_pool.lua: exactly the 3 pool processes serve, none of them main", function()
    local out, code, err = run("reuseport_pool.lua")
    assert.equal(0, code, out .. err)
    assert.equal("", err)
    local got = lines(out)
    assert.equal(3, #got, out)
    local made, nprocs, served = got[1]:match("^(%d+) connections, answered by (%d+) processes %((%d+) served in all%)$")
    assert.is_truthy(made, got[1])
    made, nprocs, served = tonumber(made), tonumber(nprocs), tonumber(served)
    assert.is_true(made >= 30 and made % 10 == 0, got[1])
    assert.equal(3, nprocs)
    assert.equal(made, served)
    local pids, sum = {}, 0
    for pid, count in got[2]:gmatch("(%d+): (%d+)") do
      pids[#pids + 1] = tonumber(pid)
      assert.is_true(tonumber(count) > 0, got[2])
      sum = sum + tonumber(count)
    end
    assert.equal(3, #pids, got[2])
    assert.equal(made, sum)
    local main = tonumber(got[3]:match("^main pid (%d+) served none: true$"))
    assert.is_truthy(main, got[3])
    for _, pid in ipairs(pids) do assert.not_equal(main, pid) end
  end)

  it("load_generator.lua: bursts on a local server all succeed, one line per second", function()
    local t0 = skein.now()
    local out, code, err = run("load_generator.lua", {"40", "3"})
    local secs = skein.now() - t0
    assert.equal(0, code, out .. err)
    assert.equal("", err)
    local got = lines(out)
    assert.equal(4, #got, out)
    for s = 1, 3 do
      local avg, max = got[s]:match(("^second %d: 40 requests, 40 ok, 0 failed, latency avg ([%%d.]+) ms, max ([%%d.]+) ms$"):format(s))
      assert.is_truthy(avg, got[s])
      assert.is_true(tonumber(avg) <= tonumber(max) and tonumber(max) < 5000, got[s])
    end
    assert.equal("total: 120 requests in 3 bursts, 120 ok, 0 failed", got[4])
    assert.is_true(secs >= 2, "the third burst starts 2 s after the first")
  end)

  it("load_generator.lua --target: a closed port makes every request fail, counted", function()
    local l = skein.net.listen("127.0.0.1", 0)
    local port = l:port()
    l:close()
    local out, code, err = run("load_generator.lua", {"5", "2", "--target", "127.0.0.1:" .. port})
    assert.equal(0, code, out .. err)
    assert.equal("", err)
    assert.same({
      "second 1: 5 requests, 0 ok, 5 failed (ECONNREFUSED x5), latency avg 0.0 ms, max 0.0 ms",
      "second 2: 5 requests, 0 ok, 5 failed (ECONNREFUSED x5), latency avg 0.0 ms, max 0.0 ms",
      "total: 10 requests in 2 bursts, 0 ok, 10 failed",
    }, lines(out))
  end)
end)
