// The inference worker's HTTP surface (Hummingbird 2):
//
//   POST /v1/predict   {"rows": [...]} | {"instances": [...]}  →  {"model_version", "step", "probabilities"}
//   GET  /v1/model     the version being served (version, step, samples_trained, metrics, loaded_at, directory)
//   GET  /v1/popular?n=N   the feature store's real-time popular items (n 1…1000, default 10) →
//                      {"items": [{"item", "count"}], "window_start", "window_end", "window_seconds",
//                      "slide_seconds", "watermark", "late_events"}; read from Redis off the request
//                      threads (FeatureStoreClient); 503 when Redis is down or slow, or not configured
//   GET  /healthz      200 while the process is up
//   GET  /readyz       200 once a model is loaded, 503 before
//   GET  /metrics      Prometheus text
//
// Every refusal is a JSON `{"error": "..."}` with a 4xx/5xx status; no input can crash the server.
import Foundation
import FeatureStore
import Features
import Hummingbird
import HummingbirdCore
import NIOCore
import ServiceLifecycle

/// Settings of one `streamrec serve` process.
public struct ServeSettings: Sendable {
    public var checkpoints: URL
    public var host: String
    public var port: Int
    public var limits: PredictLimits
    public var pollInterval: Duration
    public var timeouts: ConnectionTimeouts
    /// The feature store behind `/v1/popular`; nil: no Redis (the route answers 503).
    public var featureStore: FeatureStoreSettings?

    public init(checkpoints: URL, host: String = "127.0.0.1", port: Int = 8080,
                limits: PredictLimits = PredictLimits(), pollInterval: Duration = .milliseconds(200),
                timeouts: ConnectionTimeouts = ConnectionTimeouts(), featureStore: FeatureStoreSettings? = nil) {
        self.checkpoints = checkpoints
        self.host = host
        self.port = port
        self.limits = limits
        self.pollInterval = pollInterval
        self.timeouts = timeouts
        self.featureStore = featureStore
    }
}

/// Per-request data: when the request arrived (for the latency histogram).
///
/// ```swift
/// let router = Router(context: ServingRequestContext.self)
/// ```
public struct ServingRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public let receivedAt: ContinuousClock.Instant

    public init(source: Source) {
        coreContext = .init(source: source)
        receivedAt = .now
    }
}

/// Everything the routes share: the model slot, the counters, the limits and the feature store.
public struct ServingState: Sendable {
    public let slot: ModelSlot
    public let metrics: ServingMetrics
    public let limits: PredictLimits
    /// Nil when serve runs without Redis.
    public let featureStore: FeatureStoreClient?

    public init(slot: ModelSlot = ModelSlot(), metrics: ServingMetrics = ServingMetrics(), limits: PredictLimits = PredictLimits(),
                featureStore: FeatureStoreClient? = nil) {
        self.slot = slot
        self.metrics = metrics
        self.limits = limits
        self.featureStore = featureStore
    }
}

/// Records one count and one latency sample per request, labelled with the endpoint (known
/// routes only, so odd paths cannot blow up the label set) and the final status code.
struct MetricsMiddleware: RouterMiddleware {
    typealias Context = ServingRequestContext
    static let endpoints: Set<String> = ["/v1/predict", "/v1/model", "/v1/popular", "/healthz", "/readyz", "/metrics"]
    let metrics: ServingMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let path = request.uri.path
        let endpoint = Self.endpoints.contains(path) ? path : "other"
        do {
            let response = try await next(request, context)
            metrics.recordRequest(endpoint: endpoint, status: response.status.code,
                                  seconds: (ContinuousClock.now - context.receivedAt).seconds)
            return response
        } catch let error as HTTPResponseError {
            metrics.recordRequest(endpoint: endpoint, status: error.status.code,
                                  seconds: (ContinuousClock.now - context.receivedAt).seconds)
            throw error
        } catch {
            metrics.recordRequest(endpoint: endpoint, status: 500, seconds: (ContinuousClock.now - context.receivedAt).seconds)
            throw error
        }
    }
}

