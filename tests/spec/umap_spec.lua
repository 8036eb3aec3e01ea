-- umap_spec.lua: the mb.umap Lua surface (fit_transform, trustworthiness, pca, make_blobs)
-- and its argument errors. The algorithm itself is tested in tests/c/test_umap.c.
local mb = require "moonbert"
local T = mb.tensor

local function max_abs_diff(a, b) return (a - b):abs():max() end

-- The function name in "bad argument" messages depends on how Lua found it
-- ('fit_transform' or 'moonbert.umap.fit_transform'): match the rest exactly.
local function assert_argerror(fn, arg, name, detail)
  local ok, msg = pcall(fn)
  assert.is_false(ok, "expected an error")
  local head = ("bad argument #%d to '"):format(arg)
  local tail = name .. "' (" .. detail .. ")"
  local at = msg:find(head, 1, true)
  assert.truthy(at, msg)
  assert.equal(#msg - #tail + 1, msg:find(tail, at, true), msg)
end

describe("mb.umap", function()
  -- 6 clusters in 30-D: separable by neighbours, overlapping in 2-D projections.
  local X, labels = mb.umap.make_blobs(360, 30, 6, { seed = 3, center_box = 1.0 })

  it("make_blobs gives seeded float32 data and 0-based labels", function()
    assert.same({ 360, 30 }, X:shape())
    assert.equal("float32", X:dtype())
    assert.equal("int32", labels:dtype())
    assert.equal(0, labels:min())
    assert.equal(5, labels:max())
    local X2 = mb.umap.make_blobs(360, 30, 6, { seed = 3, center_box = 1.0 })
    assert.equal(0, max_abs_diff(X, X2))
    local X3 = mb.umap.make_blobs(360, 30, 6, { seed = 4, center_box = 1.0 })
    assert.is_true(max_abs_diff(X, X3) > 0)
  end)

  it("fit_transform returns [N,2] and is deterministic for a seed", function()
    local Y, info = mb.umap.fit_transform(X, { n_epochs = 100, seed = 7, metric = "euclidean" })
    assert.same({ 360, 2 }, Y:shape())
    assert.equal("float32", Y:dtype())
    assert.equal(100, info.n_epochs)
    assert.equal("spectral", info.init)
    assert.is_true(info.n_edges > 0)
    assert.near(1.577, info.a, 1e-3)
    assert.near(0.895, info.b, 1e-3)
    local Y2 = mb.umap.fit_transform(X, { n_epochs = 100, seed = 7, metric = "euclidean" })
    assert.equal(0, max_abs_diff(Y, Y2))
    local Y3 = mb.umap.fit_transform(X, { n_epochs = 100, seed = 8, metric = "euclidean" })
    assert.is_true(max_abs_diff(Y, Y3) > 0)
  end)

  it("keeps neighbourhoods better than PCA on clustered data", function()
    local Y = mb.umap.fit_transform(X, { seed = 42, metric = "euclidean" })
    local P = mb.umap.pca(X, 2)
    local tu = mb.umap.trustworthiness(X, Y, { n_neighbors = 5 })
    local tp = mb.umap.trustworthiness(X, P, { n_neighbors = 5 })
    assert.is_true(tu > 0.9, "UMAP trustworthiness " .. tu)
    assert.is_true(tu > tp, ("UMAP %.4f vs PCA %.4f"):format(tu, tp))
  end)

  it("supports n_components, the cosine metric and every init", function()
    for _, init in ipairs { "spectral", "pca", "random" } do
      local Y, info = mb.umap.fit_transform(X, { n_components = 3, n_epochs = 50, init = init })
      assert.same({ 360, 3 }, Y:shape())
      assert.equal(init, info.init)
      assert.is_true(Y:abs():max() < 1e6)
    end
  end)

  it("accepts nested tables", function()
    local rows = {}
    for i = 1, 40 do rows[i] = { math.sin(i), math.cos(i), i / 40 } end
    local Y = mb.umap.fit_transform(rows, { n_neighbors = 5, n_epochs = 20 })
    assert.same({ 40, 2 }, Y:shape())
  end)

  it("trustworthiness is 1 for the identity and lower for noise", function()
    assert.near(1.0, mb.umap.trustworthiness(X, X), 1e-12)
    local noise = T.randn({ 360, 2 }, { seed = 1 })
    assert.is_true(mb.umap.trustworthiness(X, noise) < 0.7)
  end)

  it("pca returns scores, orthonormal components and descending variances", function()
    local S, C, V = mb.umap.pca(X, 3)
    assert.same({ 360, 3 }, S:shape())
    assert.same({ 3, 30 }, C:shape())
    assert.same({ 3 }, V:shape())
    local G = C:matmul(C:transpose())
    for i = 1, 3 do
      for j = 1, 3 do assert.near(i == j and 1 or 0, G[i][j], 1e-5) end
    end
    assert.is_true(V[1] >= V[2] and V[2] >= V[3])
    -- the scores' variance is the explained variance
    local col = S:narrow(2, 1, 1)
    assert.near(V[1], (col * col):sum() / 359, 1e-3 * V[1])
  end)

  describe("errors", function()
    it("rejects wrong shapes", function()
      assert_argerror(function() mb.umap.fit_transform(T.zeros { 10 }) end, 1, "fit_transform",
        "non-empty 2-D matrix [N,D] expected, got shape [10]")
      assert_argerror(function() mb.umap.fit_transform("x") end, 1, "fit_transform",
        "table or moonbert.Tensor expected, got string")
      assert_argerror(function() mb.umap.pca(T.zeros { 5, 3 }, 4) end, 2, "pca",
        "k (4) must be between 1 and min(N, D) = 3")
      assert_argerror(function() mb.umap.trustworthiness(X, T.zeros { 10, 2 }) end, 2, "trustworthiness",
        "Y has 10 rows but X has 360")
    end)

    it("rejects n_neighbors >= N", function()
      local small = mb.umap.make_blobs(10, 3, 2)
      assert_argerror(function() mb.umap.fit_transform(small, { n_neighbors = 10 }) end, 2, "fit_transform",
        "umap: n_neighbors (10) must be less than the number of rows (10)")
      assert_argerror(function() mb.umap.trustworthiness(small, small, { n_neighbors = 5 }) end, 3, "trustworthiness",
        "trustworthiness: n_neighbors (5) must be at least 1 and less than N/2 (N = 10)")
    end)

    it("rejects NaN input, naming the row", function()
      local bad = X:clone()
      bad:set(4, 2, 0 / 0)
      local ok, msg = pcall(mb.umap.fit_transform, bad)
      assert.is_false(ok)
      assert.matches("bad argument #1 .*non%-finite value %(%-?nan%) at row 3, column 1 %(0%-based%)", msg)
    end)

    it("rejects unknown or invalid options", function()
      assert_argerror(function() mb.umap.fit_transform(X, { n_neighbours = 5 }) end, 2, "fit_transform",
        "unknown option 'n_neighbours' (known: n_neighbors, n_components, min_dist, spread, metric, n_epochs, " ..
        "learning_rate, negative_sample_rate, repulsion_strength, local_connectivity, set_op_mix_ratio, init, seed, verbose)")
      assert_argerror(function() mb.umap.fit_transform(X, { metric = "manhattan" }) end, 2, "fit_transform",
        "metric must be 'cosine' or 'euclidean', got 'manhattan'")
      assert_argerror(function() mb.umap.fit_transform(X, { init = "tsne" }) end, 2, "fit_transform",
        "init must be 'spectral', 'pca' or 'random', got 'tsne'")
      assert_argerror(function() mb.umap.fit_transform(X, { min_dist = 2 }) end, 2, "fit_transform",
        "umap: need spread > 0 and 0 <= min_dist <= spread, got min_dist 2, spread 1")
      assert_argerror(function() mb.umap.fit_transform(X, { n_epochs = 0 }) end, 2, "fit_transform",
        "n_epochs must be a positive integer")
      assert_argerror(function() mb.umap.fit_transform(X, { n_components = 0 }) end, 2, "fit_transform",
        "n_components (0) must be between 1 and N-1 (359)")
      assert_argerror(function() mb.umap.fit_transform(X, { n_neighbors = 2.5 }) end, 2, "fit_transform",
        "field 'n_neighbors' must be an integer")
    end)
  end)
end)
