// Inference worker: hot-reloading HTTP server.
