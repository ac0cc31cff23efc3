import Foundation
import Logging
import Observability
import Testing
import Hummingbird
import HummingbirdTesting
import Checkpoint
import Features
@testable import Serving

private func makeApp(_ fx: TinyModelFixture, limits: RequestLimits = RequestLimits(maxRows: 100, maxBodyBytes: 1 << 20),
                     port: Int = 0) -> (app: some ApplicationProtocol, state: ServingState, watcher: CheckpointWatcher) {
    let settings = ServeSettings(checkpoints: fx.root, host: "127.0.0.1", port: port, limits: limits,
                                 pollInterval: .milliseconds(50))
    return buildServingApplication(settings: settings, logger: Logger(label: "serve", factory: { _ in SwiftLogNoOpLogHandler() }))
}

private func post(_ client: some TestClientProtocol, _ body: String) async throws -> TestResponse {
    try await client.execute(uri: "/v1/predict", method: .post, headers: [.contentType: "application/json"],
                             body: ByteBuffer(string: body))
}

private func decode(_ r: TestResponse) throws -> PredictResponse {
    try JSONDecoder().decode(PredictResponse.self, from: Data(String(buffer: r.body).utf8))
}

private func errorMessage(_ r: TestResponse) -> String? {
    let object = try? JSONSerialization.jsonObject(with: Data(String(buffer: r.body).utf8)) as? [String: Any]
    return object?["error"] as? String
}

private func modelStep(_ client: some TestClientProtocol) async throws -> Int? {
    let r = try await client.execute(uri: "/v1/model", method: .get)
    guard r.status == .ok else { return nil }
    let object = try JSONSerialization.jsonObject(with: Data(String(buffer: r.body).utf8)) as? [String: Any]
    return object?["step"] as? Int
}

