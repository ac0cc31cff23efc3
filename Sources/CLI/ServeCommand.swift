import ArgumentParser
import Dispatch
import Foundation
import Streaming
#if canImport(Glibc)
import Glibc
#endif
import Serving
import StreamRecNumerics

/// A byte count typed as `4194304`, `4MiB`, `512KiB`, `1GiB` (also `KB`/`MB`/`GB` = powers of 1000).
struct ByteSize: ExpressibleByArgument, Sendable {
    var bytes: Int

    init(bytes: Int) { self.bytes = bytes }

    init?(argument: String) {
        let units: [(String, Int)] = [("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30),
                                      ("KB", 1000), ("MB", 1_000_000), ("GB", 1_000_000_000), ("B", 1)]
        var text = argument.trimmingCharacters(in: .whitespaces)
        var scale = 1
        for (suffix, factor) in units where text.hasSuffix(suffix) {
            text = String(text.dropLast(suffix.count)).trimmingCharacters(in: .whitespaces)
            scale = factor
            break
        }
        guard let n = Int(text), n > 0, n <= Int.max / scale else { return nil }
        bytes = n * scale
    }

    var defaultValueDescription: String {
        bytes % (1 << 20) == 0 ? "\(bytes >> 20)MiB" : bytes % (1 << 10) == 0 ? "\(bytes >> 10)KiB" : "\(bytes)"
    }
}

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the newest checkpoint over HTTP (click predictions or recommendations), hot-reloading new ones.",
        discussion: """
        Serves whatever model kind the checkpoints hold. Wide&Deep (widedeep): POST /v1/predict with \
        {"rows": ["<Criteo row without label>", …]} or {"instances": [{"I1": 3, "C1": "68fd1e64", …}]} → \
        {"model_version", "step", "probabilities"}. The RL families (reinforce, …): POST /v1/recommend with \
        {"user": "u1", "n": 10} (the user's recent items from the feature store), {"history": ["i1", …], \
        "exclude": [...], "n": 10} (stateless: Redis is not read) or {"requests": [...]} (several users) → \
        {"user", "items": [{"item", "score"}], "source": "model" | "popular", "model_version", "step"}; a user \
        without history gets the real-time popular items. A route of the other family answers 409. \
        Always: GET /v1/model; GET /v1/popular?n=N (the feature store's real-time popular items, n 1…1000, \
        default 10); GET /healthz; GET /readyz (503 until a model is loaded); GET /metrics (Prometheus). \
        The checkpoints directory is polled for a new LATEST; a new version is verified (sha256, \
        structure), loaded and warmed up off the request path, then swapped in atomically. A corrupt \
        or incompatible version, or one of another model kind than the one being served, is refused \
        and counted, and the last good version keeps serving; so is \
        a LATEST that is not a step-<12 digits> name in the root, or a version that resolves outside \
        the root. Idle connections, slow headers and slow or stalled bodies are closed after \
        --idle-timeout, --header-timeout and --body-timeout; a declared Content-Length over \
        --max-body-bytes gets 413 before any body is read. Stops on SIGINT/SIGTERM within \
        --shutdown-timeout (requests in progress finish first if they can).

        Feature store: /v1/popular and the stateful /v1/recommend read Redis only when an address is \
        configured — --redis, $STREAMREC_REDIS or redis.address in the settings file (--config; \
        configs/cluster.yaml if it exists) — and not with --no-feature-store; otherwise serve runs \
        without Redis and those answer 503. Redis is read on the server's own threads, never on a \
        request thread: a read that takes longer than --feature-store-timeout-ms, or any read while \
        Redis is down, answers 503 at once, and the server reconnects by itself when Redis is back. \
        /v1/predict and the stateless /v1/recommend never need Redis.
        """)

    @OptionGroup var settingsFile: SettingsOptions

    @OptionGroup(title: "Feature store (Redis)") var store: RedisOptions
    @OptionGroup(title: "Logging") var logging: LogOptions

    @Option(help: "Milliseconds a feature-store read (/v1/popular, the stateful /v1/recommend) may take, queueing included, before it answers 503.")
    var featureStoreTimeoutMs: Int = 200

    @Flag(help: "Do not connect to the feature store even if a Redis address is configured (/v1/popular and the stateful /v1/recommend answer 503).")
    var noFeatureStore = false

    @Option(name: [.customLong("checkpoints"), .customLong("checkpoint-dir")],
            help: "Checkpoints root to watch (the directory holding LATEST and step-* versions).")
    var checkpoints: String

    @Option(help: "Address to bind (loopback by default; use 0.0.0.0 to accept remote clients).")
    var host: String = "127.0.0.1"

    @Option(help: "TCP port.")
    var port: Int = 8080

    @Option(help: "Most rows (or instances) in one predict request.")
    var maxRows: Int = 1000

    @Option(help: "Most users in one /v1/recommend request ({\"requests\": [...]}).")
    var maxUsers: Int = 100

    @Option(help: "Most item keys in one /v1/recommend history or exclude list.")
    var maxHistory: Int = 1000

    @Option(help: "Largest accepted request body (e.g. 4MiB, 512KiB, 100000).")
    var maxBodyBytes: ByteSize = ByteSize(bytes: 4 << 20)

    @Option(help: "How often to look at LATEST, in milliseconds (at most 1000).")
    var pollIntervalMs: Int = 200

    @Option(help: "Seconds a connection may stay open with no request arriving (keep-alive between requests, or nothing sent).")
    var idleTimeout: Double = 60

    @Option(help: "Seconds from the first byte of a request until its headers are complete; slower clients are disconnected.")
    var headerTimeout: Double = 10

    @Option(help: "Seconds from the headers until the whole request body has arrived; slower or stalled bodies are disconnected.")
    var bodyTimeout: Double = 30

    @Option(help: "Seconds a SIGTERM/SIGINT waits for requests in progress before closing every connection.")
    var shutdownTimeout: Double = 5

    func validate() throws {
        if !(1...65535).contains(port) && port != 0 { throw ValidationError("--port must be 0…65535") }
        if maxRows < 1 { throw ValidationError("--max-rows must be at least 1") }
        if maxUsers < 1 { throw ValidationError("--max-users must be at least 1") }
        if maxHistory < 1 { throw ValidationError("--max-history must be at least 1") }
        if !(1...60_000).contains(featureStoreTimeoutMs) { throw ValidationError("--feature-store-timeout-ms must be 1…60000") }
        if !(1...1000).contains(pollIntervalMs) { throw ValidationError("--poll-interval-ms must be 1…1000 (new versions are noticed within a second)") }
        for (name, value) in [("--idle-timeout", idleTimeout), ("--header-timeout", headerTimeout),
                              ("--body-timeout", bodyTimeout), ("--shutdown-timeout", shutdownTimeout)]
        where !(value > 0 && value <= 86_400) {
            throw ValidationError("\(name) must be more than 0 and at most 86400 seconds")
        }
    }

    func run() throws {
        let logger = try logging.start("serve", tag: "serve:")
        let featureStore = try featureStoreSettings()
        let signals = ShutdownSignals.install()
        // One OpenBLAS thread: request concurrency comes from the server's threads. With OpenBLAS's
        // own worker threads, every 1-row GEMM woke them and they spun in sched_yield, doubling the
        // CPU a request costs and competing with the request threads (measured: 6.1 → 3.2 ms CPU
        // per 1-row request on the large config).
        BLAS.setThreads(1)
        // Large freed blocks (a replaced model version) go straight back to the kernel.
        configureAllocatorForServing()
        let settings = ServeSettings(
            checkpoints: URL(fileURLWithPath: checkpoints, isDirectory: true), host: host, port: port,
            limits: RequestLimits(maxRows: maxRows, maxBodyBytes: maxBodyBytes.bytes, maxUsers: maxUsers, maxHistory: maxHistory),
            pollInterval: .milliseconds(pollIntervalMs),
            timeouts: ConnectionTimeouts(idle: .seconds(idleTimeout), header: .seconds(headerTimeout), body: .seconds(bodyTimeout),
                                         shutdownGrace: .seconds(min(1, shutdownTimeout)), shutdown: .seconds(shutdownTimeout)),
            featureStore: featureStore.settings)
        logger.info("watching \(settings.checkpoints.path) every \(pollIntervalMs) ms; listening on http://\(host):\(port)")
        logger.info("\(featureStore.description)")
        let outcome = Outcome()
        let done = DispatchSemaphore(value: 0)
        Task {
            do {
                try await runServingServer(settings: settings, logger: logger) {
                    let sig = signals.wait()
                    logger.info("\(sig.map(ShutdownSignals.name(of:)) ?? "signal") received: finishing in-flight requests, then stopping")
                }
            } catch { outcome.error = error }
            done.signal()
        }
        done.wait()
        if let error = outcome.error { throw error }
        logger.info("stopped")
    }
}

