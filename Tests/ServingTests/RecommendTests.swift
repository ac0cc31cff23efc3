// POST /v1/recommend and the family-neutral server: the RL family served through the same slot,
// watcher, metrics and limits as Wide&Deep, against real redis-servers where state is read.
import Foundation
import Logging
import Observability
import Testing
import Hummingbird
import HummingbirdTesting
import NIOCore
import Checkpoint
import FeatureStore
import Features
import Models
import Streaming
import StreamRecNumerics
import TestSupport
@testable import Serving

private func recommendApp(_ root: URL, redis: RedisEndpoint? = nil, limits: RequestLimits = RequestLimits(maxRows: 100, maxBodyBytes: 1 << 20),
                          timeout: Duration = .milliseconds(200), logger: Logger = Logger(label: "serve", factory: { _ in SwiftLogNoOpLogHandler() }))
    -> (app: some ApplicationProtocol, state: ServingState, watcher: CheckpointWatcher) {
    let settings = ServeSettings(checkpoints: root, host: "127.0.0.1", port: 0, limits: limits, pollInterval: .milliseconds(50),
                                 featureStore: redis.map { FeatureStoreSettings(address: $0, prefix: "sr", timeout: timeout,
                                                                                retryInterval: .milliseconds(100)) })
    return buildServingApplication(settings: settings, logger: logger)
}

private func post(_ client: some TestClientProtocol, _ body: String, to uri: String = "/v1/recommend") async throws -> TestResponse {
    try await client.execute(uri: uri, method: .post, headers: [.contentType: "application/json"], body: ByteBuffer(string: body))
}

private func recommend(_ client: some TestClientProtocol, _ object: [String: Any]) async throws -> RecommendAnswer {
    let r = try await post(client, jsonBody(object))
    #expect(r.status == .ok, "\(object): \(r.status) \(String(buffer: r.body))")
    return try decodeAnswer(String(buffer: r.body))
}

private func errorText(_ r: TestResponse) -> String {
    let object = try? JSONSerialization.jsonObject(with: Data(String(buffer: r.body).utf8)) as? [String: Any]
    return object?["error"] as? String ?? "(no error in \(String(buffer: r.body)))"
}

private func servedStep(_ client: some TestClientProtocol) async throws -> Int? {
    let r = try await client.execute(uri: "/v1/model", method: .get)
    guard r.status == .ok else { return nil }
    return (try JSONSerialization.jsonObject(with: Data(String(buffer: r.body).utf8)) as? [String: Any])?["step"] as? Int
}

/// The answer's items equal the brute-force ranking (keys in order, scores within 1e-6).
private func expectRanking(_ answer: RecommendAnswer, _ expected: [(item: String, score: Float)],
                           sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(answer.items.map(\.item) == expected.map(\.item), "got \(answer.items.map(\.item)), expected \(expected.map(\.item))",
            sourceLocation: sourceLocation)
    for (a, e) in zip(answer.items, expected) {
        #expect(abs(a.score - e.score) <= 1e-6, "\(a.item): \(a.score) vs \(e.score)", sourceLocation: sourceLocation)
    }
}

@Suite("POST /v1/recommend") struct RecommendTests {
    @Test("serving states equal the states training sees for the next action (TransitionRule), padded in front")
    func servingStateEqualsTrainingState() async throws {
        let fx = try TinyRecommenderFixture()
        let served = try RecommenderServable.load(directory: try fx.write(step: 1))
        for count in 0...(TinyRecommenderFixture.historyLength + 3) {
            let items = (0..<count).map { Int32(2 + ($0 * 7) % 40) }
            let (state, next) = featurizedState(items: items)
            #expect(served.state(history: state.recent(served.historyLength)) == next, "\(count) events")
            #expect(served.state(history: state.history) == next, "\(count) events (the whole stored history)")
        }
    }