@Suite("Inference worker") struct ServingTests {
    @Test("rows and instances give the model's own probabilities")
    func predictMatchesDirectModel() async throws {
        let fx = try TinyModelFixture()
        let ckpt = try fx.write(step: 100)
        let expected = try fx.directPredictions(checkpoint: ckpt, rows: Array(fx.rows.prefix(20)))
        let (app, _, _) = makeApp(fx)
        try await app.test(.router) { client in
            #expect(try await eventually { try await modelStep(client) == 100 })
            let byRows = try await post(client, jsonBody(["rows": Array(fx.rows.prefix(20))]))
            #expect(byRows.status == .ok)
            let a = try decode(byRows)
            #expect(a.model_version == "step-000000000100" && a.step == 100)
            #expect(a.probabilities.count == 20)
            for (p, q) in zip(a.probabilities, expected) { #expect(abs(p - q) <= 1e-6) }

            let byInstances = try await post(client, jsonBody(["instances": fx.rows.prefix(20).map(instance(fromRow:))]))
            #expect(byInstances.status == .ok)
            let b = try decode(byInstances)
            for (p, q) in zip(b.probabilities, expected) { #expect(abs(p - q) <= 1e-6) }

            // Floats and nulls are accepted; a missing key is a missing value.
            var object = instance(fromRow: fx.rows[0])
            object["I1"] = 2.5
            object["C3"] = NSNull()
            let c = try await post(client, jsonBody(["instances": [object, [String: Any]()]]))
            #expect(c.status == .ok)
            #expect(try decode(c).probabilities.count == 2)
        }
    }

    @Test("503 before any checkpoint, ready once one is written")
    func notReadyThenReady() async throws {
        let fx = try TinyModelFixture()
        let (app, _, _) = makeApp(fx)
        try await app.test(.router) { client in
            #expect(try await client.execute(uri: "/healthz", method: .get).status == .ok)
            #expect(try await client.execute(uri: "/readyz", method: .get).status == .serviceUnavailable)
            let early = try await post(client, jsonBody(["rows": [fx.rows[0]]]))
            #expect(early.status == .serviceUnavailable)
            #expect(errorMessage(early)?.contains("no model loaded") == true)
            #expect(try await client.execute(uri: "/v1/model", method: .get).status == .serviceUnavailable)
            try fx.write(step: 10)
            #expect(try await eventually { try await client.execute(uri: "/readyz", method: .get).status == .ok })
            #expect(try await post(client, jsonBody(["rows": [fx.rows[0]]])).status == .ok)
        }
    }

    @Test("hot reload; corrupt and missing versions are refused once and the last good one keeps serving")
    func hotReloadAndRefusal() async throws {
        let fx = try TinyModelFixture()
        try fx.write(step: 100)
        let (app, state, _) = makeApp(fx)
        try await app.test(.router) { client in
            #expect(try await eventually { try await modelStep(client) == 100 })
            // How fast a new version is noticed is measured by the serve benchmark, not here.
            try fx.write(step: 200)
            #expect(try await eventually { try await modelStep(client) == 200 })

            try fx.writeCorrupt(step: 300)
            #expect(try await eventually { state.metrics.rejectedCheckpoints == 1 })
            #expect(try await modelStep(client) == 200)
            let r = try await post(client, jsonBody(["rows": [fx.rows[0]]]))
            #expect(r.status == .ok)
            #expect(try decode(r).step == 200)
            // Several polls (300 ms): not retried.
            #expect(await !eventually(0.3) { state.metrics.rejectedCheckpoints != 1 })

            try fx.pointLatest(at: "step-000000000999")  // no such directory
            #expect(try await eventually { state.metrics.rejectedCheckpoints == 2 })
            #expect(try await modelStep(client) == 200)

            try fx.write(step: 400)  // a good version after bad ones is picked up
            #expect(try await eventually { try await modelStep(client) == 400 })
            let metrics = try PrometheusText(String(buffer: try await client.execute(uri: "/metrics", method: .get).body))
            #expect(metrics.value("streamrec_serve_rejected_checkpoints_total") == 2)
            #expect(metrics.value("streamrec_serve_rejected_checkpoints_total", ["reason": "invalid_checkpoint"]) == 2)
            #expect(metrics.value("streamrec_serve_reloads_total") == 3)
        }
    }

    @Test("an incompatible checkpoint (tensor shapes do not match its config) is refused")
    func incompatibleRefused() async throws {
        let fx = try TinyModelFixture()
        let good = try fx.write(step: 1)
        let slot = ModelSlot(), metrics = ServingMetrics()
        let watcher = CheckpointWatcher(root: fx.root, slot: slot, metrics: metrics, workspaceRows: 8, logger: Logger(label: "serve", factory: { _ in SwiftLogNoOpLogHandler() }))
        #expect(await watcher.pollOnce() == .loaded(version: good.lastPathComponent))
        // Rewrite step 2's manifest to claim a different embedding size, with matching checksums.
        let bad = try fx.write(step: 2)
        let manifestURL = bad.appendingPathComponent(CheckpointManifest.fileName)
        let text = try String(contentsOf: manifestURL, encoding: .utf8)
        let patched = text.replacingOccurrences(of: #"("embedding_?[sS]ize"\s*:\s*)4\b"#, with: "$15",
                                                options: .regularExpression)
        #expect(patched != text, "could not find the embedding size in \(text)")
        try patched.write(to: manifestURL, atomically: true, encoding: .utf8)
        guard case .rejected = await watcher.pollOnce() else { Issue.record("incompatible checkpoint was loaded"); return }
        #expect(slot.current?.step == 1)
        #expect(metrics.rejectedCheckpoints == 1)
        #expect(await watcher.pollOnce() == .unchanged)  // remembered, not retried
    }

    @Test("the old version is freed when the last request holding it ends")
    func oldVersionFreed() async throws {
        let fx = try TinyModelFixture()
        try fx.write(step: 1)
        let slot = ModelSlot(), metrics = ServingMetrics()
        let watcher = CheckpointWatcher(root: fx.root, slot: slot, metrics: metrics, workspaceRows: 8, logger: Logger(label: "serve", factory: { _ in SwiftLogNoOpLogHandler() }))
        _ = await watcher.pollOnce()
        var inFlight: WideDeepServable? = slot.wideDeep  // a request that started on version 1
        weak let old = inFlight
        #expect(old?.step == 1)
        try fx.write(step: 2)
        #expect(await watcher.pollOnce() == .loaded(version: "step-000000000002"))
        #expect(slot.current?.step == 2)
        #expect(old != nil)  // still held by the request in flight, which finishes on it
        let p = inFlight!.predict(rows: [try CriteoParser(labels: .optional).parse(fx.rows[0])])
        #expect(p.count == 1)
        inFlight = nil
        #expect(old == nil)
    }

    @Test("requests in flight during swaps all succeed")
    func concurrentRequestsDuringSwaps() async throws {
        let fx = try TinyModelFixture()
        try fx.write(step: 1)
        let (app, state, _) = makeApp(fx)
        try await app.test(.router) { client in
            #expect(try await eventually { try await modelStep(client) == 1 })
            let body = jsonBody(["rows": Array(fx.rows.prefix(10))])
            let writer = Task {
                for step in 2...6 {
                    try fx.write(step: step)
                    try await Task.sleep(for: .milliseconds(120))
                }
            }
            let results = try await withThrowingTaskGroup(of: [Int].self) { group in
                for _ in 0..<4 {
                    group.addTask {
                        var statuses: [Int] = []
                        let end = Date().addingTimeInterval(1.0)
                        while Date() < end {
                            statuses.append(Int(try await post(client, body).status.code))
                        }
                        return statuses
                    }
                }
                return try await group.reduce(into: []) { $0 += $1 }
            }
            try await writer.value
            #expect(!results.isEmpty)
            #expect(results.allSatisfy { $0 == 200 })
            #expect(try await eventually { try await modelStep(client) == 6 })
            #expect(state.metrics.rejectedCheckpoints == 0)
        }
    }

    @Test("every kind of bad request gets a 4xx with a message")
    func badRequests() async throws {
        let fx = try TinyModelFixture()
        try fx.write(step: 1)
        let (app, _, _) = makeApp(fx, limits: RequestLimits(maxRows: 5, maxBodyBytes: 4000))
        let good = instance(fromRow: fx.rows[0])
        var unknownKey = good; unknownKey["I14"] = 1
        var stringDense = good; stringDense["I2"] = "three"
        var boolDense = good; boolDense["I2"] = true
        var numberCategory = good; numberCategory["C1"] = 5
        var tabCategory = good; tabCategory["C1"] = "a\tb"
        let cases: [(String, String, Int)] = [
            ("malformed JSON", "{\"rows\": [", 400),
            ("not an object", "[1, 2]", 400),
            ("unknown top-level key", jsonBody(["rows": [fx.rows[0]], "extra": 1]), 400),
            ("both keys", jsonBody(["rows": [fx.rows[0]], "instances": [good]]), 400),
            ("neither key", "{}", 400),
            ("empty rows", jsonBody(["rows": [String]()]), 400),
            ("empty instances", jsonBody(["instances": [Any]()]), 400),
            ("rows not an array", jsonBody(["rows": "x"]), 400),
            ("row not a string", jsonBody(["rows": [1]]), 400),
            ("wrong field count", jsonBody(["rows": ["1\t2\t3"]]), 400),
            ("non-numeric dense", jsonBody(["rows": ["x" + fx.rows[0]]]), 400),
            ("instance not an object", jsonBody(["instances": [1]]), 400),
            ("unknown instance key", jsonBody(["instances": [unknownKey]]), 400),
            ("string dense value", jsonBody(["instances": [stringDense]]), 400),
            ("bool dense value", jsonBody(["instances": [boolDense]]), 400),
            ("number category", jsonBody(["instances": [numberCategory]]), 400),
            ("tab in category", jsonBody(["instances": [tabCategory]]), 400),
            ("too many rows", jsonBody(["rows": Array(repeating: fx.rows[0], count: 6)]), 413),
            ("body too long", jsonBody(["rows": Array(repeating: fx.rows[0], count: 40)]), 413),
        ]
        try await app.test(.router) { client in
            #expect(try await eventually { try await modelStep(client) == 1 })
            for (name, body, status) in cases {
                let r = try await post(client, body)
                #expect(Int(r.status.code) == status, "\(name): got \(r.status.code) \(String(buffer: r.body))")
                let message = errorMessage(r)
                #expect(message != nil && !(message!.isEmpty), "\(name): no error message in \(String(buffer: r.body))")
            }
            let wrong = try await post(client, jsonBody(["rows": ["1\t2\t3"]]))
            #expect(errorMessage(wrong)?.contains("wrong_field_count") == true)
            #expect(errorMessage(wrong)?.contains("got 3") == true)
            // Still serving after all of that.
            #expect(try await post(client, jsonBody(["rows": [fx.rows[0]]])).status == .ok)
            let m = try PrometheusText(String(buffer: try await client.execute(uri: "/metrics", method: .get).body))
            #expect(m.value("streamrec_serve_requests_total", ["endpoint": "/v1/predict", "status": "400"]) == 18)
        }
    }

    @Test("/metrics exposes the expected series")
    func metricsNames() async throws {
        let fx = try TinyModelFixture()
        try fx.write(step: 42)
        let (app, _, _) = makeApp(fx)
        try await app.test(.router) { client in
            #expect(try await eventually { try await modelStep(client) == 42 })
            _ = try await post(client, jsonBody(["rows": Array(fx.rows.prefix(3))]))
            let r = try await client.execute(uri: "/metrics", method: .get)
            #expect(r.status == .ok)
            let m = try PrometheusText(String(buffer: r.body))
            #expect(m.value("streamrec_serve_requests_total", ["endpoint": "/v1/predict", "status": "200"]) == 1)
            #expect(m.value("streamrec_serve_request_duration_seconds_bucket", ["endpoint": "/v1/predict", "le": "+Inf"]) == 1)
            #expect(m.value("streamrec_serve_request_duration_seconds_count", ["endpoint": "/v1/predict"]) == 1)
            #expect((m.value("streamrec_serve_request_duration_seconds_sum", ["endpoint": "/v1/predict"]) ?? -1) > 0)
            #expect(m.value("streamrec_serve_rows_predicted_total") == 3)
            #expect(m.value("streamrec_serve_reloads_total") == 1)
            #expect(m.value("streamrec_serve_rejected_checkpoints_total") == 0)
            #expect(m.value("streamrec_serve_model_step") == 42)
            #expect(m.value("streamrec_serve_model_info", ["version": "step-000000000042", "kind": "widedeep"]) == 1)
            #expect((m.value("streamrec_serve_model_load_seconds") ?? 0) > 0)
            #expect(m.value("streamrec_serve_model_loaded") == 1)
            #expect(m.types["streamrec_serve_request_duration_seconds"] == "histogram")
            // Every family the catalogue lists for serve is exposed, and nothing outside it.
            for def in Metric.of(.serve) { #expect(def.seriesNames.contains { m.names.contains($0) }, "missing \(def.name)") }
            for name in m.names { #expect(Metric.definition(ofSeries: name)?.component == .serve, "\(name) is not in the catalogue") }
        }
    }

    @Test("freshness: a version whose manifest says when its newest batch was produced is observed at load")
    func freshnessHistogram() async throws {
        let fx = try TinyModelFixture()
        let produced = Int64(Date().timeIntervalSince1970 * 1000) - 7_000
        try fx.write(step: 5, newestEventProducedMs: produced)
        let (app, _, _) = makeApp(fx)
        try await app.test(.router) { client in
            #expect(try await eventually { try await modelStep(client) == 5 })
            let m = try PrometheusText(String(buffer: try await client.execute(uri: "/metrics", method: .get).body))
            #expect(m.value("streamrec_serve_freshness_seconds_count") == 1)
            let age = m.value("streamrec_serve_freshness_seconds_sum") ?? -1
            #expect(age >= 7 && age < 60, "freshness \(age) s for a version produced 7 s ago")
            #expect(m.value("streamrec_serve_freshness_seconds_bucket", ["le": "5.0"]) == 0)
            #expect(m.value("streamrec_serve_freshness_seconds_bucket", ["le": "10.0"]) == 1)
            #expect(m.value("streamrec_serve_model_newest_event_timestamp_seconds") == Double(produced) / 1000)
            // A version without the field (written before it existed) loads and is not observed.
            try fx.write(step: 6)
            #expect(try await eventually { try await modelStep(client) == 6 })
            let after = try PrometheusText(String(buffer: try await client.execute(uri: "/metrics", method: .get).body))
            #expect(after.value("streamrec_serve_freshness_seconds_count") == 1)
            #expect(after.value("streamrec_serve_model_newest_event_timestamp_seconds") == 0)
        }
    }

    @Test("live server: predict, hot reload, refusal over a real socket")
    func liveServer() async throws {
        let fx = try TinyModelFixture()
        let (app, state, _) = makeApp(fx)
        try await app.test(.live) { client in
            #expect(try await client.execute(uri: "/readyz", method: .get).status == .serviceUnavailable)
            let ckpt = try fx.write(step: 5)
            #expect(try await eventually { try await modelStep(client) == 5 })
            let expected = try fx.directPredictions(checkpoint: ckpt, rows: Array(fx.rows.prefix(8)))
            let r = try await post(client, jsonBody(["instances": fx.rows.prefix(8).map(instance(fromRow:))]))
            #expect(r.status == .ok)
            for (p, q) in zip(try decode(r).probabilities, expected) { #expect(abs(p - q) <= 1e-6) }
            try fx.write(step: 6)
            #expect(try await eventually { try await modelStep(client) == 6 })
            try fx.writeCorrupt(step: 7)
            #expect(try await eventually { state.metrics.rejectedCheckpoints == 1 })
            #expect(try await modelStep(client) == 6)
            #expect(try await post(client, "nope").status == .badRequest)
        }
    }
}
