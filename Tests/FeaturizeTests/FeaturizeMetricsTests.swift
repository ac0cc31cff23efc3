import Features
import Featurize
import FeatureStore
import Foundation
import Observability
import Streaming
import Testing
import TestSupport

/// `streamrec featurize --metrics-port 0` as a process: GET /metrics during and after a run says
/// what the run did (rows, batches, dead letters by reason, lag, leases) and agrees with the
/// worker's own summary.
@Suite("featurize GET /metrics", .serialized, .timeLimit(.minutes(5)))
struct FeaturizeMetricsTests {
    @Test("rows in = rows produced, dead letters by reason, lag drains to 0, and the scrape matches the summary")
    func scrapeDuringAndAfterRun() throws {
        let redis = try RedisServerFixture()
        defer { redis.stop() }
        let cluster = try startBroker(.mock, topics: ["metrics": 4])
        defer { cluster.stop() }
        var rows = syntheticRows(6_000, seed: 5)
        let stats = statsFor(Array(rows.prefix(2000)))
        // Malformed rows of two kinds: too few fields, and a non-numeric dense value.
        let short = Array(stride(from: 11, to: rows.count, by: 173))
        let nonNumeric = Array(stride(from: 50, to: rows.count, by: 401)).filter { !short.contains($0) }
        for i in short { rows[i] = Array("bad\trow".utf8) }
        for i in nonNumeric {
            var fields = String(decoding: rows[i], as: UTF8.self).split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            fields[1] = "x1"
            rows[i] = Array(fields.joined(separator: "\t").utf8)
        }
        try produce(rows, topic: "metrics", bootstrap: cluster.bootstrapServers, partitions: 4)
        let statsFile = FileManager.default.temporaryDirectory.appendingPathComponent("metrics-\(UUID().uuidString).stats")
        defer { try? FileManager.default.removeItem(at: statsFile) }
        try stats.write(to: statsFile)
        let worker = try StreamrecProcess(["featurize", "--topic", "metrics", "--bootstrap", cluster.bootstrapServers,
                                           "--redis", "127.0.0.1:\(redis.port)", "--stats", statsFile.path, "--batch-size", "100",
                                           "--linger-ms", "50", "--feature-shards", "4", "--metrics-port", "0"])
        // Port 0: the worker announces the port it got.
        var port: Int? = nil
        #expect(poll(for: 30) { port = announcedMetricsPort(in: worker.stderr); return port != nil || !worker.process.isRunning },
                "no metrics address announced: \(worker.stderr)")
        let metricsPort = try #require(port, "\(worker.stderr)")

