import Foundation
import Observability
import Testing
import Yams

/// cluster/grafana-dashboard.json and cluster/prometheus.yml against what the processes expose
/// (the catalogue, which the featurize, trainer and serve metrics tests check each process
/// exposes) and the ports scripts/demo.sh starts them on.
@Suite struct MonitoringFilesTests {
    let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../..").standardized

    @Test("the Grafana dashboard is importable JSON over existing metrics only, and covers every family")
    func dashboard() throws {
        let data = try Data(contentsOf: repo.appendingPathComponent("cluster/grafana-dashboard.json"))
        let dash = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        // Importable as is: one Prometheus input that every panel and query uses.
        let inputs = try #require(dash["__inputs"] as? [[String: Any]])
        #expect(inputs.count == 1 && inputs[0]["pluginId"] as? String == "prometheus" && inputs[0]["name"] as? String == "DS_PROMETHEUS")
        #expect(dash["title"] as? String != nil && dash["uid"] as? String != nil)
        let panels = try #require(dash["panels"] as? [[String: Any]])
        var referenced: Set<String> = []
        var ids: Set<Int> = []
        let pattern = try NSRegularExpression(pattern: "streamrec_[a-z0-9_]+")
        for panel in panels {
            let id = try #require(panel["id"] as? Int)
            #expect(ids.insert(id).inserted, "duplicate panel id \(id)")
            if panel["type"] as? String == "row" { continue }
            let title = panel["title"] as? String ?? "?"
            #expect((panel["datasource"] as? [String: Any])?["uid"] as? String == "${DS_PROMETHEUS}", "\(title)")
            let targets = try #require(panel["targets"] as? [[String: Any]], "\(title)")
            #expect(!targets.isEmpty, "\(title) has no query")
            for t in targets {
                let expr = try #require(t["expr"] as? String, "\(title)")
                let names = pattern.matches(in: expr, range: NSRange(expr.startIndex..., in: expr)).map { (expr as NSString).substring(with: $0.range) }
                #expect(!names.isEmpty, "\(title): \(expr) names no StreamRec metric")
                for name in names {
                    // Exists (a histogram only through its _bucket/_sum/_count series).
                    let def = Metric.definition(ofSeries: name)
                    #expect(def != nil, "\(title): \(name) is not a metric any process exposes")
                    if let def { referenced.insert(def.name) }
                }
            }
        }
        let missing = Set(Metric.all.map(\.name)).subtracting(referenced)
        #expect(missing.isEmpty, "families without a panel: \(missing.sorted())")
        for component in MetricDefinition.Component.allCases {
            #expect(Metric.of(component).contains { referenced.contains($0.name) }, "no panel for \(component)")
        }
    }

    @Test("the Prometheus scrape config targets the ports the demo starts serve, trainer rank 0 and the featurize workers on")
    func prometheusConfig() throws {
        let text = try String(contentsOf: repo.appendingPathComponent("cluster/prometheus.yml"), encoding: .utf8)
        let config = try #require(try Yams.load(yaml: text) as? [String: Any])
        let jobs = try #require(config["scrape_configs"] as? [[String: Any]])
        var targets: [String: [String]] = [:]
        for job in jobs {
            let name = try #require(job["job_name"] as? String)
            let statics = try #require(job["static_configs"] as? [[String: Any]], "\(name)")
            targets[name] = statics.flatMap { ($0["targets"] as? [String]) ?? [] }
        }
        // The demo's defaults, read from the script itself so the two cannot drift apart.
        let demo = try ["scripts/demo.sh", "scripts/demo-lib.sh"]
            .map { try String(contentsOf: repo.appendingPathComponent($0), encoding: .utf8) }.joined(separator: "\n")
        func defaultPort(_ variable: String) throws -> Int {
            let r = try #require(demo.range(of: "\\$\\{\(variable):-([0-9]+)\\}", options: .regularExpression), "\(variable) in demo.sh")
            return try #require(Int(demo[r].split(separator: "-").last!.dropLast()))
        }
        let http = try defaultPort("STREAMREC_HTTP_PORT"), metrics = try defaultPort("STREAMREC_METRICS_PORT")
        #expect(demo.contains("--metrics-port \"$METRICS_PORT\"") && demo.contains("--metrics-port $((METRICS_PORT + 1 + k))"))
        #expect(targets["streamrec-serve"] == ["127.0.0.1:\(http)"])
        #expect(targets["streamrec-trainer"] == ["127.0.0.1:\(metrics)"])
        let featurize = Set(targets["streamrec-featurize"] ?? [])
        #expect(featurize.isSuperset(of: ["127.0.0.1:\(metrics + 1)", "127.0.0.1:\(metrics + 2)"]), "\(featurize)")
        #expect(Set(targets.values.joined()).count == targets.values.joined().count, "a port scraped twice")
    }
}
