# R mixtools normalmixEM on many small datasets (full model, fixed start, tolerance 1e-5).
args = commandArgs(trailingOnly = TRUE)
data = as.matrix(read.csv(args[1], header = FALSE))
suppressPackageStartupMessages(library(mixtools))
start = as.numeric(strsplit(args[2], ",")[[1]])  # pi, mu1, mu2, sigma1, sigma2
elapsed = system.time(for (r in seq_len(nrow(data))) {
  invisible(capture.output(normalmixEM(data[r, ], lambda = c(start[1], 1 - start[1]),
    mu = start[2:3], sigma = start[4:5], epsilon = 1e-5, maxit = 1000)))
})[["elapsed"]]
cat(sprintf("per_fit=%.9f\n", elapsed / nrow(data)))