    @Test("top-n selection equals a brute-force sort, ties by lower id; NaN and ±inf never selected")
    func topItemsMatchesBruteForce() {
        var rng = SplitMix64(seed: 5)
        for trial in 0..<200 {
            let N = 1 + Int(rng.next() % 300)
            let row: [Float] = (0..<N).map { _ in
                switch rng.next() % 20 {
                case 0: .nan
                case 1: -.infinity
                case 2: .infinity
                default: Float(rng.next() % 12) / 4   // many ties
                }
            }
            let allowedMask = (0..<N).map { _ in rng.next() % 4 != 0 }
            let n = 1 + Int(rng.next() % 40)
            let masked = row.indices.map { allowedMask[$0] ? row[$0] : -.infinity }  // callers mask with −∞
            let got = TopItems.select(masked[...], n: n)
            let expected = (0..<N).filter { allowedMask[$0] && row[$0].isFinite }
                .sorted { row[$0] != row[$1] ? row[$0] > row[$1] : $0 < $1 }.prefix(n)
            #expect(got.map(\.id) == expected.map { Int32($0) }, "trial \(trial)")
        }
        // A slice not starting at 0 (a row of a batch): ids are offsets within the row.
        let rows: [Float] = [9, 9, 9, 1, 3, 2]
        #expect(TopItems.select(rows[3..<6], n: 2).map(\.id) == [1, 2])
    }

    @Test("stateful: the user's state from Redis, scored as training scores it, consumed/padding/OOV/keyless masked, sorted")
    func stateful() async throws {
        let fx = try TinyRecommenderFixture()
        let checkpoint = try fx.write(step: 10)
        let direct = try DirectRecommender(checkpoint)
        let redis = try RedisServerFixture()
        defer { redis.stop() }
        // u3: more events than H (a re-consumed item, so history ≠ consumed); u4: fewer than H;
        // u999: a user the feature store knows but the checkpoint does not (user id 0).
        let users: [(String, [Int32], Int32)] = [("u3", [5, 9, 5, 12, 20, 31, 3], 3), ("u4", [40, 8], 4), ("u999", [6, 10, 11], 0)]
        for (user, items, _) in users { try writeUserState(redis.address, user: user, featurizedState(items: items).state) }
        try writePopularCounts(redis.address, [("i30", 90), ("i31", 80), ("i32", 70), ("new-item", 60), ("i33", 50)])
        let (app, state, _) = recommendApp(fx.root, redis: redis.endpoint)
        try await app.test(.router) { client in
            #expect(try await eventually { try await servedStep(client) == 10 })
            for (user, items, id) in users {
                let (userState, next) = featurizedState(items: items)
                for n in [1, 5, 1000] {
                    let answer = try await recommend(client, ["user": user, "n": n])
                    #expect(answer.source == "model" && answer.user == user && answer.model_version == "step-000000000010" && answer.step == 10)
                    let masked = Set(userState.consumed)
                    expectRanking(answer, direct.top(user: id, state: next, masked: masked, n: n))
                    let returned = Set(answer.items.map(\.item))
                    #expect(returned.isDisjoint(with: userState.consumed.map { "i\($0)" }), "a consumed item was recommended")
                    #expect(!returned.contains("i\(TinyRecommenderFixture.keylessItem)") && !returned.contains(""))
                    #expect(answer.items.map(\.score) == answer.items.map(\.score).sorted(by: >))
                    if n == 1000 {
                        // Everything with a key except the consumed: items 2…50 less the keyless one.
                        #expect(answer.items.count == 48 - Set(items).count, "\(answer.items.count)")
                    }
                }
            }
            // A user without state gets the popular items, marked as such.
            let unknown = try await recommend(client, ["user": "nobody", "n": 3])
            #expect(unknown.source == "popular" && unknown.items.map(\.item) == ["i30", "i31", "i32"])
            #expect(unknown.items.map(\.score) == [90, 80, 70])
            let excluded = try await recommend(client, ["user": "nobody", "n": 3, "exclude": ["i31"]])
            #expect(excluded.items.map(\.item) == ["i30", "i32", "new-item"])
            // exclude applies to model answers too.
            let plain = try await recommend(client, ["user": "u3", "n": 3])
            let without = try await recommend(client, ["user": "u3", "n": 3, "exclude": [plain.items[0].item, "unknown-key"]])
            #expect(without.items.map(\.item) == Array(try await recommend(client, ["user": "u3", "n": 4]).items.map(\.item).dropFirst()))
            #expect(state.metrics.recommendations(source: "popular") == 2)
            let metrics = try PrometheusText(String(buffer: try await client.execute(uri: "/metrics", method: .get).body))
            #expect((metrics.value("streamrec_serve_requests_total", ["endpoint": "/v1/recommend", "status": "200"]) ?? 0) > 0)
            #expect((metrics.value("streamrec_serve_request_duration_seconds_bucket", ["endpoint": "/v1/recommend", "le": "+Inf"]) ?? 0) > 0)
            #expect(metrics.value("streamrec_serve_recommendations_total", ["source": "popular"]) == 2)
            #expect(metrics.value("streamrec_serve_model_info", ["kind": "reinforce"]) == 1)
            let info = try JSONSerialization.jsonObject(with: Data(String(buffer: try await client.execute(uri: "/v1/model", method: .get).body).utf8)) as? [String: Any]
            #expect(info?["model_kind"] as? String == "reinforce" && info?["routes"] as? [String] == ["/v1/recommend"])
        }
    }

