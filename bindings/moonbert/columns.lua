-- moonbert.columns: the aligned text columns of the command line (`moonbert results`, `moonbert
-- sweep --status` and the sweep ranking).
--
--   require("moonbert.columns").print({ { "ID", "STATUS" }, { "1", "completed" } })
local M = {}

--- columns.print(rows [, out]): rows (arrays of strings) as columns two spaces apart, each as wide
-- as its widest cell (UTF-8 characters), the last cell of a row unpadded and no trailing blanks.
-- Each cell's width is measured once; an all-ASCII row is one string.format (`results list`
-- prints 10,000 rows).
function M.print(rows, out)
  out = out or io.stdout
  local widths, lens, ascii = {}, {}, {}
  for r, row in ipairs(rows) do
    local l, plain = {}, true
    for i, cell in ipairs(row) do
      local n = utf8.len(cell) or #cell
      l[i] = n
      if n ~= #cell then plain = false end
      if n > (widths[i] or 0) then widths[i] = n end
    end
    lens[r], ascii[r] = l, plain
  end
  -- formats[last]: the first last - 1 columns padded, the last one as it is (string.format
  -- pads to at most 99: wider columns take the slow way)
  local formats, spec = {}, {}
  for last = 1, #widths do
    spec[last] = "%s"
    formats[last] = table.concat(spec, "  ", 1, last)
    if widths[last] > 99 then break end
    spec[last] = "%-" .. widths[last] .. "s"
  end
  for r, row in ipairs(rows) do
    -- empty cells at the end would only be trailing blanks: the line ends at the last non-empty one
    local last = #row
    while last > 0 and row[last] == "" do last = last - 1 end
    local line
    if last == 0 then
      line = ""
    elseif ascii[r] and formats[last] then
      line = formats[last]:format(table.unpack(row, 1, last))
    else
      local l, parts = lens[r], {}
      for i = 1, last - 1 do parts[i] = row[i] .. (" "):rep(widths[i] - l[i]) end
      parts[last] = row[last]
      line = table.concat(parts, "  ")
    end
    if line:find("%s", -1) then line = line:gsub("%s+$", "") end
    out:write(line, "\n")
  end
end

return M
