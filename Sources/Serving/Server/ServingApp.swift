// The inference worker's HTTP surface (Hummingbird 2). The model families contribute their routes
// (`ServableFamily.routes`); a family's route answers 409 while another family's kind is served:
//
//   POST /v1/predict   Wide&Deep: {"rows": [...]} | {"instances": [...]}  →  {"model_version", "step", "probabilities"}
//   POST /v1/recommend the RL families: {"user", "n"} | {"user"?, "history", "exclude"?, "n"} | {"requests": [...]}
//                      → {"user", "items": [{"item", "score"}], "source", "model_version", "step"} (| {"results": [...]})
//
// and the server's own:
//
//   GET  /v1/model     the version being served (model_kind, version, step, samples_trained, metrics, loaded_at, directory, routes)
//   GET  /v1/popular?n=N   the feature store's real-time popular items (n 1…1000, default 10) →
//                      {"items": [{"item", "count"}], "window_start", "window_end", "window_seconds",
//                      "slide_seconds", "watermark", "late_events"}; read from Redis off the request
//                      threads (FeatureStoreClient); 503 when Redis is down or slow, or not configured
//   GET  /healthz      200 while the process is up
//   GET  /readyz       200 once a model is loaded, 503 before
//   GET  /metrics      Prometheus text
//   GET  /openapi.json the OpenAPI 3.1 document of all of this (OpenAPIDocument.swift)
//
// Every refusal is a JSON `{"error": "..."}` with a 4xx/5xx status; no input can crash the server.
import Logging
import Foundation
import FeatureStore
import Features
import Hummingbird
import HummingbirdCore
import NIOCore
import Observability
import ServiceLifecycle

/// Settings of one `streamrec serve` process.
public struct ServeSettings: Sendable {
    public var checkpoints: URL
    public var host: String
    public var port: Int
    public var limits: RequestLimits
    public var pollInterval: Duration
    public var timeouts: ConnectionTimeouts
    /// The feature store behind `/v1/popular` and the stateful `/v1/recommend`; nil: no Redis
    /// (those answer 503).
    public var featureStore: FeatureStoreSettings?

    public init(checkpoints: URL, host: String = "127.0.0.1", port: Int = 8080,
                limits: RequestLimits = RequestLimits(), pollInterval: Duration = .milliseconds(200),
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
    public let limits: RequestLimits
    /// Nil when serve runs without Redis.
    public let featureStore: FeatureStoreClient?

    public init(slot: ModelSlot = ModelSlot(), metrics: ServingMetrics = ServingMetrics(), limits: RequestLimits = RequestLimits(),
                featureStore: FeatureStoreClient? = nil) {
        self.slot = slot
        self.metrics = metrics
        self.limits = limits
        self.featureStore = featureStore
    }
}

/// The served version as the type a route needs, or the response that says why not.
enum Served<M: ServableModel> {
    case model(M)
    case refused(Response)
}

extension ServingState {
    /// The version being served if it is an `M` (a version of `route`'s family); otherwise 503
    /// (nothing loaded yet) or 409 naming the kind being served and the routes that answer for it.
    func served<M: ServableModel>(_: M.Type, for route: String) -> Served<M> {
        guard let model = slot.current else { return .refused(noModel()) }
        if let m = model as? M { return .model(m) }
        let family = ServableFamilies.family(kind: model.kind)
        let routes = family?.routes.map(\.path).joined(separator: ", ") ?? "none"
        let owner = ServableFamilies.all.first { $0.routes.contains { $0.path == route } }?.name ?? "another family's"
        return .refused(json(409, ["error": "this server serves a '\(model.kind)' model (\(model.version)); \(route) answers for "
                                   + "\(owner) models only. For this model use \(routes).",
                                   "model_kind": model.kind]))
    }
}

/// Records one count and one latency sample per request, labelled with the endpoint (known
/// routes only, so odd paths cannot blow up the label set) and the final status code.
struct MetricsMiddleware: RouterMiddleware {
    typealias Context = ServingRequestContext
    static let endpoints: Set<String> = Set(ServableFamilies.routes.map(\.path))
        .union(["/v1/model", "/v1/popular", "/healthz", "/readyz", "/metrics", "/openapi.json"])
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