    @Test("stateless: keys → ids (unknown item → OOV, unknown user → 0), history and exclude masked, Redis never read")
    func stateless() async throws {
        let fx = try TinyRecommenderFixture()
        let direct = try DirectRecommender(try fx.write(step: 3))
        let (app, _, _) = recommendApp(fx.root)  // no feature store at all
        try await app.test(.router) { client in
            #expect(try await eventually { try await servedStep(client) == 3 })
            let cases: [(user: String?, history: [String], exclude: [String], uid: Int32, ids: [Int32], masked: Set<Int32>)] = [
                ("u3", ["i5", "i9", "zzz"], ["i12"], 3, [0, 5, 9, 1], [5, 9, 1, 12]),
                (nil, ["i2", "i3", "i4", "i5", "i6", "i8"], [], 0, [4, 5, 6, 8], [2, 3, 4, 5, 6, 8]),
                ("stranger", ["i44"], ["i45", "nope"], 0, [0, 0, 0, 44], [44, 45]),
            ]
            for c in cases {
                var body: [String: Any] = ["history": c.history, "exclude": c.exclude, "n": 7]
                if let user = c.user { body["user"] = user }
                let answer = try await recommend(client, body)
                #expect(answer.source == "model" && answer.user == c.user)
                expectRanking(answer, direct.top(user: c.uid, state: c.ids, masked: c.masked, n: 7))
            }
            // Empty history without a feature store: the model's scores for the empty state.
            let empty = try await recommend(client, ["history": [String](), "n": 5])
            #expect(empty.source == "model")
            expectRanking(empty, direct.top(user: 0, state: [0, 0, 0, 0], masked: [], n: 5))
            // The stateful form needs the feature store: 503 saying so.
            let r = try await post(client, jsonBody(["user": "u3"]))
            #expect(r.status == .serviceUnavailable && r.headers[.retryAfter] == "1")
            #expect(errorText(r).contains("no feature store configured") && errorText(r).contains("history"))
        }
    }

    @Test("empty stateless history with Redis: the popular items less history and exclude")
    func statelessEmptyHistoryPopular() async throws {
        let fx = try TinyRecommenderFixture()
        try fx.write(step: 1)
        let redis = try RedisServerFixture()
        defer { redis.stop() }
        try writePopularCounts(redis.address, [("i9", 9), ("i8", 8), ("i7", 7)])
        let (app, _, _) = recommendApp(fx.root, redis: redis.endpoint)
        try await app.test(.router) { client in
            #expect(try await eventually { try await servedStep(client) == 1 })
            let a = try await recommend(client, ["history": [String](), "exclude": ["i8"], "n": 5])
            #expect(a.source == "popular" && a.items.map(\.item) == ["i9", "i7"] && a.user == nil)
        }
    }

