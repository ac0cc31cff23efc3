// GET /v1/popular: the feature store's popular items through the server's off-thread Redis
// client, against real redis-servers (each test starts its own on a free port and removes it).
import Foundation
import Logging
import Observability
import Testing
import Hummingbird
import HummingbirdTesting
import NIOCore
import FeatureStore
import Features
import Streaming
import TestSupport
@testable import Serving

/// The body of /v1/popular.
private struct PopularBody: Decodable, Equatable {
    struct Item: Decodable, Equatable {
        let item: String
        let count: Int64
    }
    let items: [Item]
    let window_start: Int64?
    let window_end: Int64?
    let window_seconds: Int64?
    let slide_seconds: Int64?
    let watermark: Int64?
    let late_events: Int64

    init(_ p: PopularItems) {
        items = p.items.map { Item(item: $0.item, count: $0.count) }
        window_start = p.windowStart
        window_end = p.windowEnd
        window_seconds = p.windowSeconds
        slide_seconds = p.slideSeconds
        watermark = p.watermark
        late_events = p.lateEvents
    }
}

private func decodePopular(_ body: ByteBuffer) throws -> PopularBody {
    try JSONDecoder().decode(PopularBody.self, from: Data(String(buffer: body).utf8))
}

private func errorText(_ body: ByteBuffer) -> String {
    let object = try? JSONSerialization.jsonObject(with: Data(String(buffer: body).utf8)) as? [String: Any]
    return object?["error"] as? String ?? "(no error field in \(String(buffer: body)))"
}

/// What `featurize --kind behavior` leaves in Redis, written key by key as its commit script does
/// (`FeatureStoreLayout`'s names, `PopularBucket` strings): meta, two partitions' watermarks and
/// late counts, and 13 slide buckets per partition of which the newest 10 are in the window.
/// Returns the window's totals per item, summed here independently of `FeatureStore`.
@discardableResult
private func writePopularState(_ address: String, prefix: String = "sr") throws -> [String: Int64] {
    let redis = try RedisConnection(address: address)
    let layout = FeatureStoreLayout(prefix: prefix)
    let slide: Int64 = 60, window: Int64 = 600, topic = "behavior"
    let newest: Int64 = 1_700_000_007
    let end = EventTime.bucket(newest, slide: slide)
    try redis.command(["HSET", layout.behaviorMeta, "history_length", "4", "consumed_limit", "6",
                       "window_seconds", "\(window)", "slide_seconds", "\(slide)", "lateness_seconds", "30"])
    try redis.command(["HSET", layout.eventWatermarks, "\(topic):0", "\(newest)", "\(topic):1", "\(newest - 500)"])
    try redis.command(["HSET", layout.lateEvents, "\(topic):0", "3", "\(topic):1", "4"])
    var totals: [String: Int64] = [:]
    for bucket in (end - 12)...end {
        for partition: Int32 in 0..<2 {
            var entries: [(String, Int64)] = (0..<15).map { k in ("item-\(k)", Int64(k + 1) * (bucket - end + 13) + Int64(partition)) }
            entries += [("tie-b", 50), ("tie-a", 50)]  // equal counts: ordered by item id
            var bytes = PopularBucket.header
            for (item, count) in entries {
                Array(item.utf8).withUnsafeBytes { PopularBucket.append(key: $0, count: count, to: &bytes) }
                if bucket > end - window / slide { totals[item, default: 0] += count }
            }
            try redis.command(bytes: [Array("SET".utf8), Array(layout.popular(bucket: bucket, topic: topic, partition: partition).utf8), bytes])
            try redis.command(["ZADD", layout.popularBuckets, "\(bucket)", layout.popularMember(bucket: bucket, topic: topic, partition: partition)])
        }
    }
    return totals
}

