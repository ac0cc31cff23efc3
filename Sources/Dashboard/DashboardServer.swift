// The dashboard's HTTP server (Hummingbird): GET / (the page), GET /dashboard.json (the same
// snapshot as JSON), GET /healthz. A refresher thread of its own gathers a snapshot every
// interval (Redis and serve are read with blocking calls, never on the server's event loops);
// requests render the newest one.

import Foundation
import Logging
import Observability
import Hummingbird
import HummingbirdCore
import NIOCore
import ServiceLifecycle
import Synchronization

public struct DashboardSettings: Sendable {
    public var host = "127.0.0.1"
    public var port = 8090
    /// How often a snapshot is gathered and the page reloads itself.
    public var refreshSeconds = 2
    public var sources: DashboardSources
    public init(sources: DashboardSources) { self.sources = sources }
}

/// Gathers snapshots on its own thread until stopped; `current` is the newest.
public final class DashboardRefresher: Sendable {
    private let state = Mutex<(snapshot: DashboardSnapshot?, stopped: Bool)>((nil, false))
    private let wake = NSCondition()
    private let interval: Double

    /// `collector` is used only on the refresher's thread from here on.
    public init(collector: DashboardCollector, interval: Double) {
        self.interval = interval
        let thread = Thread { [self] in loop(collector) }
        thread.name = "dashboard-refresh"
        thread.start()
    }

    public var current: DashboardSnapshot? { state.withLock { $0.snapshot } }

    /// Waits up to `seconds` for the first snapshot.
    public func waitForFirst(seconds: Double) -> DashboardSnapshot? {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if let s = current { return s }
            Thread.sleep(forTimeInterval: 0.02)
        }
        return current
    }

    public func stop() {
        state.withLock { $0.stopped = true }
        wake.lock(); wake.broadcast(); wake.unlock()
    }

    private func loop(_ collector: DashboardCollector) {
        while !state.withLock({ $0.stopped }) {
            let snapshot = collector.collect()
            state.withLock { $0.snapshot = snapshot }
            wake.lock()
            if !state.withLock({ $0.stopped }) { _ = wake.wait(until: Date().addingTimeInterval(interval)) }
            wake.unlock()
        }
    }
}

/// The router: the page, its JSON, health.
public func buildDashboardRouter(refresher: DashboardRefresher, refreshSeconds: Int) -> Router<BasicRequestContext> {
    let router = Router()
    router.get("/") { _, _ -> Response in
        guard let snapshot = refresher.current else {
            return text(503, #"<!DOCTYPE html><html><head><meta http-equiv="refresh" content="1"></head>"#
                        + "<body>The first snapshot is still being gathered; this page reloads itself.</body></html>\n",
                        type: "text/html; charset=utf-8")
        }
        return text(200, DashboardPage.render(snapshot, refreshSeconds: refreshSeconds), type: "text/html; charset=utf-8")
    }
    router.get("/dashboard.json") { _, _ -> Response in
        guard let snapshot = refresher.current else { return text(503, #"{"error":"no snapshot yet"}"#, type: "application/json") }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        // Not-yet-defined figures (NaN) become null-like strings instead of failing the response.
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
        guard let data = try? encoder.encode(snapshot) else { return text(500, #"{"error":"could not encode the snapshot"}"#, type: "application/json") }
        return text(200, String(decoding: data, as: UTF8.self), type: "application/json")
    }
    router.get("/healthz") { _, _ -> Response in text(200, "ok\n", type: "text/plain; charset=utf-8") }
    return router
}

private func text(_ status: Int, _ body: String, type: String) -> Response {
    var headers = HTTPFields()
    headers[.contentType] = type
    headers[.cacheControl] = "no-store"
    return Response(status: .init(code: status), headers: headers, body: .init(byteBuffer: ByteBuffer(string: body)))
}

/// Runs the dashboard until `waitForShutdown` returns (it blocks on a thread of its own, like
/// serve's: the CLI waits for SIGINT/SIGTERM), then shuts the server down gracefully and stops
/// the refresher.
public func runDashboardServer(settings: DashboardSettings, collector: DashboardCollector, logger: Logger = Logger(label: "dashboard"),
                               waitForShutdown: @escaping @Sendable () -> Void) async throws {
    let refresher = DashboardRefresher(collector: collector, interval: Double(settings.refreshSeconds))
    defer { refresher.stop() }
    let app = Application(router: buildDashboardRouter(refresher: refresher, refreshSeconds: settings.refreshSeconds),
                          configuration: .init(address: .hostname(settings.host, port: settings.port), serverName: "streamrec-dashboard"),
                          logger: logger)
    try await runUntilShutdown(app, maximumGrace: .seconds(5), threadName: "dashboard-shutdown", waitForShutdown: waitForShutdown)
}
