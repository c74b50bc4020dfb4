--- Helpers for specs that check the errors an API raises.
local skein = require "skein"
local assert = require "luassert"   -- busted's assert; a dofile'd file does not see the spec's globals
local M = {}

--- Calls fn, asserts that it raised, and returns the error.
function M.errof(fn, ...)
  local ok, e = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  return e
end

--- Like errof, but returns the skein error kind (or the error as a string)
-- first, then the error itself.
function M.kindof(fn, ...)
  local e = M.errof(fn, ...)
  return skein.is_error(e) and e.kind or tostring(e), e
end

return M
