import Testing
import Foundation
import TestSupport
import FeatureStore
import Streaming

/// Headless Chromium (Debian's `chromium`), if installed; `STREAMREC_CHROMIUM` names another binary.
let chromiumBinary: String? = {
    if let path = ProcessInfo.processInfo.environment["STREAMREC_CHROMIUM"], !path.isEmpty {
        return FileManager.default.isExecutableFile(atPath: path) ? path : nil
    }
    return findExecutable("chromium") ?? findExecutable("chromium-browser")
}()
/// scripts/test.sh sets STREAMREC_REQUIRE_CHROMIUM=1: there a missing browser fails the test.
let chromiumRequired = ProcessInfo.processInfo.environment["STREAMREC_REQUIRE_CHROMIUM"] == "1"

/// `streamrec dashboard` in a real browser: a small cluster (redis-server, `streamrec broker`,
/// produce, a featurize worker, `mpirun -np 2 train`, serve) runs; the dashboard is started on it;
/// headless Chromium loads the page, takes a screenshot and dumps the DOM, and the test checks
/// the page against what the cluster itself reports.
@Suite(.serialized) struct DashboardBrowserTests {
    let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../..").standardized

    @Test(.enabled(if: chromiumBinary != nil || chromiumRequired,
                   "no chromium on PATH (apt-get install chromium); set STREAMREC_REQUIRE_CHROMIUM=1 to make this a failure"))
    func dashboardShowsTheRunningClusterInChromium() throws {
        let chromium = try #require(chromiumBinary, "STREAMREC_REQUIRE_CHROMIUM=1 but no chromium on PATH: apt-get install -y chromium (scripts/setup.sh installs it)")
        let bin = try #require(streamrecBinary())
        let mpirun = try #require(findExecutable("mpirun"))
        let curl = try #require(findExecutable("curl"))
        let partitions = 4, rows = 4_000
        let redis = try RedisServerFixture()
        defer { redis.stop() }
        let broker = try BrokerFixture(topics: ["criteo": partitions])
        defer { _ = broker.stop() }
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let data = dir.appendingPathComponent("data").path, ck = dir.appendingPathComponent("checkpoints").path
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        func run(_ args: [String]) throws {
            let r = try runProcess(bin, args, timeout: .seconds(120))
            try #require(r.status == 0, "streamrec \(args.joined(separator: " ")):\n\(r.stdout)\n\(r.stderr)")
        }
        try run(["gen", "--rows", "\(rows)", "--holdout-rows", "200", "--out", "\(data)/train.tsv"])
        try run(["stats", "--data", "\(data)/train.tsv", "--out", "\(data)/features.stats", "--min-frequency", "5"])
        try run(["produce", "--data", "\(data)/train.tsv", "--topic", "criteo", "--bootstrap-file", broker.bootstrapFile.path])

        // A featurize worker that stays up (its heartbeat keeps it live on the page).
        let redisAddress = "127.0.0.1:\(redis.port)"
        let featurize = try BackgroundProcess(bin, ["featurize", "--config", "/dev/null", "--topic", "criteo", "--bootstrap", broker.bootstrapServers,
                                                    "--redis", redisAddress, "--stats", "\(data)/features.stats", "--batch-size", "100",
                                                    "--linger-ms", "200", "--feature-shards", "4"],
                                              log: dir.appendingPathComponent("featurize.log"))
        defer { featurize.kill() }
        let store = FeatureStore(redis: try RedisConnection(host: "127.0.0.1", port: redis.port), prefix: "sr")
        let featurized = try poll(for: 90) { try store.status().shards.map(\.rows).reduce(0, +) >= Int64(rows) }
        try #require(featurized, "featurize did not store \(rows) rows:\n\(featurize.output)")

        let servePort = try freeLoopbackPort()
        let serve = try BackgroundProcess(bin, ["serve", "--config", "/dev/null", "--checkpoints", ck, "--port", "\(servePort)"],
                                          log: dir.appendingPathComponent("serve.log"))
        defer { serve.kill() }

        // Trains every batch (4,000 rows in batches of 100 over 2 ranks: ~20 steps, a history
        // point every 5), then stops once idle; its final checkpoint is the newest version.
        let train = try runProcess(mpirun, ["-np", "2", "--oversubscribe", bin, "train", "--source", "redis", "--redis", redisAddress,
                                            "--config", repo.appendingPathComponent("configs/widedeep.yaml").path, "--preset", "small",
                                            "--stats", "\(data)/features.stats", "--feature-shards", "4", "--checkpoint-dir", ck,
                                            "--checkpoint-every", "10", "--log-every", "5", "--until-idle", "3"],
                                   environment: mpiTestEnvironment, timeout: .seconds(300))
        try #require(train.status == 0, "\(train.stdout)\n\(train.stderr)")
        let latest = try String(contentsOfFile: ck + "/LATEST", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let manifest = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(ck)/\(latest)/manifest.json"))) as? [String: Any])
        let finalStep = try #require(manifest["step"] as? Int)
        try #require(finalStep >= 10, "expected at least 10 steps: \(train.stdout)")

        // serve reports the newest version.
        func get(_ url: String) -> String? {
            guard let r = try? runProcess(curl, ["-sf", "--max-time", "2", url], timeout: .seconds(5)), r.status == 0 else { return nil }
            return r.stdout
        }
        var servedVersion = ""
        let served = poll(for: 30) {
            guard let body = get("http://127.0.0.1:\(servePort)/v1/model"),
                  let obj = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any],
                  let v = obj["model_version"] as? String else { return false }
            servedVersion = v
            return v == latest
        }
        try #require(served, "serve did not load \(latest) (serves '\(servedVersion)'):\n\(serve.output)")

        let port = try freeLoopbackPort()
        let dashboard = try BackgroundProcess(bin, ["dashboard", "--config", "/dev/null", "--redis", redisAddress, "--port", "\(port)",
                                                    "--serve", "http://127.0.0.1:\(servePort)", "--checkpoints", ck,
                                                    "--topic", "criteo", "--bootstrap", broker.bootstrapServers, "--refresh", "1"],
                                              log: dir.appendingPathComponent("dashboard.log"))
        defer { dashboard.kill() }
        let url = "http://127.0.0.1:\(port)/"
        // Until the dashboard has read the whole history, the served version and Kafka's lag.
        var snapshot: [String: Any] = [:]
        let ready = poll(for: 60) {
            guard let body = get(url + "dashboard.json"),
                  let obj = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any] else { return false }
            snapshot = obj
            let history = obj["history"] as? [[String: Any]] ?? []
            let cluster = obj["cluster"] as? [String: Any]
            let parts = cluster?["partitions"] as? [[String: Any]] ?? []
            return history.count >= 2 && history.last?["step"] as? Int == finalStep
                && (obj["served"] as? [String: Any])?["model_version"] as? String == latest
                && parts.count == partitions && parts.allSatisfy { $0["lag"] != nil }
        }
        try #require(ready, "dashboard.json never showed the cluster: \(snapshot)\n\(dashboard.output)")
        let history = snapshot["history"] as? [[String: Any]] ?? []
        #expect(history.allSatisfy { ($0["metrics"] as? [String: Any])?["wide_loss"] != nil }, "\(history)")
        #expect(history.contains { $0["freshness_ms"] != nil }, "trained batches carry Kafka timestamps: \(history)")
        #expect(history.last?["ranks"] as? Int == 2)

