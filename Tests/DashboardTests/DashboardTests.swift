import Testing
import Foundation
import Dashboard
import FeatureStore
import Streaming
import TestSupport

/// The server-side SVG charts: where points land, and the cases a live cluster produces (no data
/// yet, one point, NaN before a metric is defined).
@Suite struct SVGChartTests {
    // 600×220 chart: plot area x 64…584 (width 520), y 28…176 (height 148).
    @Test func pointsMapToPolylineCoordinates() {
        let chart = LineChart(title: "loss", series: [.init(name: "wide_loss", points: [(0, 0), (10, 5), (20, 10)])],
                              xAxis: .number)
        #expect(chart.frame == LineChart.Frame(left: 64, top: 28, width: 520, height: 148))
        let runs = chart.segments(of: chart.series[0])
        #expect(runs.count == 1)
        #expect(LineChart.pointsAttribute(runs[0]) == "64.00,176.00 324.00,102.00 584.00,28.00")
        let svg = chart.svg()
        #expect(svg.contains(#"points="64.00,176.00 324.00,102.00 584.00,28.00""#), "\(svg)")
        #expect(svg.components(separatedBy: "<polyline").count == 2)
        #expect(svg.hasPrefix("<svg") && svg.hasSuffix("</svg>"))
        // Axis labels: the y range's ends and the x range's ends.
        #expect(svg.contains(">10</text>") && svg.contains(">0</text>") && svg.contains(">20</text>"))
    }

    @Test func emptySeriesSaysSoAndDrawsNoLine() {
        for chart in [LineChart(title: "pv_auc", series: []), LineChart(title: "pv_auc", series: [.init(name: "a", points: [])])] {
            let svg = chart.svg()
            #expect(svg.contains("no data yet"))
            #expect(!svg.contains("<polyline") && !svg.contains("<circle"))
            #expect(chart.ranges == nil)
        }
    }

    @Test func singlePointIsADotInTheMiddle() {
        let chart = LineChart(title: "step", series: [.init(name: "step", points: [(5, 2)])], xAxis: .number)
        let svg = chart.svg()
        #expect(!svg.contains("<polyline"))
        #expect(svg.contains(#"<circle cx="324.00" cy="102.00""#), "\(svg)")
        // A flat range is widened around the value (10 % either side), so the labels differ.
        #expect(chart.ranges?.y == 1.8...2.2)
    }

    @Test func nanBreaksTheLineAndIsNeverDrawn() {
        let chart = LineChart(title: "pv_auc", series: [.init(name: "pv_auc", points: [(0, 1), (1, .nan), (2, 3), (3, 4), (.infinity, 9)])],
                              xAxis: .number)
        let runs = chart.segments(of: chart.series[0])
        #expect(runs.map(\.count) == [1, 2])
        // The ranges ignore NaN and ∞: x 0…3, y 1…4.
        #expect(chart.ranges?.x == 0...3)
        #expect(chart.ranges?.y == 1...4)
        let svg = chart.svg()
        #expect(!svg.lowercased().contains("nan") && !svg.lowercased().contains("inf"))
        #expect(svg.components(separatedBy: "<polyline").count == 2)
        #expect(svg.components(separatedBy: "<circle").count == 2)
        let allNaN = LineChart(title: "x", series: [.init(name: "x", points: [(0, .nan), (1, .nan)])])
        #expect(allNaN.svg().contains("no data yet"))
    }

    @Test func timeAxisShowsUTCClockAndTitlesAreEscaped() {
        let t0 = 1_700_000_000_000.0   // 2023-11-14 22:13:20 UTC
        let chart = LineChart(title: "a<b & c", series: [.init(name: "x\"y", points: [(t0, 1), (t0 + 60_000, 2)])])
        let svg = chart.svg()
        #expect(svg.contains(">22:13:20</text>") && svg.contains(">22:14:20</text>"), "\(svg)")
        #expect(svg.contains("a&lt;b &amp; c") && !svg.contains("a<b"))
        #expect(svg.contains(#"data-series="x&quot;y""#))
    }
}

@Suite struct DashboardDataTests {
    @Test func historyPointDropsNonFiniteMetricsAndRoundTrips() throws {
        let p = TrainerHistoryPoint(timeMs: 1234, step: 10, samples: 1000, metrics: ["pv_auc": .nan, "wide_loss": 0.5],
                                    samplesPerSecond: 200, ranks: 2, checkpoint: "step-000000000010", freshnessMs: 850, kind: "widedeep")
        let text = try p.encoded()
        #expect(!text.contains("pv_auc"))
        #expect(text.contains(#""time_ms":1234"#) && text.contains(#""freshness_ms":850"#))
        let back = try JSONDecoder().decode(TrainerHistoryPoint.self, from: Data(text.utf8))
        #expect(back.metrics == ["wide_loss": 0.5])
        #expect(back.step == 10 && back.checkpoint == "step-000000000010" && back.kind == "widedeep")
    }