/// A server whose feature store is the Redis at `redis` (nil: none configured).
private func popularApp(checkpoints: URL, redis: RedisEndpoint?, timeout: Duration = .milliseconds(200), port: Int = 0,
                        logger: Logger = Logger(label: "serve", factory: { _ in SwiftLogNoOpLogHandler() }))
    -> (app: some ApplicationProtocol, state: ServingState, watcher: CheckpointWatcher) {
    let settings = ServeSettings(checkpoints: checkpoints, host: "127.0.0.1", port: port,
                                 limits: RequestLimits(maxRows: 100, maxBodyBytes: 1 << 20), pollInterval: .milliseconds(50),
                                 featureStore: redis.map { FeatureStoreSettings(address: $0, prefix: "sr", timeout: timeout,
                                                                                retryInterval: .milliseconds(100)) })
    return buildServingApplication(settings: settings, logger: logger)
}


/// One request on a connection of its own (the live test client has one connection, so requests
/// sent through it concurrently would queue behind each other); returns the response and its time.
private func request(port: Int, _ uri: String, method: HTTPRequest.Method = .get, body: String? = nil)
    async throws -> (response: TestClient.Response, elapsed: Duration) {
    let started = ContinuousClock.now
    let response = try await TestClient.withClient(host: "127.0.0.1", port: port) { client in
        try await client.execute(TestClient.Request(uri, method: method, authority: "localhost",
                                                    headers: body == nil ? [:] : [.contentType: "application/json"],
                                                    body: body.map { ByteBuffer(string: $0) }))
    }
    return (response, ContinuousClock.now - started)
}

/// One request's status, duration and end.
private struct Outcome: Sendable {
    let status: Int
    let elapsed: Duration
    let at: ContinuousClock.Instant
}

/// `count` concurrent requests for `uri`, each on its own connection.
private func concurrentRequests(port: Int, _ uri: String, count: Int) async throws -> [Outcome] {
    try await withThrowingTaskGroup(of: Outcome.self, returning: [Outcome].self) { group in
        for _ in 0..<count {
            group.addTask {
                let (response, elapsed) = try await request(port: port, uri)
                return Outcome(status: response.status.code, elapsed: elapsed, at: ContinuousClock.now)
            }
        }
        var outcomes: [Outcome] = []
        for try await outcome in group { outcomes.append(outcome) }
        return outcomes
    }
}

/// /healthz and /v1/predict, one after the other on fresh connections, for `duration`: each must
/// answer 200 within 500 ms. Returns how many rounds ran and when the last ended.
private func probeOtherRoutes(port: Int, predictBody: String, for duration: Duration) async throws
    -> (count: Int, lastEnd: ContinuousClock.Instant) {
    let started = ContinuousClock.now
    var count = 0
    var lastEnd = started
    while ContinuousClock.now - started < duration {
        let health = try await request(port: port, "/healthz")
        #expect(health.response.status == .ok)
        #expect(health.elapsed < .milliseconds(500), "/healthz took \(health.elapsed) while Redis hung")
        let predict = try await request(port: port, "/v1/predict", method: .post, body: predictBody)
        #expect(predict.response.status == .ok)
        #expect(predict.elapsed < .milliseconds(500), "/v1/predict took \(predict.elapsed) while Redis hung")
        count += 1
        lastEnd = ContinuousClock.now
    }
    return (count, lastEnd)
}

