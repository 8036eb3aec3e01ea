-- tests/spec/faults/trial.lua: a sweep trial for tests/spec/faults_spec.lua (not a spec): the
-- training of child.lua, with the options a sweep passes (--lr, --store) and --resume.
--   moonbert run tests/spec/faults/trial.lua --work DIR --out DIR [--sleep S] --lr X --store PATH [--resume]
local args = require "moonbert.args"
local spec = {
  { "--work", "DIR", "data folder (vocab.txt, train.txt)" },
  { "--out", "DIR", "final model folder" },
  { "--sleep", "S", "pause after every step", default = "0" },
  { "--lr", "X", "learning rate (the child trains with 1e-3 whatever this says)" },
  { "--store", "PATH", "results store" },
  { "--resume", nil, "continue the interrupted run of these options" },
  { "--help", nil, "show this help" },
}
local opts = args.parse(arg, spec)
if opts.help then print(args.usage(spec, "usage: moonbert run tests/spec/faults/trial.lua [options]")) os.exit(0) end
local child = arg[0]:gsub("trial%.lua$", "child.lua")
arg = { [0] = child, opts.work, "-", opts.out, "store=" .. opts.store, "sleep=" .. opts.sleep,
        opts.resume and "resume=1" or nil }
dofile(child)