        // The browser.
        let shot = dir.appendingPathComponent("dashboard.png")
        let profile = dir.appendingPathComponent("chromium-profile").path
        let browser = ["--headless", "--no-sandbox", "--disable-gpu", "--user-data-dir=\(profile)", "--hide-scrollbars"]
        let screenshot = try runProcess(chromium, browser + ["--screenshot=\(shot.path)", "--window-size=1280,2000", url], timeout: .seconds(120))
        #expect(screenshot.status == 0, "\(screenshot.stdout)\n\(screenshot.stderr)")
        let png = try Data(contentsOf: shot)
        #expect(png.starts(with: [0x89, 0x50, 0x4E, 0x47]), "not a PNG")
        #expect(png.count > 20_000, "screenshot only \(png.count) bytes")
        if png.count > 24 {
            func be32(_ at: Int) -> Int { png[at..<(at + 4)].reduce(0) { $0 << 8 | Int($1) } }
            // IHDR: width and height. Chromium may scale by the device pixel ratio, never shrink.
            #expect(be32(16) >= 1280 && be32(20) >= 2000, "screenshot \(be32(16))×\(be32(20))")
        }
        if let keep = ProcessInfo.processInfo.environment["STREAMREC_DASHBOARD_SCREENSHOT"], !keep.isEmpty {
            try? FileManager.default.removeItem(atPath: keep)
            try? FileManager.default.copyItem(at: shot, to: URL(fileURLWithPath: keep))
        }