    @Test("several users per request: results in order, each what the single request answers")
    func batch() async throws {
        let fx = try TinyRecommenderFixture()
        try fx.write(step: 2)
        let redis = try RedisServerFixture()
        defer { redis.stop() }
        try writeUserState(redis.address, user: "u5", featurizedState(items: [3, 4, 5, 6, 9]).state)
        try writePopularCounts(redis.address, [("i20", 5), ("i21", 4)])
        let (app, state, _) = recommendApp(fx.root, redis: redis.endpoint)
        let queries: [[String: Any]] = [
            ["user": "u5", "n": 4], ["user": "ghost", "n": 2], ["history": ["i3", "i4"], "n": 3],
            ["user": "u2", "history": [String](), "n": 1], ["user": "u5", "n": 2, "exclude": ["i2"]],
        ]
        let batchBody = jsonBody(["requests": queries]), singleBodies = queries.map(jsonBody)
        try await app.test(.router) { client in
            #expect(try await eventually { try await servedStep(client) == 2 })
            let r = try await post(client, batchBody)
            #expect(r.status == .ok, "\(String(buffer: r.body))")
            let results = try JSONDecoder().decode(RecommendBatchAnswer.self, from: Data(String(buffer: r.body).utf8)).results
            #expect(results.count == singleBodies.count)
            for (body, result) in zip(singleBodies, results) {
                let single = try await post(client, body)
                #expect(single.status == .ok)
                // The batch is scored in one pass: the same items, scores equal up to float rounding
                // (BLAS sums a batch of rows in another order than one row).
                let alone = try decodeAnswer(String(buffer: single.body))
                #expect(result.user == alone.user && result.source == alone.source && result.step == alone.step, "\(body)")
                #expect(result.items.map(\.item) == alone.items.map(\.item), "\(body)")
                for (a, b) in zip(result.items, alone.items) { #expect(abs(a.score - b.score) <= 1e-6 * max(1, abs(b.score)), "\(body)") }
            }
            #expect(results.map(\.source) == ["model", "popular", "model", "popular", "model"])
            #expect(state.metrics.requests(endpoint: "/v1/recommend", status: 200) == 6)
        }
    }

    @Test("every kind of bad request gets a 4xx with a message; the server keeps answering")
    func badRequests() async throws {
        let fx = try TinyRecommenderFixture()
        try fx.write(step: 1)
        let (app, _, _) = recommendApp(fx.root, limits: RequestLimits(maxRows: 10, maxBodyBytes: 4000, maxUsers: 3, maxHistory: 5))
        let cases: [(String, String, Int, String)] = [
            ("malformed JSON", "{\"user\": ", 400, "not valid JSON"),
            ("not an object", "[1]", 400, "JSON object"),
            ("n zero", jsonBody(["user": "u1", "n": 0]), 400, "1…1000"),
            ("n too large", jsonBody(["user": "u1", "n": 1001]), 400, "1…1000"),
            ("n fractional", jsonBody(["history": [String](), "n": 2.5]), 400, "1…1000"),
            ("n string", jsonBody(["user": "u1", "n": "5"]), 400, "1…1000"),
            ("n bool", jsonBody(["user": "u1", "n": true]), 400, "got true"),
            ("user number", jsonBody(["user": 5]), 400, "user must be"),
            ("user empty", jsonBody(["user": ""]), 400, "user must be"),
            ("stateful without user", jsonBody(["n": 3]), 400, "user is missing"),
            ("history not array", jsonBody(["history": "i1"]), 400, "history must be an array"),
            ("history non-string", jsonBody(["history": ["i1", 2]]), 400, "history[1]"),
            ("exclude non-string", jsonBody(["user": "u1", "exclude": [NSNull()]]), 400, "exclude[0]"),
            ("unknown key", jsonBody(["user": "u1", "items": 3]), 400, "\"items\""),
            ("history too long", jsonBody(["history": Array(repeating: "i2", count: 6)]), 413, "--max-history"),
            ("requests not array", jsonBody(["requests": ["user": "u1"]]), 400, "array of objects"),
            ("requests empty", jsonBody(["requests": [Any]()]), 400, "empty"),
            ("request not object", jsonBody(["requests": [1]]), 400, "requests[0]"),
            ("bad element", jsonBody(["requests": [["user": "u1"], ["user": "u2", "n": -1]]]), 400, "requests[1].n"),
            ("batch with extra key", jsonBody(["requests": [["user": "u1"]], "n": 3]), 400, "beside \"requests\""),
            ("too many users", jsonBody(["requests": Array(repeating: ["history": ["i2"]], count: 4)]), 413, "--max-users"),
            ("body too long", jsonBody(["history": [String(repeating: "x", count: 5000)]]), 413, "--max-body-bytes"),
        ]
        try await app.test(.router) { client in
            #expect(try await eventually { try await servedStep(client) == 1 })
            for (name, body, status, fragment) in cases {
                let r = try await post(client, body)
                #expect(Int(r.status.code) == status, "\(name): got \(r.status.code) \(String(buffer: r.body))")
                #expect(errorText(r).contains(fragment), "\(name): \(errorText(r))")
            }
            let ok = try await recommend(client, ["history": ["i2"], "n": 1])
            #expect(ok.items.count == 1)
            let m = try PrometheusText(String(buffer: try await client.execute(uri: "/metrics", method: .get).body))
            #expect(m.value("streamrec_serve_requests_total", ["endpoint": "/v1/recommend", "status": "400"]) == 19)
            #expect(m.value("streamrec_serve_requests_total", ["endpoint": "/v1/recommend", "status": "413"]) == 3)
        }
    }

    @Test("Redis paused: stateless 200, stateful 503 with Retry-After; resumed: stateful 200 again by itself")
    func redisPausedThenResumed() async throws {
        let fx = try TinyRecommenderFixture()
        try fx.write(step: 1)
        let redis = try RedisServerFixture()
        defer { redis.stop() }
        try writeUserState(redis.address, user: "u7", featurizedState(items: [4, 5, 6]).state)
        let (app, _, _) = recommendApp(fx.root, redis: redis.endpoint, timeout: .milliseconds(200))
        let stateless = jsonBody(["user": "u7", "history": ["i4", "i5", "i6"], "n": 3])
        let stateful = jsonBody(["user": "u7", "n": 3])
        try await app.test(.router) { client in
            #expect(try await eventually { try await servedStep(client) == 1 })
            let before = try await post(client, stateful)
            #expect(before.status == .ok)
            let beforeText = String(buffer: before.body)
            // The stateless answer for the same items is the stateful one (same state, same masks).
            let statelessResponse = try await post(client, stateless)
            let statelessAnswer = try decodeAnswer(String(buffer: statelessResponse.body))
            let statefulAnswer = try decodeAnswer(beforeText)
            #expect(statefulAnswer.items == statelessAnswer.items)
            redis.pause()
            for _ in 0..<3 {
                let started = ContinuousClock.now
                let r = try await post(client, stateful)
                let elapsed = ContinuousClock.now - started
                let message = errorText(r)
                #expect(r.status == .serviceUnavailable, "\(message)")
                #expect(r.headers[.retryAfter] == "1")
                #expect(message.hasPrefix("feature store unavailable: ") && message.contains("stateless"), "\(message)")
                #expect(elapsed < .seconds(2), "a 503 took \(elapsed)")
                let other = try await post(client, stateless)
                #expect(other.status == .ok)
            }
            redis.resume()
            // Polled inline: a closure capturing the request body crashes the Swift 6.3 compiler
            // (region analysis, SendNonSendable).
            var back = false
            let deadline = ContinuousClock.now + .seconds(30)
            while !back && ContinuousClock.now < deadline {
                back = try await post(client, stateful).status == .ok
                if !back { try await Task.sleep(for: .milliseconds(20)) }
            }
            #expect(back, "the stateful form did not recover after Redis resumed")
            let after = try await post(client, stateful)
            #expect(String(buffer: after.body) == beforeText)
        }
    }

    @Test("hot reload of RL versions under concurrent traffic: every request answered; a corrupt version is refused, the last good one kept")
    func reloadUnderTraffic() async throws {
        let fx = try TinyRecommenderFixture()
        try fx.write(step: 1)
        let redis = try RedisServerFixture()
        defer { redis.stop() }
        try writeUserState(redis.address, user: "u1", featurizedState(items: [2, 3, 4, 5, 6]).state)
        let (app, state, _) = recommendApp(fx.root, redis: redis.endpoint)
        try await app.test(.router) { client in
            #expect(try await eventually { try await servedStep(client) == 1 })
            let bodies = [jsonBody(["user": "u1", "n": 5]), jsonBody(["history": ["i2", "i9"], "n": 5]),
                          jsonBody(["requests": [["user": "u1"], ["history": ["i3"]]]])]
            let writer = Task {
                for step in 2...6 {
                    try fx.write(step: step)
                    try await Task.sleep(for: .milliseconds(120))
                }
            }
            let results = try await withThrowingTaskGroup(of: [(Int, Int)].self) { group in
                for k in 0..<4 {
                    group.addTask {
                        var out: [(Int, Int)] = []
                        let end = Date().addingTimeInterval(1.0)
                        while Date() < end {
                            let r = try await post(client, bodies[k % bodies.count])
                            var step = -1
                            if r.status == .ok, k % bodies.count != 2 { step = try decodeAnswer(String(buffer: r.body)).step }
                            out.append((Int(r.status.code), step))
                        }
                        return out
                    }
                }
                return try await group.reduce(into: []) { $0 += $1 }
            }
            try await writer.value
            #expect(!results.isEmpty && results.allSatisfy { $0.0 == 200 }, "\(results.filter { $0.0 != 200 }.prefix(5))")
            #expect(try await eventually { try await servedStep(client) == 6 })
            #expect(state.metrics.rejectedCheckpoints == 0)

            try fx.writeCorrupt(step: 7)
            #expect(await eventually { state.metrics.rejectedCheckpoints == 1 })
            #expect(try await servedStep(client) == 6)
            #expect(try await recommend(client, ["user": "u1"]).step == 6)
            try fx.write(step: 8)
            #expect(try await eventually { try await servedStep(client) == 8 })
        }
    }

    @Test("one server, one kind: a version of another kind is refused (kind_changed) and the other family's route answers 409")
    func kindChangeRefused() async throws {
        let wd = try TinyModelFixture()
        let rl = try TinyRecommenderFixture(root: wd.root)
        try wd.write(step: 1)
        let lines = CapturedLog()
        let (app, state, _) = recommendApp(wd.root, logger: lines.logger("serve"))
        try await app.test(.router) { client in
            #expect(try await eventually { try await servedStep(client) == 1 })
            let conflict = try await post(client, jsonBody(["history": ["i2"]]))
            #expect(conflict.status == .conflict)
            #expect(errorText(conflict).contains("'widedeep'") && errorText(conflict).contains("/v1/predict"), "\(errorText(conflict))")
            try rl.write(step: 2)
            #expect(await eventually { state.metrics.rejectedCheckpoints(reason: "kind_changed") == 1 })
            #expect(try await servedStep(client) == 1)
            #expect(try await post(client, jsonBody(["rows": [wd.rows[0]]]), to: "/v1/predict").status == .ok)
            #expect(lines.text.contains("holds a 'reinforce' model but this server serves 'widedeep'"), "\(lines.text)")
            try wd.write(step: 3)
            #expect(try await eventually { try await servedStep(client) == 3 })
        }
        // And the other way round.
        let rl2 = try TinyRecommenderFixture()
        let wd2 = try TinyModelFixture()
        try rl2.write(step: 1)
        let (app2, state2, _) = recommendApp(rl2.root)
        try await app2.test(.router) { client in
            #expect(try await eventually { try await servedStep(client) == 1 })
            let r = try await post(client, jsonBody(["rows": [wd2.rows[0]]]), to: "/v1/predict")
            #expect(r.status == .conflict)
            #expect(errorText(r).contains("'reinforce'") && errorText(r).contains("/v1/recommend"), "\(errorText(r))")
            let moved = try wd2.write(step: 2)
            try FileManager.default.moveItem(at: moved, to: rl2.root.appendingPathComponent(moved.lastPathComponent))
            try Data((moved.lastPathComponent + "\n").utf8).write(to: rl2.root.appendingPathComponent("LATEST"), options: .atomic)
            #expect(await eventually { state2.metrics.rejectedCheckpoints(reason: "kind_changed") == 1 })
            #expect(try await recommend(client, ["history": ["i2"]]).step == 1)
        }
    }
}