extension Serve {
    /// The feature store behind /v1/popular and the stateful /v1/recommend, by the shared Redis rule; nil unless an address is
    /// configured (flag, environment or settings file — the built-in default does not count) and
    /// --no-feature-store is not given. `description` is the startup log line.
    func featureStoreSettings(environment: [String: String] = ProcessInfo.processInfo.environment) throws
        -> (settings: FeatureStoreSettings?, description: String) {
        let redis = try store.resolve(try settingsFile.load(), environment: environment)
        if noFeatureStore {
            return (nil, "feature store: off (--no-feature-store); /v1/popular and the stateful /v1/recommend answer 503")
        }
        if case .builtin = redis.address.source {
            return (nil, "feature store: off (no --redis, $\(RedisOptions.environmentVariable) or redis.address in a settings file); "
                         + "/v1/popular and the stateful /v1/recommend answer 503")
        }
        let settings = FeatureStoreSettings(address: redis.address.value, prefix: redis.prefix.value,
                                            timeout: .milliseconds(featureStoreTimeoutMs))
        return (settings, "feature store: Redis \(redis.address), prefix \(redis.prefix); /v1/popular and the stateful /v1/recommend read it "
                          + "(timeout \(featureStoreTimeoutMs) ms)")
    }
}

private final class Outcome: @unchecked Sendable {
    var error: (any Error)?
}