        // Everything consumed and committed (rows + dead letters), and the lag of every partition drained.
        var m = try scrapeMetrics(port: metricsPort)
        let done = poll(for: 60) {
            guard let s = try? scrapeMetrics(port: metricsPort) else { return false }
            m = s
            let committed = (s.value("streamrec_featurize_rows_total") ?? 0) + (s.value("streamrec_featurize_dead_letters_total") ?? 0)
            let lags = (0..<4).map { s.value("streamrec_featurize_partition_lag", ["partition": "\($0)"]) }
            return committed == Double(rows.count) && lags.allSatisfy { $0 == 0 }
        }
        #expect(done, "not all rows committed or lag not drained: \(m.samples.filter { $0.name.hasPrefix("streamrec_featurize") })")
        #expect(m.value("streamrec_featurize_messages_total") == Double(rows.count))
        #expect(m.value("streamrec_featurize_rows_total") == Double(rows.count - short.count - nonNumeric.count))
        #expect(m.value("streamrec_featurize_dead_letters_total", ["reason": RejectReason.wrongFieldCount.rawValue]) == Double(short.count))
        #expect(m.value("streamrec_featurize_dead_letters_total", ["reason": RejectReason.nonNumericDense.rawValue]) == Double(nonNumeric.count))
        #expect(m.value("streamrec_featurize_dead_letters_total", ["reason": RejectReason.emptyLine.rawValue]) == 0)
        let batches = try #require(m.value("streamrec_featurize_batches_total"))
        #expect(batches >= 60, "6000 rows in batches of at most 100")
        #expect((m.value("streamrec_featurize_commit_duration_seconds_count") ?? 0) >= batches)
        #expect(m.value("streamrec_featurize_leases_held") == 4)
        #expect(m.value("streamrec_featurize_lost_upstream_total") == 0)
        #expect(m.value("streamrec_featurize_redis_up") == 1 && m.value("streamrec_featurize_kafka_up") == 1)
        #expect(m.value("streamrec_featurize_redis_outages_total") == 0)
        #expect(m.types["streamrec_featurize_commit_duration_seconds"] == "histogram")
        // Every featurize family of the catalogue is exposed (what the dashboard may use), nothing else.
        for def in Metric.of(.featurize) { #expect(def.seriesNames.contains { m.names.contains($0) }, "missing \(def.name)") }
        for name in m.names { #expect(Metric.definition(ofSeries: name)?.component == .featurize, "\(name) is not in the catalogue") }

        // Stop: the summary agrees with the last scrape (nothing more arrived).
        worker.signal(SIGTERM)
        #expect(worker.wait(timeout: .seconds(30)) == 0, "\(worker.stderr)")
        let line = try #require(worker.stdout.split(separator: "\n").first { $0.hasPrefix("summary ") }, "\(worker.stdout)")
        let summary = try JSONDecoder().decode(FeaturizeSummary.self, from: Data(line.dropFirst("summary ".count).utf8))
        #expect(Double(summary.rows) == m.value("streamrec_featurize_rows_total"))
        #expect(Double(summary.batches) == batches)
        #expect(Double(summary.deadLetters) == m.value("streamrec_featurize_dead_letters_total"))
        #expect(Double(summary.messages) == m.value("streamrec_featurize_messages_total"))
    }

    @Test("paused by back-pressure: paused 1, and the lag of each partition is what it has not read (lag + messages + lost = produced)")
    func lagUnderBackPressure() throws {
        let redis = try RedisServerFixture()
        defer { redis.stop() }
        let cluster = try startBroker(.mock, topics: ["lag": 2])
        defer { cluster.stop() }
        // Enough that the worker cannot read it all between two back-pressure checks (every 100 ms).
        // (The mock broker keeps ~5 MiB per partition: what retention drops counts as lost upstream.)
        let rows = syntheticRows(36_000, seed: 13)
        try produce(rows, topic: "lag", bootstrap: cluster.bootstrapServers, partitions: 2)
        let statsFile = FileManager.default.temporaryDirectory.appendingPathComponent("metrics-\(UUID().uuidString).stats")
        defer { try? FileManager.default.removeItem(at: statsFile) }
        try statsFor(Array(rows.prefix(5_000))).write(to: statsFile)
        let port = try freeLoopbackPort()
        // No trainer: once each feature stream holds --max-pending batches the worker stops reading.
        let worker = try StreamrecProcess(["featurize", "--topic", "lag", "--bootstrap", cluster.bootstrapServers,
                                           "--redis", "127.0.0.1:\(redis.port)", "--stats", statsFile.path, "--batch-size", "100",
                                           "--linger-ms", "50", "--feature-shards", "2", "--max-pending", "3", "--metrics-port", "\(port)"])
        var m = try PrometheusText("")
        let settled = poll(for: 60) {
            guard let s = try? scrapeMetrics(port: port), s.value("streamrec_featurize_paused") == 1,
                  let l0 = s.value("streamrec_featurize_partition_lag", ["partition": "0"]),
                  let l1 = s.value("streamrec_featurize_partition_lag", ["partition": "1"]),
                  let read = s.value("streamrec_featurize_messages_total"),
                  let lost = s.value("streamrec_featurize_lost_upstream_total") else { return false }
            m = s
            return l0 + l1 + read + lost == Double(rows.count)
        }
        #expect(settled, "\(m.samples.filter { $0.name.hasPrefix("streamrec_featurize") })\n\(worker.stderr)")
        // Rows produced while it is paused are lag (whether or not it had read everything before).
        let read = m.value("streamrec_featurize_messages_total") ?? 0
        let more = syntheticRows(2_000, seed: 14)
        try produce(more, topic: "lag", bootstrap: cluster.bootstrapServers, partitions: 2)
        let grew = poll(for: 20) {
            guard let s = try? scrapeMetrics(port: port), let l0 = s.value("streamrec_featurize_partition_lag", ["partition": "0"]),
                  let l1 = s.value("streamrec_featurize_partition_lag", ["partition": "1"]),
                  let lost = s.value("streamrec_featurize_lost_upstream_total") else { return false }
            m = s
            return l0 + l1 + read + lost == Double(rows.count + more.count)
        }
        #expect(grew, "lag counts the rows produced during the pause: \(m.samples.filter { $0.name.hasPrefix("streamrec_featurize") })")
        #expect(m.value("streamrec_featurize_messages_total") == read, "nothing read while paused")
        #expect((m.value("streamrec_featurize_partition_lag") ?? 0) >= 2_000)
        #expect((m.value("streamrec_featurize_batches_total") ?? 0) >= 6, "3 pending batches per stream before the pause")
        worker.signal(SIGTERM)
        #expect(worker.wait(timeout: .seconds(30)) == 0, "\(worker.stderr)")
    }

    @Test("a Redis outage shows as redis_up 0 and one outage, and its end as redis_up 1; Kafka away at start as kafka_up 0")
    func outages() throws {
        let redis = try PersistentRedisServer()
        defer { redis.destroy() }
        let cluster = try startBroker(.mock, topics: ["outage": 2])
        defer { cluster.stop() }
        let rows = syntheticRows(400, seed: 9)
        try produce(rows, topic: "outage", bootstrap: cluster.bootstrapServers, partitions: 2)
        let statsFile = FileManager.default.temporaryDirectory.appendingPathComponent("metrics-\(UUID().uuidString).stats")
        defer { try? FileManager.default.removeItem(at: statsFile) }
        try statsFor(rows).write(to: statsFile)
        let port = try freeLoopbackPort()
        let worker = try StreamrecProcess(["featurize", "--topic", "outage", "--bootstrap", cluster.bootstrapServers,
                                           "--redis", redis.address, "--stats", statsFile.path, "--batch-size", "100",
                                           "--linger-ms", "50", "--feature-shards", "2", "--metrics-port", "\(port)"])
        func scrape() -> PrometheusText? { try? scrapeMetrics(port: port) }
        #expect(poll(for: 60) { scrape()?.value("streamrec_featurize_rows_total") == 400 }, "\(worker.stderr)")
        #expect(scrape()?.value("streamrec_featurize_redis_outages_total") == 0)
        redis.stop()
        // The heartbeat (every second) fails at once against a stopped server.
        #expect(poll(for: 30) { scrape()?.value("streamrec_featurize_redis_up") == 0 }, "\(worker.stderr)")
        #expect(scrape()?.value("streamrec_featurize_redis_outages_total") == 1)
        try redis.start()
        #expect(poll(for: 30) { scrape()?.value("streamrec_featurize_redis_up") == 1 }, "\(worker.stderr)")
        #expect(scrape()?.value("streamrec_featurize_redis_outages_total") == 1, "one outage, however many connections saw it")
        worker.signal(SIGTERM)
        #expect(worker.wait(timeout: .seconds(30)) == 0, "\(worker.stderr)")

        // A broker that never answers: the worker waits for the topic's metadata, reported as Kafka down.
        let dead = try freeLoopbackPort()
        let waiting = try StreamrecProcess(["featurize", "--topic", "outage", "--bootstrap", "127.0.0.1:\(dead)",
                                            "--redis", redis.address, "--stats", statsFile.path, "--metrics-port", "0"])
        var metricsPort: Int? = nil
        #expect(poll(for: 30) { metricsPort = announcedMetricsPort(in: waiting.stderr); return metricsPort != nil })
        let p = try #require(metricsPort)
        #expect(poll(for: 30) { (try? scrapeMetrics(port: p))?.value("streamrec_featurize_kafka_up") == 0 }, "\(waiting.stderr)")
        #expect((try scrapeMetrics(port: p)).value("streamrec_featurize_kafka_outages_total") == 1)
        waiting.signal(SIGTERM)
        #expect(waiting.wait(timeout: .seconds(30)) == 0, "\(waiting.stderr)")
    }

    @Test("--metrics-port on a port already taken fails with a message that says what to do")
    func portTaken() throws {
        let redis = try RedisServerFixture()
        defer { redis.stop() }
        // redis-server holds its port: featurize cannot bind it.
        let statsFile = FileManager.default.temporaryDirectory.appendingPathComponent("metrics-\(UUID().uuidString).stats")
        defer { try? FileManager.default.removeItem(at: statsFile) }
        try statsFor(syntheticRows(200)).write(to: statsFile)
        let worker = try StreamrecProcess(["featurize", "--topic", "none", "--bootstrap", "127.0.0.1:1", "--redis", "127.0.0.1:\(redis.port)",
                                           "--stats", statsFile.path, "--metrics-port", "\(redis.port)"])
        let status = worker.wait(timeout: .seconds(30))
        #expect(status != nil && status != 0)
        #expect(worker.stderr.contains("cannot serve metrics on 127.0.0.1:\(redis.port)") && worker.stderr.contains("--metrics-port"),
                "\(worker.stderr)")
        // The same from featurize.metrics_port in --config.
        let config = FileManager.default.temporaryDirectory.appendingPathComponent("metrics-\(UUID().uuidString).yaml")
        defer { try? FileManager.default.removeItem(at: config) }
        try "featurize:\n  metrics_port: \(redis.port)\n".write(to: config, atomically: true, encoding: .utf8)
        let fromFile = try StreamrecProcess(["featurize", "--config", config.path, "--topic", "none", "--bootstrap", "127.0.0.1:1",
                                             "--redis", "127.0.0.1:\(redis.port)", "--stats", statsFile.path])
        let fileStatus = fromFile.wait(timeout: .seconds(30))
        #expect(fileStatus != nil && fileStatus != 0)
        #expect(fromFile.stderr.contains("cannot serve metrics on 127.0.0.1:\(redis.port)"), "\(fromFile.stderr)")
    }
}
