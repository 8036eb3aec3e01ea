-- mlm_collator_spec.lua: mb.mlm.collator, the masking rule of HF's DataCollatorForLanguageModeling:
-- each token that is neither special nor padding is chosen with probability 0.15; chosen tokens
-- become [MASK] (80%), a random id (10%) or stay (10%); labels are the original id there and -100
-- elsewhere; the seeded RNG makes it reproducible and its state resumes the stream.
-- Proportions are checked over ~100k eligible tokens against 5-sigma binomial bounds.
local mb = require "moonbert"

local V, MASK, PAD, CLS, SEP, UNK = 30522, 103, 0, 101, 102, 100
local SPEC = { mask_id = MASK, vocab_size = V, special_ids = { PAD, UNK, CLS, SEP, MASK } }

-- a padded batch [B,T]: [CLS] w... [SEP] [PAD]...; lengths vary; returns batch and the id table
local function make_batch(B, T, seed)
  local rng = mb.tensor.rand({ B, T }, { seed = seed }):totable()
  local ids, mask = {}, {}
  for b = 1, B do
    local len = T - (b * 7) % 9 -- mostly long texts, some padding
    ids[b], mask[b] = {}, {}
    for t = 1, T do
      local id
      if t == 1 then id = CLS elseif t == len then id = SEP elseif t > len then id = PAD
      else id = 999 + math.floor(rng[b][t] * (V - 999)) end
      if t == 5 and t < len then id = UNK end -- an [UNK] inside the text: special, never masked
      ids[b][t], mask[b][t] = id, t <= len and 1 or 0
    end
  end
  return { input_ids = mb.tensor(ids, { dtype = "int32" }), attention_mask = mb.tensor(mask, { dtype = "int32" }) },
    ids, mask
end

local function within(count, n, p, what)
  local mean, sd = n * p, math.sqrt(n * p * (1 - p))
  assert(math.abs(count - mean) <= 5 * sd,
    string.format("%s: %d of %d, expected %.1f +- %.1f (5 sigma)", what, count, n, mean, 5 * sd))
end

describe("mb.mlm.collator", function()
  it("masks 15% of eligible tokens, 80/10/10, never specials or padding, labels -100 elsewhere", function()
    local col = mb.mlm.collator(SPEC, { seed = 1 })
    local eligible, chosen, masked, random, kept = 0, 0, 0, 0, 0
    for draw = 1, 15 do
      local batch, ids, am = make_batch(64, 64, draw)
      local out = col:mask(batch)
      local x, y = out.input_ids:totable(), out.labels:totable()
      local n_draw = 0
      for b = 1, 64 do
        for t = 1, 64 do
          local orig = ids[b][t]
          local special = orig == PAD or orig == CLS or orig == SEP or orig == UNK or am[b][t] == 0
          if special then
            assert.are.equal(-100, y[b][t])
            assert.are.equal(orig, x[b][t])
          else
            eligible = eligible + 1
            if y[b][t] ~= -100 then
              assert.are.equal(orig, y[b][t])
              chosen, n_draw = chosen + 1, n_draw + 1
              if x[b][t] == MASK then masked = masked + 1
              elseif x[b][t] == orig then kept = kept + 1
              else random = random + 1; assert.is_true(x[b][t] >= 0 and x[b][t] < V) end
            else
              assert.are.equal(orig, x[b][t])
            end
          end
        end
      end
      assert.are.equal(n_draw, out.n_masked)
      assert.is_true(rawequal(batch.attention_mask, out.attention_mask))
    end
    assert.is_true(eligible > 50000)
    within(chosen, eligible, 0.15, "chosen")
    within(masked, chosen, 0.8, "[MASK]")
    within(random, chosen, 0.1 * (1 - 1 / V), "random")
    within(kept, chosen, 0.1 + 0.1 / V, "unchanged")
  end)

  it("same seed, same masks; another seed, other masks; state() resumes the stream", function()
    local batch = make_batch(16, 32, 3)
    local a, b, c = mb.mlm.collator(SPEC, { seed = 5 }), mb.mlm.collator(SPEC, { seed = 5 }),
      mb.mlm.collator(SPEC, { seed = 6 })
    local la, lb, lc = a:mask(batch).labels, b:mask(batch).labels, c:mask(batch).labels
    assert.are.equal(0, (la - lb):abs():max())
    assert.is_true((la - lc):abs():max() > 0)
    local saved = a:state()
    local next1 = a:mask(batch)
    local d = mb.mlm.collator(SPEC, { seed = 99 })
    d:set_state(saved)
    local next2 = d:mask(batch)
    assert.are.equal(0, (next1.labels - next2.labels):abs():max())
    assert.are.equal(0, (next1.input_ids - next2.input_ids):abs():max())
    assert.is_true((next1.labels - la):abs():max() > 0, "the stream moves on")
  end)

  it("takes its ids from a tokenizer", function()
    local SHARED = os.getenv("MOONBERT_SHARED") or "../shared"
    local dir = SHARED .. "/fixtures/distilbert-mlm-tiny"
    if not io.open(dir .. "/vocab.txt") then
      pending("needs " .. dir)
      return
    end
    local tok = mb.tokenizer.load(dir)
    local col = mb.mlm.collator(tok, { seed = 1, mlm_probability = 1.0 })
    assert.are.equal(MASK, col.mask_id)
    assert.are.equal(V, col.vocab_size)
    local b = tok:encode_batch({ "i feel so happy today", "hi" }, { padding = "longest" })
    local out = col:mask(b)
    local y = out.labels:totable()
    assert.are.equal(-100, y[1][1])     -- [CLS]
    assert.are.equal(-100, y[2][4])     -- padding
    assert.are.equal(b.input_ids[1][2], y[1][2]) -- p = 1: every word token is chosen
  end)

  it("rejects bad arguments", function()
    assert.has_error(function() mb.mlm.collator(SPEC, { mlm_probability = 1.5 }) end)
    local col = mb.mlm.collator(SPEC)
    assert.has_error(function() col:mask({}) end)
    assert.has_error(function() col:set_state("abc") end)
  end)
end)
