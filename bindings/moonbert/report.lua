-- moonbert.report (mb.report): one self-contained HTML page per run, with SVG plots.
--
--   local path = mb.report.write(store, run_id)        -- results/runs/<id>/report/index.html
--   -- or: moonbert report RUN [--store PATH] [--out DIR]
--
-- The page is built from what the store holds for the run (provenance, params,
-- tags, metric series, confusion matrices, predictions) plus the JSON artifacts
-- the run logged with mb.report.log_* (report_artifacts.lua). It loads nothing: styles are inline, plots are inline SVG (moonbert.svg),
-- there is no script, and a Content-Security-Policy meta tag forbids any fetch.
-- Every string from data or users (texts, labels, run names, params, tags,
-- errors) is escaped, so a text holding "<script>" or "</svg>" shows as text.
-- A missing piece leaves its section with a note saying how to record it.
-- The sweep's page: mb.report.write_sweep(store, name) or moonbert report --sweep NAME.
--
-- The parts, one file each: report_artifacts.lua (the mb.report.log_* writers: what an
-- experiment saves for its report, the ARTIFACT CONTRACT), report_run.lua (the run page),
-- report_sweep.lua (the sweep page and parameter importance), report_html.lua (what both
-- pages share: the frame, the style, formats). This module is the surface, mb.report, and
-- writes the pages.
local artifacts = require "moonbert.report_artifacts"
local html = require "moonbert.report_html"
local run_page = require "moonbert.report_run"
local sweep_page = require "moonbert.report_sweep"

local M = {}

M.KINDS = artifacts.KINDS
M.COMPARISON_SPLITS = artifacts.COMPARISON_SPLITS
M.TABLE_ROWS = run_page.TABLE_ROWS
M.log_dataset_stats = artifacts.log_dataset_stats
M.log_embedding = artifacts.log_embedding
M.log_custom_predictions = artifacts.log_custom_predictions
M.log_examples = artifacts.log_examples
M.log_comparison = artifacts.log_comparison
M.build = run_page.build
M.build_sweep = sweep_page.build_sweep
M.param_importance = sweep_page.param_importance
M.sweep_dir = sweep_page.sweep_dir
M.STYLE = html.STYLE
M.format_seconds = html.fmt_seconds
M.split_metric_key = html.split_key

local function mkdir_p(dir)
  local ok, err = require("moonbert.fs").mkdir_p(dir)
  if not ok then return nil, err end
  return true
end

local function write_page(out_dir, html)
  local ok, err = mkdir_p(out_dir)
  if not ok then return nil, "cannot create folder " .. out_dir .. ": " .. tostring(err) end
  local path = out_dir .. "/index.html"
  local f, ferr = io.open(path, "wb")
  if not f then return nil, "cannot write " .. tostring(ferr) end
  f:write(html)
  f:close()
  return path
end

--- mb.report.default_dir(store, run_id) -> runs/<id>/report beside the store
function M.default_dir(store, run_id)
  local base = store:artifact_root()
  return base .. "/runs/" .. run_id .. "/report"
end

--- mb.report.write(store, run_id [, out_dir]) -> path, info | nil, message
-- Writes out_dir/index.html (default: runs/<id>/report beside the store).
function M.write(store, run_id, out_dir)
  local html, info = M.build(store, run_id)
  if not html then return nil, info end
  local path, err = write_page(out_dir or M.default_dir(store, run_id), html)
  if not path then return nil, err end
  return path, info
end

--- mb.report.write_sweep(store, name [, out_dir [, {metric=, mode=}]]) -> path, info | nil, message
-- Writes out_dir/index.html (default: sweeps/<name>/report beside the store).
function M.write_sweep(store, name, out_dir, opts)
  local html, info = M.build_sweep(store, name, opts)
  if not html then return nil, info end
  local path, err = write_page(out_dir or (M.sweep_dir(store, name) .. "/report"), html)
  if not path then return nil, err end
  return path, info
end

return M