/// Builds the router: routes, JSON errors and metrics.
public func buildServingRouter(state: ServingState) -> Router<ServingRequestContext> {
    let router = Router(context: ServingRequestContext.self)
    router.add(middleware: MetricsMiddleware(metrics: state.metrics))

    router.post("/v1/predict") { request, context -> Response in
        await predict(request, state: state)
    }
    router.get("/v1/model") { _, _ -> Response in
        guard let model = state.slot.current else { return noModel() }
        return json(200, modelInfo(model))
    }
    router.get("/v1/popular") { request, _ -> Response in
        await popular(request, state: state)
    }
    router.get("/healthz") { _, _ -> Response in
        json(200, ["status": "ok"])
    }
    router.get("/readyz") { _, _ -> Response in
        if let model = state.slot.current {
            return json(200, ["status": "ready", "model_version": model.version])
        }
        return json(503, ["status": "not ready", "error": "no model loaded yet: waiting for a checkpoint to appear"])
    }
    router.get("/metrics") { _, _ -> Response in
        var headers = HTTPFields()
        headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
        return Response(status: .ok, headers: headers,
                        body: .init(byteBuffer: ByteBuffer(string: state.metrics.render(model: state.slot.current))))
    }
    return router
}

/// The whole server: router, checkpoint watcher (a service), bound address.
public func buildServingApplication(settings: ServeSettings, state: ServingState? = nil,
                                    log: @escaping @Sendable (String) -> Void = serveLog)
    -> (app: some ApplicationProtocol, state: ServingState, watcher: CheckpointWatcher) {
    let state = state ?? ServingState(limits: settings.limits,
                                      featureStore: settings.featureStore.map { FeatureStoreClient(settings: $0, log: log) })
    let watcher = CheckpointWatcher(root: settings.checkpoints, slot: state.slot, metrics: state.metrics,
                                    workspaceRows: settings.limits.maxRows, pollInterval: settings.pollInterval, log: log)
    let timeouts = settings.timeouts, metrics = state.metrics
    let http1 = HTTP1Channel.Configuration(
        additionalChannelHandlers: [RequestReadTimeoutHandler(timeouts: timeouts) { phase in
            metrics.recordTimedOutConnection(phase: phase.rawValue)
        }],
        idleTimeout: TimeAmount(timeouts.idle))
    var app = Application(router: buildServingRouter(state: state), server: .http1(configuration: http1),
                          configuration: .init(address: .hostname(settings.host, port: settings.port),
                                               serverName: "streamrec-serve"))
    app.addServices(watcher)
    return (app, state, watcher)
}

/// Runs the server until asked to stop (graceful shutdown: in-flight requests finish).
/// `waitForShutdown` is called on a thread of its own and blocks until the server should stop
/// (the CLI waits for SIGINT/SIGTERM through `Streaming.ShutdownSignals`, the mechanism every
/// streamrec command shares); when it returns, the service group shuts down gracefully.
public func runServingServer(settings: ServeSettings, waitForShutdown: @escaping @Sendable () -> Void) async throws {
    let (app, state, _) = buildServingApplication(settings: settings)
    if let store = state.featureStore {
        // One PING at start so the log says at once whether the feature store answers (an
        // outage is logged by the client itself).
        Task {
            do throws(FeatureStoreClientError) {
                try await store.ping()
                serveLog("feature store Redis at \(store.settings.address) answers (prefix \(store.settings.prefix))")
            } catch .unavailable {
            } catch {
                serveLog("feature store Redis at \(store.settings.address): \(error)")
            }
        }
    }
    var configuration = ServiceGroupConfiguration(services: [app], gracefulShutdownSignals: [], logger: app.logger)
    // Requests still being received are bounded by shutdownGrace (RequestReadTimeoutHandler); this
    // bounds everything else (a slow response, a client that never reads): after it, the server
    // is cancelled and its connections closed.
    configuration.maximumGracefulShutdownDuration = settings.timeouts.shutdown
    let group = ServiceGroup(configuration: configuration)
    let waiter = Thread {
        waitForShutdown()
        Task { await group.triggerGracefulShutdown() }
    }
    waiter.name = "serve-shutdown"
    waiter.start()
    try await group.run()
}

// MARK: - Handlers

