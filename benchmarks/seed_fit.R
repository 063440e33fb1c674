# The seed document's R/dplyr code, timed as the seed times it (the fit only, warm runs).
suppressPackageStartupMessages(library(dplyr))
gen_data = function(n = 500000, mu = c(0, 2), sigma = 1, pi = 0.8) {
  tibble(Obs.ID = 1:n, Z = (runif(n) > pi) + 1, Y = rnorm(n = n, mean = mu[Z], sd = sigma)) |>
    select(-Z) |>
    mutate(`p(Y=y|Z=1)` = dnorm(Y, mu[1], sd = sigma), `p(Y=y|Z=2)` = dnorm(Y, mu[2], sd = sigma))
}
E_step = function(data, `p(Z=1)`) {
  data |> mutate(
    `p(Y=y, Z=1)` = `p(Y=y|Z=1)` * `p(Z=1)`,
    `p(Y=y, Z=2)` = `p(Y=y|Z=2)` * (1 - `p(Z=1)`),
    `p(Y=y)` = `p(Y=y, Z=1)` + `p(Y=y, Z=2)`,
    `p(Z=1|Y=y)` = `p(Y=y, Z=1)` / `p(Y=y)`)
}
M_step = function(data) data |> pull(`p(Z=1|Y=y)`) |> mean()
loglik = function(data) data |> pull(`p(Y=y)`) |> log() |> sum()
fit_model = function(data, `p(Z=1)` = 0.5, tolerance = 0.00001, max_iterations = 1000) {
  data = data |> E_step(`p(Z=1)` = `p(Z=1)`)
  ll = loglik(data)
  for (i in 1:max_iterations) {
    `p(Z=1)` = data |> M_step()
    data = data |> E_step(`p(Z=1)` = `p(Z=1)`)
    ll_old = ll
    ll = loglik(data)
    if (ll - ll_old < tolerance) break
  }
  i
}
set.seed(1)
data = gen_data()
iterations = NA
times = sapply(1:4, function(k) system.time(iterations <<- fit_model(data))[["elapsed"]])
cat(sprintf("first=%.6f warm=%.6f iterations=%d\n", times[1], median(times[-1]), iterations))
