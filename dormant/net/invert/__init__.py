"""Finding the input behind a target digest: fast batched hashes, candidate spaces, word lists and
the parallel, resumable preimage search."""
