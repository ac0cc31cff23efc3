// `GET /metrics` for processes that have no HTTP server of their own (featurize, the trainer's
// rank 0): a tiny Hummingbird app on its own task, beside a main thread that runs a worker loop
// or MPI. It installs no signal handling: the process's own `ShutdownSignals` decides when to
// stop, and the server ends with the process.
import Foundation
import Hummingbird
import Logging
import NIOCore

public enum MetricsEndpoint {
    public struct StartError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Starts serving `registry` on `host:port` (0 = any free port) and returns the bound port once
    /// the server listens. Throws, with what to do, when it cannot bind within `timeout`.
    @discardableResult
    public static func start(registry: MetricsRegistry, host: String = "127.0.0.1", port: Int,
                             timeout: Duration = .seconds(10)) throws -> Int {
        let router = Router()
        router.get("/metrics") { _, _ -> Response in
            var headers = HTTPFields()
            headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: registry.render())))
        }
        let bound = BoundPort()
        var logger = Logger(label: "streamrec.metrics")
        logger.logLevel = .warning   // no "server started" line on the process's stdout
        let app = Application(router: router, configuration: .init(address: .hostname(host, port: port), serverName: "streamrec-metrics"),
                              onServerRunning: { channel in bound.set(.success(channel.localAddress?.port ?? port)) },
                              logger: logger)
        Task.detached {
            do { try await app.run() } catch { bound.set(.failure(error)) }
        }
        switch bound.wait(timeout: timeout) {
        case .success(let p)?: return p
        case .failure(let error)?:
            throw StartError(description: "cannot serve metrics on \(host):\(port): \(error). Pick a free port with --metrics-port (0 = any free port)")
        case nil:
            throw StartError(description: "the metrics endpoint on \(host):\(port) did not start within \(timeout)")
        }
    }
}

/// The bound port (or the failure), handed from the server's task to the starting thread.
private final class BoundPort: @unchecked Sendable {
    private let condition = NSCondition()
    private var result: Result<Int, any Error>? = nil

    func set(_ r: Result<Int, any Error>) {
        condition.lock(); defer { condition.unlock() }
        if result == nil { result = r }
        condition.broadcast()
    }

    func wait(timeout: Duration) -> Result<Int, any Error>? {
        let deadline = Date().addingTimeInterval(Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18)
        condition.lock(); defer { condition.unlock() }
        while result == nil, condition.wait(until: deadline) {}
        return result
    }
}
