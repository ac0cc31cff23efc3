import ArgumentParser
import Foundation
import Logging
import Observability

/// `--metrics-port` and `--metrics-host` of the commands without an HTTP server of their own
/// (featurize, train): GET /metrics on a small endpoint beside the worker loop or MPI.
struct MetricsOptions: ParsableArguments {
    @Option(help: "Serve GET /metrics (Prometheus text) on this port; 0 = any free port, announced in the log. Default: off (featurize: featurize.metrics_port in --config).")
    var metricsPort: Int?

    @Option(help: "Address the metrics endpoint binds. Default 127.0.0.1 (this host only).")
    var metricsHost: String = "127.0.0.1"

    func validate() throws {
        if let metricsPort, !(0...65535).contains(metricsPort) { throw ValidationError("--metrics-port must be in 0…65535 (0 = any free port), got \(metricsPort)") }
    }

    /// Bootstraps swift-metrics with the process's Prometheus registry and serves it on `port`
    /// (when given); logs where, `metrics on http://HOST:PORT/metrics`. Call before the worker's
    /// metrics are created (they bind to the backend at creation).
    @discardableResult
    func start(port: Int?, logger: Logger) throws -> Int? {
        guard let port else { return nil }
        guard (0...65535).contains(port) else { throw ValidationError("metrics port must be in 0…65535 (0 = any free port), got \(port)") }
        let bound: Int
        do { bound = try MetricsEndpoint.start(registry: .process, host: metricsHost, port: port) } catch { throw CLIError("\(error)") }
        logger.info("metrics on http://\(metricsHost):\(bound)/metrics")
        return bound
    }
}