    @Test func historyListIsCappedAndReadOldestFirst() throws {
        let redis = try RedisServerFixture()
        defer { redis.stop() }
        let conn = try RedisConnection(host: "127.0.0.1", port: redis.port)
        let history = TrainerHistory(layout: FeatureStoreLayout(prefix: "t"), capacity: 5)
        #expect(history.key == "t:train:history")
        for batch in stride(from: 0, to: 8, by: 3) {
            try history.append((batch..<min(batch + 3, 8)).map {
                TrainerHistoryPoint(timeMs: Int64($0), step: $0, samples: $0 * 10, metrics: ["loss": Double($0)], samplesPerSecond: 1, ranks: 1)
            }, to: conn)
        }
        #expect(try conn.command(["LLEN", history.key]).integer == 5)
        #expect(try history.read(from: conn).map(\.step) == [3, 4, 5, 6, 7])
        #expect(try history.read(from: conn, limit: 2).map(\.step) == [6, 7])
        // A key of another type: the append fails (it would otherwise vanish inside EXEC).
        let other = TrainerHistory(layout: FeatureStoreLayout(prefix: "u"))
        _ = try conn.command(["SET", other.key, "x"])
        #expect(throws: RedisError.self) { try other.append([TrainerHistoryPoint(timeMs: 0, step: 1, samples: 1, metrics: [:], samplesPerSecond: 1, ranks: 1)], to: conn) }
        // A line that is not a point is skipped, not fatal.
        _ = try conn.command(["RPUSH", history.key, "not json"])
        #expect(try history.read(from: conn).map(\.step) == [3, 4, 5, 6, 7])
        #expect(try history.read(from: conn, limit: 5).map(\.step) == [4, 5, 6, 7])
    }

    @Test func prometheusSamplesOfTheNamedMetrics() {
        let text = """
        # HELP streamrec_serve_requests_total HTTP requests answered.
        # TYPE streamrec_serve_requests_total counter
        streamrec_serve_requests_total{endpoint="/v1/model",status="200"} 12
        streamrec_serve_requests_total{endpoint="/v1/predict",status="500"} 1
        streamrec_serve_reloads_total 3
        streamrec_serve_other 7
        """
        let m = DashboardCollector.parsePrometheus(text, names: ["streamrec_serve_requests_total", "streamrec_serve_reloads_total"])
        #expect(m == [#"streamrec_serve_requests_total{endpoint="/v1/model",status="200"}"#: 12,
                      #"streamrec_serve_requests_total{endpoint="/v1/predict",status="500"}"#: 1,
                      "streamrec_serve_reloads_total": 3])
    }

    @Test func pageShowsEverySection() throws {
        // Built from JSON: the status has no public memberwise initialiser.
        var status = try JSONDecoder().decode(FeatureStoreStatus.self, from: Data("""
            {"prefix": "sr", "partitions": [], "shards": [], "deadLetters": {}, "deadLettersTotal": 0, "lostUpstream": {},
             "dictionaryState": "ready", "dictionaryNextId": 10, "snapshotCategories": 5, "snapshotNextId": 10, "onlineIds": 0,
             "pendingCategories": 0, "workers": [], "offsetResetsDetected": {}, "offsetResetsApplied": {},
             "offsetResetLast": {}, "forgottenCounts": 0}
            """.utf8))
        status.partitions = (0..<3).map { FeatureStoreStatus.Partition(topic: "criteo", partition: $0, progress: 100, highWatermark: 150, lag: 50) }
        var snap = DashboardSnapshot(generatedMs: 1_700_000_000_000, redis: "127.0.0.1:6379", prefix: "sr", cluster: status,
                                     serveURL: "http://127.0.0.1:8080", checkpointsSource: "/ck")
        snap.history = (0..<4).map {
            TrainerHistoryPoint(timeMs: 1_700_000_000_000 + Int64($0) * 1000, step: $0 * 10, samples: $0 * 1000,
                                metrics: ["pv_auc": 0.6 + Double($0) / 100, "wide_loss": 0.5], samplesPerSecond: 900, ranks: 2,
                                checkpoint: "step-000000000010", freshnessMs: 1200, kind: "widedeep")
        }
        snap.served = .init(modelKind: "widedeep", modelVersion: "step-000000000010", step: 10, samplesTrained: 1000,
                            metrics: ["pv_auc": 0.61], loadedAt: "2023-11-14T22:13:20Z")
        snap.checkpoints = [.init(version: "step-000000000010", step: 10, createdAt: "2023-11-14T22:13:20Z", samplesTrained: 1000,
                                  latest: true, metrics: [:], problem: nil)]
        let html = DashboardPage.render(snap, refreshSeconds: 2)
        #expect(html.contains(#"<meta http-equiv="refresh" content="2">"#))
        #expect(html.components(separatedBy: #"<tr class="partition">"#).count == 4)
        #expect(html.contains(">150</td><td>50</td>"))
        #expect(html.contains("step-000000000010 ★ (served)"))
        #expect(html.contains(">30</div><div class=\"k\">step<"), "the trainer's current step")
        #expect(html.contains(#"data-series="pv_auc""#) && html.contains("freshness"))
        #expect(!html.contains("http://") || !html.contains("<script"), "no scripts")
        #expect(!html.contains("<script") && !html.contains("src=\"http"))
        #expect(html.contains(">step-000000000010</div><div class=\"k\">newest checkpoint<"))

        // An RL family: its progressive NDCG@10 is a card and a curve; nothing Wide&Deep-specific shows.
        snap.history = (0..<3).map {
            TrainerHistoryPoint(timeMs: 1_700_000_000_000 + Int64($0) * 1000, step: $0 * 5, samples: $0 * 500,
                                metrics: ["pv_ndcg@10": 0.1 + Double($0) / 100, "policy_loss": 6.5], samplesPerSecond: 900, ranks: 1, kind: "reinforce")
        }
        let rl = DashboardPage.render(snap, refreshSeconds: 5)
        #expect(rl.contains(">0.1200</div><div class=\"k\">pv_ndcg@10<"))
        #expect(rl.contains(#"data-series="pv_ndcg@10""#) && rl.contains(#"data-series="policy_loss""#))
        #expect(!rl.contains("pv_auc<") && rl.contains(">reinforce</div>"))
        #expect(rl.contains(#"content="5""#))
    }
}
