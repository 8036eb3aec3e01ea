-- moonbert bench umap: seconds per UMAP stage on synthetic clustered data.
--
-- 16,000 x 768 float32 rows (the size of the emotion training set's [CLS]
-- features) in 6 seeded Gaussian clusters, umap-learn's defaults (cosine,
-- 15 neighbours, spectral init, 200 epochs for N > 10000). --quick uses
-- 2,000 x 768. Also times PCA and reports the trustworthiness (5 neighbours)
-- of both embeddings, so that a faster build which lays out worse shows.
-- cpu_seconds_umap is the process CPU time of the UMAP fit (all threads) and
-- load_average the machine's 1-minute load when it finished: on a shared
-- machine wall seconds alone say little.
local M = { summary = "UMAP of 16,000 x 768 clustered rows: seconds per stage (--quick: 2,000 rows)" }

function M.run(opts)
  local mb = require "moonbert"
  local umap = mb.umap
  local n, d, clusters = opts.quick and 2000 or 16000, 768, 6
  local X = umap.make_blobs(n, d, clusters, { seed = 42, center_box = 0.35 })
  local cpu0 = os.clock()
  local Y, info = umap.fit_transform(X, { seed = 42 })
  local cpu_umap = os.clock() - cpu0
  local load
  local f = io.open("/proc/loadavg")
  if f then load = tonumber(f:read("l"):match("^(%S+)")); f:close() end
  local t0 = umap.clock()
  local P = umap.pca(X, 2)
  local seconds_pca = umap.clock() - t0
  t0 = umap.clock()
  local trust_umap = umap.trustworthiness(X, Y, { n_neighbors = 5, metric = "cosine" })
  local trust_pca = umap.trustworthiness(X, P, { n_neighbors = 5, metric = "cosine" })
  local seconds_trust = (umap.clock() - t0) / 2
  return {
    n = n, d = d, clusters = clusters, metric = "cosine", n_neighbors = 15, init = info.init,
    seconds_knn = info.seconds_knn, seconds_graph = info.seconds_graph,
    seconds_init = info.seconds_init, seconds_layout = info.seconds_layout,
    seconds_total = info.seconds_total, n_epochs = info.n_epochs, n_edges = info.n_edges,
    graph_components = info.graph_components, seconds_pca = seconds_pca,
    seconds_trustworthiness = seconds_trust, trustworthiness_umap = trust_umap,
    trustworthiness_pca = trust_pca, cpu_seconds_umap = cpu_umap, load_average = load,
  }
end

return M