        let dump = try runProcess(chromium, browser + ["--dump-dom", url], timeout: .seconds(120))
        #expect(dump.status == 0, "\(dump.stderr)")
        let dom = dump.stdout
        #expect(dom.contains(#"<table id="partitions">"#), "\(dom.prefix(3000))")
        #expect(dom.components(separatedBy: #"<tr class="partition">"#).count - 1 == partitions, "one row per Kafka partition")
        #expect(dom.contains(#"<table id="workers">"#) && dom.contains(#"<tr class="worker">"#))
        // A chart: an SVG with a polyline of at least 2 points.
        let polylines = dom.components(separatedBy: "<polyline").dropFirst().compactMap { tail -> Int? in
            guard let r = tail.range(of: #"points=""#), let end = tail[r.upperBound...].firstIndex(of: "\"") else { return nil }
            return tail[r.upperBound..<end].split(separator: " ").count
        }
        #expect(dom.contains("<svg") && polylines.contains { $0 >= 2 }, "polylines: \(polylines)")
        #expect(dom.contains(latest), "the served version \(latest)")
        let trainerCards = try #require(dom.range(of: #"id="trainer-cards""#)).upperBound
        let trainerCardsEnd = dom.range(of: #"id="trainer-charts""#)?.lowerBound ?? dom.endIndex
        #expect(dom[trainerCards..<trainerCardsEnd].contains(#">\#(finalStep)</div><div class="k">step</div>"#),
                "the trainer's step \(finalStep): \(dom[trainerCards..<trainerCardsEnd].prefix(2000))")
        #expect(!dom.contains("<script"), "the page needs no script")

        // SIGTERM stops it cleanly.
        kill(dashboard.pid, SIGTERM)
        #expect(dashboard.waitForExit(within: 15), "dashboard did not stop on SIGTERM")
        #expect(dashboard.exitStatus == 0, "\(dashboard.output)")
        #expect(dashboard.output.contains("dashboard: stopped"), "\(dashboard.output)")
    }

    /// The trainer's history is best effort: with every write refused (the key holds a string, so
    /// RPUSH answers WRONGTYPE) training runs to the end, says so once, and the next run writes it.
    @Test func historyWriteFailuresNeverStopTraining() throws {
        let mpirun = try #require(findExecutable("mpirun"))
        let redis = try RedisServerFixture()
        defer { redis.stop() }
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let online = OnlineTrainingTests()
        let stats = try online.fillStore(redisPort: redis.port, dir: dir, rows: 2_000, batch: 100, shards: 4)
        let conn = try RedisConnection(host: "127.0.0.1", port: redis.port)
        _ = try conn.command(["SET", "sr:train:history", "not a list"])
        let ck = dir.appendingPathComponent("ck").path
        let r = try runProcess(mpirun, ["-np", "2"] + online.trainArgs(redisPort: redis.port, stats: stats, ck: ck),
                               environment: mpiTestEnvironment, timeout: .seconds(240))
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)")
        let output = r.stdout + r.stderr
        #expect(output.components(separatedBy: "trainer history: could not write sr:train:history").count - 1 == 1, "\(output)")
        #expect(try online.manifest(ck)["samples_trained"] as? Int == 2_000)
        #expect(try conn.command(["GET", "sr:train:history"]).text == "not a list")

        // Writable again: the next run (resuming, more data) records its points.
        _ = try conn.command(["DEL", "sr:train:history"])
        _ = try online.fillStore(redisPort: redis.port, dir: dir, batchSizes: Array(repeating: 100, count: 12), shards: 4, seed: 22)
        let again = try runProcess(mpirun, ["-np", "2"] + online.trainArgs(redisPort: redis.port, stats: stats, ck: ck),
                                   environment: mpiTestEnvironment, timeout: .seconds(240))
        #expect(again.status == 0, "\(again.stdout)\n\(again.stderr)")
        let points = try TrainerHistory(layout: FeatureStoreLayout(prefix: "sr")).read(from: conn)
        #expect(points.count >= 2, "\(points)")
        #expect(points.last?.step == (try online.manifest(ck)["step"] as? Int), "the last point is the last step")
        #expect(points.allSatisfy { $0.kind == "widedeep" && $0.ranks == 2 && $0.metrics["wide_loss"] != nil })
        #expect(points.map(\.step) == points.map(\.step).sorted())
    }
}