    for route in ServableFamilies.routes {
        let handle = route.handle
        router.on(RouterPath(route.path), method: route.method) { request, _ -> Response in
            await handle(request, state)
        }
    }
    router.get("/v1/model") { _, _ -> Response in
        guard let model = state.slot.current else { return noModel() }
        return json(200, modelInfo(model))
    }
    router.get("/v1/popular") { request, _ -> Response in
        await popular(request, state: state)
    }
    router.get("/openapi.json") { _, _ -> Response in
        rawJSON(200, OpenAPIDocument.json)
    }
    router.get("/healthz") { _, _ -> Response in
        json(200, ["status": "ok"])
    }
    router.get("/readyz") { _, _ -> Response in
        if let model = state.slot.current {
            return json(200, ["status": "ready", "model_version": model.version, "model_kind": model.kind])
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
                                    logger: Logger = Logger(label: "serve"))
    -> (app: some ApplicationProtocol, state: ServingState, watcher: CheckpointWatcher) {
    let state = state ?? ServingState(limits: settings.limits,
                                      featureStore: settings.featureStore.map { FeatureStoreClient(settings: $0, logger: logger) })
    let watcher = CheckpointWatcher(root: settings.checkpoints, slot: state.slot, metrics: state.metrics,
                                    workspaceRows: settings.limits.maxRows, pollInterval: settings.pollInterval, logger: logger)
    let timeouts = settings.timeouts, metrics = state.metrics
    let http1 = HTTP1Channel.Configuration(
        additionalChannelHandlers: [RequestReadTimeoutHandler(timeouts: timeouts) { phase in
            metrics.recordTimedOutConnection(phase: phase.rawValue)
        }],
        idleTimeout: TimeAmount(timeouts.idle))
    var app = Application(router: buildServingRouter(state: state), server: .http1(configuration: http1),
                          configuration: .init(address: .hostname(settings.host, port: settings.port),
                                               serverName: "streamrec-serve"),
                          logger: logger)
    app.addServices(watcher)
    return (app, state, watcher)
}

/// Runs the server until asked to stop (graceful shutdown: in-flight requests finish).
/// `waitForShutdown` is called on a thread of its own and blocks until the server should stop
/// (the CLI waits for SIGINT/SIGTERM through `Streaming.ShutdownSignals`, the mechanism every
/// streamrec command shares); when it returns, the service group shuts down gracefully.
public func runServingServer(settings: ServeSettings, logger: Logger = Logger(label: "serve"),
                             waitForShutdown: @escaping @Sendable () -> Void) async throws {
    // The process's registry (bootstrapped into swift-metrics), so anything else in the process
    // that records through swift-metrics shows on the same GET /metrics.
    let state = ServingState(metrics: ServingMetrics(registry: .process), limits: settings.limits,
                             featureStore: settings.featureStore.map { FeatureStoreClient(settings: $0, logger: logger) })
    let (app, _, _) = buildServingApplication(settings: settings, state: state, logger: logger)
    if let store = state.featureStore {
        // One PING at start so the log says at once whether the feature store answers (an
        // outage is logged by the client itself).
        Task {
            do throws(FeatureStoreClientError) {
                try await store.ping()
                logger.info("feature store Redis at \(store.settings.address) answers (prefix \(store.settings.prefix))")
            } catch .unavailable {
            } catch {
                logger.warning("feature store Redis at \(store.settings.address): \(error)")
            }
        }
    }
    // Requests still being received are bounded by shutdownGrace (RequestReadTimeoutHandler); the
    // grace bounds everything else (a slow response, a client that never reads): after it, the
    // server is cancelled and its connections closed.
    try await runUntilShutdown(app, maximumGrace: settings.timeouts.shutdown, threadName: "serve-shutdown", waitForShutdown: waitForShutdown)
}

// MARK: - Handlers

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

struct ModelInfo: Encodable {
    let model_kind: String
    let model_version: String
    let step: Int
    let samples_trained: Int
    let metrics: [String: Double]
    let loaded_at: String
    let load_seconds: Double
    let directory: String
    let model_bytes: Int
    /// The routes that answer for this kind.
    let routes: [String]
}

func modelInfo(_ m: any ServableModel) -> ModelInfo {
    let i = m.info
    return ModelInfo(model_kind: i.kind, model_version: i.version, step: i.step, samples_trained: i.samplesTrained,
                     metrics: i.metrics.filter { $0.value.isFinite }, loaded_at: ISO8601DateFormatter().string(from: i.loadedAt),
                     load_seconds: i.loadSeconds, directory: i.directory.path, model_bytes: i.modelFileBytes,
                     routes: ServableFamilies.family(kind: i.kind)?.routes.map(\.path) ?? [])
}