@Suite("GET /v1/popular (feature store in Redis)") struct PopularRouteTests {
    @Test("popular items written as the behaviour featurizer writes them come back equal to FeatureStore.popularItems")
    func popularMatchesFeatureStore() async throws {
        let redis = try RedisServerFixture()
        defer { redis.stop() }
        let root = try temporaryTestDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        let (app, state, _) = popularApp(checkpoints: root, redis: redis.endpoint)
        try await app.test(.router) { client in
            // Nothing counted yet: an empty list and nulls.
            let empty = try await client.execute(uri: "/v1/popular", method: .get)
            #expect(empty.status == .ok)
            let none = try decodePopular(empty.body)
            #expect(none.items.isEmpty && none.window_start == nil && none.watermark == nil && none.late_events == 0)
            #expect(String(buffer: empty.body).contains("\"window_start\":null"))

            let totals = try writePopularState(redis.address)
            let store = FeatureStore(redis: try RedisConnection(address: redis.address), prefix: "sr")
            for (query, n) in [("", 10), ("?n=3", 3), ("?n=1", 1), ("?n=1000", 1000)] {
                let r = try await client.execute(uri: "/v1/popular" + query, method: .get)
                #expect(r.status == .ok, "\(query): \(String(buffer: r.body))")
                #expect(r.headers[.contentType] == "application/json")
                let body = try decodePopular(r.body)
                #expect(try body == PopularBody(store.popularItems(n: n)), "\(query)")
                // Independently of FeatureStore: the window's totals, count descending then id.
                let expected = totals.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.prefix(n)
                #expect(body.items.map(\.item) == expected.map(\.key) && body.items.map(\.count) == expected.map(\.value))
            }
            let body = try decodePopular(try await client.execute(uri: "/v1/popular?n=17", method: .get).body)
            #expect(body.items.count == 17 && body.watermark == 1_700_000_007 && body.late_events == 7)
            #expect(body.window_seconds == 600 && body.slide_seconds == 60)
            #expect(body.window_end == (1_700_000_007 / 60 + 1) * 60 && body.window_start == body.window_end! - 600)
            let tieA = body.items.firstIndex(where: { $0.item == "tie-a" }), tieB = body.items.firstIndex(where: { $0.item == "tie-b" })
            #expect(tieA != nil && tieB == tieA.map { $0 + 1 }, "equal counts are ordered by item id")
            #expect(state.metrics.requests(endpoint: "/v1/popular", status: 200) == 6)
            let metrics = try PrometheusText(String(buffer: try await client.execute(uri: "/metrics", method: .get).body))
            #expect(metrics.value("streamrec_serve_requests_total", ["endpoint": "/v1/popular", "status": "200"]) == 6)
        }
    }

    @Test("n outside 1…1000 or not an integer is a 400; without a feature store configured, 503 saying how to configure one")
    func badNAndNoStore() async throws {
        let redis = try RedisServerFixture()
        defer { redis.stop() }
        try writePopularState(redis.address)
        let root = try temporaryTestDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        let (app, _, _) = popularApp(checkpoints: root, redis: redis.endpoint)
        try await app.test(.router) { client in
            for bad in ["0", "1001", "-3", "abc", "10.5", "", "99999999999999999999"] {
                let r = try await client.execute(uri: "/v1/popular?n=\(bad)", method: .get)
                #expect(r.status == .badRequest, "n=\(bad): \(String(buffer: r.body))")
                #expect(errorText(r.body).contains("1…1000"), "n=\(bad): \(errorText(r.body))")
            }
            #expect(try await client.execute(uri: "/v1/popular?n=5", method: .get).status == .ok)
        }
        let (bare, _, _) = popularApp(checkpoints: root, redis: nil)
        try await bare.test(.router) { client in
            let r = try await client.execute(uri: "/v1/popular", method: .get)
            #expect(r.status == .serviceUnavailable)
            #expect(r.headers[.retryAfter] == "1")
            #expect(errorText(r.body).contains("no feature store configured") && errorText(r.body).contains("--redis"))
            #expect(try await client.execute(uri: "/v1/popular?n=0", method: .get).status == .badRequest)
            #expect(try await client.execute(uri: "/healthz", method: .get).status == .ok)
        }
    }

    @Test("Redis stopped: 503 within the timeout; restarted on the same port: 200 again without restarting the server")
    func redisStoppedThenBack() async throws {
        let redis = try PersistentRedisServer()
        defer { redis.destroy() }
        try writePopularState(redis.address)
        let root = try temporaryTestDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        let timeout = Duration.milliseconds(200)
        let log = CapturedLog()
        let (app, _, _) = popularApp(checkpoints: root, redis: redis.endpoint, timeout: timeout, logger: log.logger("serve"))
        try await app.test(.router) { client in
            let before = try await client.execute(uri: "/v1/popular", method: .get)
            #expect(before.status == .ok)
            // Concurrent reads, so that every worker has a connection to the Redis about to go.
            let warm = try await withThrowingTaskGroup(of: Bool.self, returning: Int.self) { group in
                for _ in 0..<8 { group.addTask { try await client.execute(uri: "/v1/popular", method: .get).status == .ok } }
                return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
            #expect(warm == 8)
            redis.stop()
            // The first read finds the old connection closed, the next ones fail at once (store
            // down) or find the port refusing: each answers 503 within the timeout (plus slack
            // for a loaded machine), never hanging.
            for _ in 0..<6 {
                let started = ContinuousClock.now
                let r = try await client.execute(uri: "/v1/popular", method: .get)
                let elapsed = ContinuousClock.now - started
                #expect(r.status == .serviceUnavailable)
                #expect(errorText(r.body).hasPrefix("feature store unavailable: "), "\(errorText(r.body))")
                log.add("test: 503 \(errorText(r.body))")
                #expect(elapsed < timeout + .milliseconds(800), "503 took \(elapsed)")
            }
            try redis.start()
            log.add("test: redis restarted")
            let back = try await eventually(30) {
                let r = try await client.execute(uri: "/v1/popular", method: .get)
                log.add("test: \(r.status.code) \(r.status == .ok ? "" : errorText(r.body))")
                return r.status == .ok
            }
            #expect(back, "the route did not recover after Redis came back")
            // Every worker's connection died with the old Redis; none of them gives a 503 now.
            for _ in 0..<10 {
                let after = try await client.execute(uri: "/v1/popular", method: .get)
                #expect(after.status == .ok, "\(String(buffer: after.body))\n\(log.text)")
                if after.status == .ok { #expect(try decodePopular(after.body) == decodePopular(before.body)) }
            }
        }
    }

    @Test("a hung Redis (SIGSTOP) holds only /v1/popular, for its timeout: /healthz and /v1/predict answer within 500 ms meanwhile")
    func hungRedisDoesNotBlockOtherRoutes() async throws {
        let fx = try TinyModelFixture()
        try fx.write(step: 5)
        let redis = try RedisServerFixture()
        defer { redis.stop() }
        try writePopularState(redis.address)
        // A long timeout so the popular reads stay stuck while the other routes are probed.
        let timeout = Duration.seconds(4)
        let (app, state, _) = popularApp(checkpoints: fx.root, redis: redis.endpoint, timeout: timeout)
        let featureStore = try #require(state.featureStore)
        try await app.test(.live) { client in
            let port = try #require(client.port)
            #expect(try await eventually { try await client.execute(uri: "/readyz", method: .get).status == .ok })
            #expect(try await client.execute(uri: "/v1/popular", method: .get).status == .ok)
            redis.pause()
            // More stuck reads than the cooperative pool has threads: had any of them blocked a
            // thread, nothing else would be answered.
            let stuckCalls = 16
            async let stuck = concurrentRequests(port: port, "/v1/popular", count: stuckCalls)
            let workersBusy = await eventually(10) { featureStore.callsInProgress == featureStore.settings.connections }
            #expect(workersBusy, "the popular reads never reached the worker threads")
            let probes = try await probeOtherRoutes(port: port, predictBody: jsonBody(["rows": [fx.rows[0]]]), for: .milliseconds(1500))
            #expect(probes.count >= 3)
            let results = try await stuck
            #expect(results.count == stuckCalls)
            for result in results {
                #expect(result.status == 503)
                #expect(result.at > probes.lastEnd, "a popular read ended before the probes did: it was not stuck")
                #expect(result.elapsed < timeout + .seconds(2), "a stuck read took \(result.elapsed) (timeout \(timeout))")
            }
            redis.resume()
            let back = try await eventually(30) { try await request(port: port, "/v1/popular").response.status == .ok }
            #expect(back, "the route did not recover after Redis resumed")
        }
    }
}
