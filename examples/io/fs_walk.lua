-- fs_walk.lua — walks a directory tree with skein.fs, one task per
-- subdirectory, and sums the sizes of the files it finds. The file-system
-- calls run on libuv's thread pool, so the walkers overlap.
local fs = skein.fs

local root = (arg and arg[1]) or (os.tmpname() .. ".d")
local made = not arg or not arg[1]
if made then                                 -- a small tree to walk
  for _, sub in ipairs({"a/x", "a/y", "b"}) do fs.mkdir(root .. "/" .. sub, {parents = true}) end
  fs.write(root .. "/a/x/one.txt", ("1"):rep(100))
  fs.write(root .. "/a/y/two.txt", ("2"):rep(200))
  fs.write(root .. "/b/three.txt", ("3"):rep(300))
  fs.write(root .. "/top.txt", "top\n")
end

local function walk(dir)
  local files, bytes, tasks = 0, 0, {}
  for _, name in ipairs(fs.list(dir)) do
    local path = dir .. "/" .. name
    local st = fs.stat(path)
    if st.type == "directory" then
      tasks[#tasks + 1] = skein.spawn(walk, path)
    elseif st.type == "file" then
      files, bytes = files + 1, bytes + st.size
    end
  end
  for _, t in ipairs(tasks) do
    local f, b = t:join()
    files, bytes = files + f, bytes + b
  end
  return files, bytes
end

local files, bytes = walk(root)
print(("%d files, %d bytes"):format(files, bytes))
if made then fs.remove(root, {recursive = true}) end