func predict(_ request: Request, state: ServingState) async -> Response {
    var request = request
    // A declared length over the limit is refused before any of the body is read; the response
    // closes the connection (RequestReadTimeoutHandler) so the body is never waited for.
    if let declared = request.headers[.contentLength], let length = Int(declared), length > state.limits.maxBodyBytes {
        var response = errorResponse(RequestError(413, "request body of \(length) bytes (Content-Length) is larger than \(state.limits.maxBodyBytes) bytes (--max-body-bytes); send fewer rows per request"))
        response.headers[.connection] = "close"
        return response
    }
    let body: ByteBuffer
    do {
        body = try await request.collectBody(upTo: state.limits.maxBodyBytes)
    } catch let error as HTTPResponseError where error.status == .contentTooLarge {
        return errorResponse(RequestError(413, "request body is larger than \(state.limits.maxBodyBytes) bytes (--max-body-bytes); send fewer rows per request"))
    } catch {
        return errorResponse(RequestError(400, "could not read the request body: \(error)"))
    }
    // Take the model before parsing so one request sees one version from start to end.
    guard let model = state.slot.current else { return noModel() }
    let rows: [CriteoRow]
    do {
        rows = try PredictRequest.parse(body.readableBytesView, limits: state.limits)
    } catch {
        return errorResponse(error)
    }
    let probabilities = model.predict(rows: rows)
    state.metrics.recordRows(rows.count)
    var out = "{\"model_version\":\"\(model.version)\",\"step\":\(model.step),\"probabilities\":["
    out.reserveCapacity(out.utf8.count + probabilities.count * 12)
    for (i, p) in probabilities.enumerated() {
        if i > 0 { out += "," }
        out += p.isFinite ? "\(p)" : "null"
    }
    out += "]}"
    return rawJSON(200, out)
}

/// `GET /v1/popular?n=N`: validates n, then reads the popular items through the off-thread client.
func popular(_ request: Request, state: ServingState) async -> Response {
    var n = 10
    if let text = request.uri.queryParameters.get("n") {
        guard let value = Int(text), (1...1000).contains(value) else {
            return errorResponse(RequestError(400, "n must be an integer in 1…1000 (default 10), got '\(text)'"))
        }
        n = value
    }
    guard let store = state.featureStore else {
        return unavailable("no feature store configured: start serve with --redis HOST:PORT (or $STREAMREC_REDIS, "
                           + "or a redis: section with address in --config) to serve /v1/popular")
    }
    do throws(FeatureStoreClientError) {
        return json(200, PopularResponse(try await store.popularItems(n: n)))
    } catch .failed(let message) {
        return json(500, ["error": "feature store read failed: \(message)"])
    } catch {
        return unavailable("feature store unavailable: \(error)")
    }
}

/// The body of `/v1/popular`: `streamrec popular --json`'s fields in snake_case; absent values
/// (nothing counted yet) are null.
struct PopularResponse: Encodable {
    let popular: PopularItems

    init(_ popular: PopularItems) { self.popular = popular }

    enum CodingKeys: String, CodingKey {
        case items, window_start, window_end, window_seconds, slide_seconds, watermark, late_events
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(popular.items, forKey: .items)
        try c.encode(popular.windowStart, forKey: .window_start)
        try c.encode(popular.windowEnd, forKey: .window_end)
        try c.encode(popular.windowSeconds, forKey: .window_seconds)
        try c.encode(popular.slideSeconds, forKey: .slide_seconds)
        try c.encode(popular.watermark, forKey: .watermark)
        try c.encode(popular.lateEvents, forKey: .late_events)
    }
}

/// 503 with `Retry-After: 1`.
func unavailable(_ message: String) -> Response {
    var response = json(503, ["error": message])
    response.headers[.retryAfter] = "1"
    return response
}

struct ModelInfo: Encodable {
    let model_version: String
    let step: Int
    let samples_trained: Int
    let metrics: [String: Double]
    let loaded_at: String
    let load_seconds: Double
    let directory: String
    let model_bytes: Int
}

func modelInfo(_ m: ServingModel) -> ModelInfo {
    ModelInfo(model_version: m.version, step: m.step, samples_trained: m.samplesTrained,
              metrics: m.metrics.filter { $0.value.isFinite }, loaded_at: ISO8601DateFormatter().string(from: m.loadedAt),
              load_seconds: m.loadSeconds, directory: m.directory.path, model_bytes: m.modelFileBytes)
}

func noModel() -> Response {
    json(503, ["error": "no model loaded yet: the server is waiting for a checkpoint to appear in its --checkpoints directory"])
}

func errorResponse(_ e: RequestError) -> Response {
    var object = ["error": e.message]
    if let reason = e.reason { object["reason"] = reason }
    return json(e.status, object)
}

func json(_ status: Int, _ value: some Encodable) -> Response {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    let data = (try? encoder.encode(value)) ?? Data("{\"error\":\"could not encode the response\"}".utf8)
    return rawJSON(status, String(decoding: data, as: UTF8.self))
}

func rawJSON(_ status: Int, _ text: String) -> Response {
    var headers = HTTPFields()
    headers[.contentType] = "application/json"
    return Response(status: HTTPResponse.Status(code: status), headers: headers,
                    body: .init(byteBuffer: ByteBuffer(string: text)))
}
